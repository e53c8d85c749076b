// Text corpora as rows: indexing into chunks at record boundaries (blank lines skipped, CSV quotes
// spanning lines), every chunk read back to exactly its rows, bad rows kept in place with a reason,
// ids from a field or "<file>:<row>", BEIR-style title + text, and chunk ids that round-trip.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "io/text_rows.h"
#include "runtime/check.h"
#include "tests/common/test_util.h"

namespace fs = std::filesystem;

namespace flurry {
namespace {

fs::path fresh_dir(const std::string& name) { return test::fresh_temp_dir("text-rows-" + name); }

std::vector<TextRow> read_all_chunks(const std::vector<TextChunk>& chunks, const TextSpec& spec) {
  std::vector<TextRow> rows;
  int64_t next = 0;
  for (const TextChunk& c : chunks) {
    EXPECT_EQ(c.row_begin, next);
    const TextChunk back = parse_text_chunk_id(text_chunk_id(c));
    EXPECT_EQ(back.path, c.path);
    EXPECT_EQ(back.byte_begin, c.byte_begin);
    EXPECT_EQ(back.byte_end, c.byte_end);
    EXPECT_EQ(back.row_begin, c.row_begin);
    EXPECT_EQ(back.rows, c.rows);
    EXPECT_EQ(back.file_row_begin, c.file_row_begin);
    EXPECT_EQ(back.format, c.format);
    auto part = read_text_chunk(back, spec);
    EXPECT_EQ(static_cast<int64_t>(part.size()), c.rows);
    next += c.rows;
    for (auto& r : part) rows.push_back(std::move(r));
  }
  for (size_t i = 0; i < rows.size(); ++i) EXPECT_EQ(rows[i].row, static_cast<int64_t>(i));
  return rows;
}

TEST(TextRows, LinesSkipBlankLinesAndChunkAtRecords) {
  const fs::path d = fresh_dir("lines");
  const std::string p = (d / "passages@v1#.txt").string();  // '@' and '#' in a path must survive ids
  std::ofstream(p) << "first\r\n\n  second  \n\t\nthird\nfourth\nfifth\nsixth\nseventh";  // no final newline
  TextSpec spec;
  for (int64_t per : {1, 2, 3, 100}) {
    const auto chunks = index_text_inputs({p}, spec, per);
    EXPECT_EQ(static_cast<int64_t>(chunks.size()), (7 + per - 1) / per) << per;
    const auto rows = read_all_chunks(chunks, spec);
    ASSERT_EQ(rows.size(), 7u);
    EXPECT_EQ(rows[0].text, "first");
    EXPECT_EQ(rows[1].text, "second");
    EXPECT_EQ(rows[6].text, "seventh");
    EXPECT_EQ(rows[2].id, p + ":2");
    for (const auto& r : rows) EXPECT_TRUE(r.error.empty()) << r.error;
  }
}

TEST(TextRows, JsonlFieldsIdsTitlesAndBadRows) {
  const fs::path d = fresh_dir("jsonl");
  const std::string p = (d / "corpus.jsonl").string();
  std::ofstream(p) << R"({"_id": "d1", "title": "Paris", "text": "is the capital of France."})" << "\n"
                   << R"({"_id": 7, "text": "numeric id"})" << "\n"
                   << "not json at all\n"
                   << R"({"_id": "d3", "body": "no text field"})" << "\n"
                   << R"({"_id": "d4", "text": "bad )" << std::string("\xff\xfe") << R"( bytes"})" << "\n"
                   << R"({"_id": "d5", "text": "   "})" << "\n"
                   << R"({"text": "no id"})" << "\n"
                   << R"({"_id": "d7", "text": 12})" << "\n"
                   << R"({"_id": "d8", "title": "", "text": "empty title"})" << "\n";
  TextSpec spec;
  spec.id_field = "_id";
  spec.title_field = "title";
  const auto rows = read_all_chunks(index_text_inputs({p}, spec, 4), spec);
  ASSERT_EQ(rows.size(), 9u);
  EXPECT_EQ(rows[0].id, "d1");
  EXPECT_EQ(rows[0].text, "Paris is the capital of France.");
  EXPECT_EQ(rows[1].id, "7");
  EXPECT_EQ(rows[1].text, "numeric id");
  EXPECT_EQ(rows[2].error, "not a JSON object");
  EXPECT_EQ(rows[3].error, "no string field 'text'");
  EXPECT_NE(rows[4].error.find("invalid UTF-8"), std::string::npos) << rows[4].error;
  EXPECT_EQ(rows[5].error, "empty text");
  EXPECT_EQ(rows[6].error, "no id field '_id'");
  EXPECT_EQ(rows[7].error, "no string field 'text'");
  EXPECT_EQ(rows[8].text, "empty title");
  EXPECT_TRUE(rows[8].error.empty());
}

TEST(TextRows, CsvQuotesSpanLinesAndTsvSplitsOnTabs) {
  const fs::path d = fresh_dir("csv");
  const std::string csv = (d / "t.csv").string();
  std::ofstream(csv) << "id, text ,extra\n"
                     << "a,plain,x\n"
                     << "b,\"with, comma\",y\n"
                     << "c,\"two\nlines and \"\"quotes\"\"\",z\n"
                     << "\n"
                     << "d\n"
                     << "e,\"unterminated,w\n";
  TextSpec spec;
  spec.id_field = "id";
  const auto chunks = index_text_inputs({csv}, spec, 2);
  const auto rows = read_all_chunks(chunks, spec);
  ASSERT_EQ(rows.size(), 5u);
  EXPECT_EQ(rows[0].text, "plain");
  EXPECT_EQ(rows[1].text, "with, comma");
  EXPECT_EQ(rows[2].text, "two\nlines and \"quotes\"");
  EXPECT_EQ(rows[2].id, "c");
  EXPECT_NE(rows[3].error.find("fewer than the header"), std::string::npos) << rows[3].error;
  EXPECT_EQ(rows[4].error, "unterminated quote");

  const std::string tsv = (d / "t.tsv").string();
  std::ofstream(tsv) << "query-id\ttext\n" << "q1\thow tall is \"the\" tower\n" << "q2\t\n";
  TextSpec ts;
  ts.id_field = "query-id";
  const auto trows = read_all_chunks(index_text_inputs({tsv}, ts, 10), ts);
  ASSERT_EQ(trows.size(), 2u);
  EXPECT_EQ(trows[0].text, "how tall is \"the\" tower");
  EXPECT_EQ(trows[0].id, "q1");
  EXPECT_EQ(trows[1].error, "empty text");

  TextSpec missing;
  missing.text_field = "body";
  EXPECT_THROW(index_text_inputs({csv}, missing, 2), Error);  // named column absent: refused up front
}

TEST(TextRows, FolderOfDocumentsAndSeveralInputsNumberRowsGlobally) {
  const fs::path d = fresh_dir("folder");
  fs::create_directories(d / "docs" / "sub");
  std::ofstream(d / "docs" / "b.txt") << "second doc\nwith two lines\n";
  std::ofstream(d / "docs" / "sub" / "a.txt") << "first doc";
  std::ofstream(d / "docs" / "skip.md") << "not matched";
  std::ofstream(d / "docs" / "empty.txt") << "";
  std::ofstream(d / "more.txt") << "x\ny\n";
  TextSpec spec;
  const auto chunks = index_text_inputs({(d / "docs").string(), (d / "more.txt").string()}, spec, 10);
  const auto rows = read_all_chunks(chunks, spec);
  ASSERT_EQ(rows.size(), 5u);
  EXPECT_EQ(rows[0].id, (d / "docs" / "b.txt").string());
  EXPECT_EQ(rows[0].text, "second doc\nwith two lines");
  EXPECT_EQ(rows[1].error, "empty text");  // empty.txt: a document with no text
  EXPECT_EQ(rows[2].text, "first doc");
  EXPECT_EQ(rows[3].text, "x");
  EXPECT_EQ(rows[4].id, (d / "more.txt").string() + ":1");
  EXPECT_THROW(index_text_inputs({(d / "nope.txt").string()}, spec, 10), Error);
  // A file that shrank after indexing is an input error of its chunk, not a crash.
  std::ofstream(d / "more.txt") << "x";
  EXPECT_THROW(read_text_chunk(chunks.back(), spec), InputError);
}

}  // namespace
}  // namespace flurry
