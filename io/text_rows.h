// Text corpora as rows for the embedding jobs: one text per line, JSONL records, CSV/TSV tables, or
// a folder of text files (one document per file). Large files are cut into chunks of rows at record
// boundaries by one scan, so that every rank reads only its own byte ranges of a multi-GB corpus.
//
//   auto chunks = index_text_inputs({"corpus.jsonl"}, spec, 4096);   // rank 0, once
//   for (const TextRow& r : read_text_chunk(chunks[k], spec)) ...    // any rank, any chunk
//
// A row that cannot be used (missing field, not JSON, invalid UTF-8, empty text, a CSV record with
// too few columns) is returned with `error` set and keeps its place, so that it becomes an error
// record and nothing is dropped silently. Row numbers are global over all inputs, in input order.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace flurry {

// kCriteo: Criteo's TSV (no header; label, 13 integer and 26 categorical fields), read as the
// columns criteo_columns() names.
enum class TextFormat { kAuto, kLines, kJsonl, kCsv, kTsv, kFile, kCriteo };

struct TextSpec {
  TextFormat format = TextFormat::kAuto;  // kAuto: by extension (.jsonl/.json, .csv, .tsv; else lines)
  std::string text_field = "text";        // JSONL key or CSV/TSV column holding the text; empty for
                                          // tables read by read_field_chunk
  std::string id_field;                   // JSONL key or column of the row's id; empty (and always for
                                          // plain lines and whole files): "<file>:<row>" / the path
  std::string title_field;                // optional; when set and present, text = title + " " + text
  std::string glob = "*.txt";             // files taken from a folder (one document each)
};

// A byte range of one file holding rows [row_begin, row_begin + rows) of the whole input.
struct TextChunk {
  std::string path;
  TextFormat format = TextFormat::kLines;  // resolved
  int64_t byte_begin = 0, byte_end = 0;
  int64_t row_begin = 0, rows = 0;
  int64_t file_row_begin = 0;  // the chunk's first row counted within its file (ids "<file>:<n>")
};

struct TextRow {
  int64_t row = 0;    // global
  std::string id;     // from id_field, or "<file>:<row within file>"
  std::string text;
  std::string error;  // non-empty: the row is unusable and why
};

// Scans `paths` (files or folders) and cuts them into chunks of at most `rows_per_chunk` rows.
// Throws flurry::Error for an input that cannot be read at all (missing file, unreadable folder);
// bad rows are found later, by read_text_chunk.
std::vector<TextChunk> index_text_inputs(const std::vector<std::string>& paths, const TextSpec& spec,
                                         int64_t rows_per_chunk);

// The rows of one chunk (exactly chunk.rows of them). Throws flurry::InputError when the file
// cannot be read any more (changed or gone since it was indexed).
std::vector<TextRow> read_text_chunk(const TextChunk& chunk, const TextSpec& spec);

// Rows of a table as named fields (DLRM inputs): CSV/TSV columns by the header, JSONL keys (a string
// as it is, a number as written, an array as its elements joined by '|', null as absent), Criteo's
// fixed columns. values[k] is the row's field of columns[k]; present[k] is 0 when the row lacks it.
// A record that cannot be split (not JSON, an unterminated quote, invalid UTF-8) gets `error`.
struct FieldRow {
  int64_t row = 0;
  std::vector<std::string> values;
  std::vector<uint8_t> present;
  std::string error;
};
std::vector<FieldRow> read_field_chunk(const TextChunk& chunk, const std::vector<std::string>& columns);
// The columns of a CSV/TSV file's header (empty for other formats).
std::vector<std::string> table_header(const std::string& path, TextFormat format);
// label, I1..I13, C1..C26.
const std::vector<std::string>& criteo_columns();

// A chunk as a work-item id and back: "<path>@<byte_begin>-<byte_end>#<row_begin>+<rows>~<file row>/<format>".
std::string text_chunk_id(const TextChunk& c);
TextChunk parse_text_chunk_id(const std::string& id);

TextFormat text_format_of(const std::string& path, TextFormat requested);
const char* text_format_name(TextFormat f);
TextFormat parse_text_format(const std::string& name);  // auto, lines, jsonl, csv, tsv, file, criteo

}  // namespace flurry
