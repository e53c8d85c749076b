#include "io/text_rows.h"

#include <fnmatch.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "io/unicode.h"
#include "runtime/check.h"

namespace fs = std::filesystem;

namespace flurry {

namespace {

bool ends_with(const std::string& s, const char* suffix) {
  const size_t n = std::char_traits<char>::length(suffix);
  return s.size() >= n && s.compare(s.size() - n, n, suffix) == 0;
}

std::string lower_ascii(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool blank(const std::string& s) {
  return s.find_first_not_of(" \t\r\n") == std::string::npos;
}

std::string trim(const std::string& s) {
  const size_t a = s.find_first_not_of(" \t\r\n");
  if (a == std::string::npos) return "";
  const size_t b = s.find_last_not_of(" \t\r\n");
  return s.substr(a, b - a + 1);
}

// Splits `data` into records: lines, or CSV records (a newline inside quotes does not end one).
// Calls on_record(begin offset, end offset excluding the newline) for every record, blank ones too.
template <typename F>
void for_each_record(const std::string& data, bool csv_quotes, F&& on_record) {
  size_t start = 0;
  bool quoted = false;
  for (size_t i = 0; i < data.size(); ++i) {
    const char c = data[i];
    if (csv_quotes && c == '"') quoted = !quoted;  // "" inside quotes toggles twice: no change
    if (c == '\n' && !quoted) {
      on_record(start, i);
      start = i + 1;
    }
  }
  if (start < data.size()) on_record(start, data.size());
}

std::string read_range(const std::string& path, int64_t begin, int64_t end) {
  std::ifstream in(path, std::ios::binary);
  if (!in.good()) FLURRY_INPUT_FAIL(path << ": cannot open");
  in.seekg(begin);
  std::string data(static_cast<size_t>(end - begin), '\0');
  in.read(&data[0], static_cast<std::streamsize>(data.size()));
  if (in.gcount() != static_cast<std::streamsize>(data.size())) {
    FLURRY_INPUT_FAIL(path << ": shorter than when it was indexed (changed during the run?)");
  }
  return data;
}

// Streams the records of `path` from byte `begin` (a record ends at a newline outside CSV quotes,
// or at the end of the file) and calls on_record(offset just past the record, whether it is blank)
// for each: one pass in 8 MiB blocks, so a multi-GB corpus is indexed without holding it.
template <typename F>
void scan_records(const std::string& path, int64_t begin, bool csv_quotes, F&& on_record) {
  std::ifstream in(path, std::ios::binary);
  FLURRY_CHECK(in.good(), path << ": cannot open");
  in.seekg(begin);
  std::vector<char> buf(8u << 20);
  int64_t pos = begin;
  bool quoted = false, is_blank = true, open = false;
  for (;;) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    const std::streamsize n = in.gcount();
    if (n <= 0) break;
    for (std::streamsize i = 0; i < n; ++i, ++pos) {
      const char c = buf[static_cast<size_t>(i)];
      open = true;
      if (csv_quotes && c == '"') quoted = !quoted;  // "" inside quotes toggles twice: no change
      if (c == '\n' && !quoted) {
        on_record(pos + 1, is_blank);
        is_blank = true;
        open = false;
      } else if (c != ' ' && c != '\t' && c != '\r') {
        is_blank = false;
      }
    }
  }
  if (open) on_record(pos, is_blank);
}

// RFC 4180 fields of one record (no newline inside `rec` except within quotes); TSV splits on tabs
// with no quoting. Returns false for an unterminated quote.
bool split_fields(const std::string& rec, TextFormat f, std::vector<std::string>& out) {
  out.clear();
  std::string r = rec;
  if (!r.empty() && r.back() == '\r') r.pop_back();
  if (f == TextFormat::kTsv || f == TextFormat::kCriteo) {
    size_t start = 0;
    for (;;) {
      const size_t t = r.find('\t', start);
      out.push_back(r.substr(start, t == std::string::npos ? std::string::npos : t - start));
      if (t == std::string::npos) return true;
      start = t + 1;
    }
  }
  std::string field;
  bool quoted = false, was_quoted = false;
  for (size_t i = 0; i < r.size(); ++i) {
    const char c = r[i];
    if (quoted) {
      if (c == '"' && i + 1 < r.size() && r[i + 1] == '"') {
        field += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        field += c;
      }
    } else if (c == '"' && field.empty() && !was_quoted) {
      quoted = was_quoted = true;
    } else if (c == ',') {
      out.push_back(field);
      field.clear();
      was_quoted = false;
    } else {
      field += c;
    }
  }
  out.push_back(field);
  return !quoted;
}

// Which column a header names; -1 when absent.
int column(const std::vector<std::string>& header, const std::string& name) {
  const auto it = std::find(header.begin(), header.end(), name);
  return it == header.end() ? -1 : static_cast<int>(it - header.begin());
}

// Fills text/id/error of `row` from one record.
void parse_record(const std::string& rec, const TextChunk& c, const TextSpec& spec,
                  const std::vector<std::string>& header, int64_t file_row, TextRow& row) {
  row.id = c.path + ":" + std::to_string(file_row);
  const size_t bad = utf8_find_invalid(rec);
  if (bad != std::string::npos) {
    row.error = "invalid UTF-8 at byte " + std::to_string(bad) + " of the record";
    return;
  }
  std::string text, title, id;
  bool has_id = false;
  if (c.format == TextFormat::kLines || c.format == TextFormat::kFile) {
    text = rec;
  } else if (c.format == TextFormat::kJsonl) {
    const nlohmann::json j = nlohmann::json::parse(rec, nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
      row.error = "not a JSON object";
      return;
    }
    if (!j.contains(spec.text_field) || !j[spec.text_field].is_string()) {
      row.error = "no string field '" + spec.text_field + "'";
      return;
    }
    text = j[spec.text_field].get<std::string>();
    if (!spec.title_field.empty() && j.contains(spec.title_field) && j[spec.title_field].is_string()) {
      title = j[spec.title_field].get<std::string>();
    }
    if (!spec.id_field.empty()) {
      if (j.contains(spec.id_field) && j[spec.id_field].is_string()) {
        id = j[spec.id_field].get<std::string>();
        has_id = true;
      } else if (j.contains(spec.id_field) && j[spec.id_field].is_number_integer()) {
        id = std::to_string(j[spec.id_field].get<int64_t>());
        has_id = true;
      }
    }
  } else {
    std::vector<std::string> fields;
    if (!split_fields(rec, c.format, fields)) {
      row.error = "unterminated quote";
      return;
    }
    const int tc = column(header, spec.text_field);
    if (tc < 0 || tc >= static_cast<int>(fields.size())) {
      row.error = tc < 0 ? "no column '" + spec.text_field + "' in the header"
                         : "the record has " + std::to_string(fields.size()) + " fields, fewer than the header";
      return;
    }
    text = fields[static_cast<size_t>(tc)];
    const int ti = spec.title_field.empty() ? -1 : column(header, spec.title_field);
    if (ti >= 0 && ti < static_cast<int>(fields.size())) title = fields[static_cast<size_t>(ti)];
    const int ic = spec.id_field.empty() ? -1 : column(header, spec.id_field);
    if (ic >= 0 && ic < static_cast<int>(fields.size())) {
      id = fields[static_cast<size_t>(ic)];
      has_id = true;
    }
  }
  // Plain lines and whole files have no fields: their id is always "<file>:<row>" / the path.
  const bool has_fields = c.format == TextFormat::kJsonl || c.format == TextFormat::kCsv || c.format == TextFormat::kTsv;
  if (!spec.id_field.empty() && has_fields) {
    if (!has_id || id.empty()) {
      row.error = "no id field '" + spec.id_field + "'";
      return;
    }
    row.id = id;
  }
  // BEIR's corpus convention (sentence-transformers' evaluator): title, a space, then the text.
  row.text = trim(title.empty() ? text : title + " " + text);
  if (row.text.empty()) row.error = "empty text";
}

// The header record of a CSV/TSV file (its first non-blank record).
std::vector<std::string> read_header(const std::string& path, TextFormat f, int64_t* header_end) {
  std::ifstream in(path, std::ios::binary);
  FLURRY_CHECK(in.good(), path << ": cannot open");
  std::string line, rec;
  int64_t pos = 0;
  bool quoted = false;
  char ch;
  while (in.get(ch)) {
    ++pos;
    if (f == TextFormat::kCsv && ch == '"') quoted = !quoted;
    if (ch == '\n' && !quoted) {
      if (!blank(rec)) break;
      rec.clear();
      continue;
    }
    rec += ch;
  }
  *header_end = pos;
  std::vector<std::string> header;
  FLURRY_CHECK(!blank(rec), path << ": no header line (a CSV/TSV input needs one naming its columns)");
  FLURRY_CHECK(split_fields(rec, f, header), path << ": unterminated quote in the header");
  for (auto& h : header) h = trim(h);
  return header;
}

void index_one(const std::string& path, TextFormat f, const TextSpec& spec, int64_t per_chunk,
               std::vector<TextChunk>& out, int64_t& next_row) {
  if (f == TextFormat::kFile) {
    std::error_code ec;
    const auto size = fs::file_size(path, ec);
    FLURRY_CHECK(!ec, path << ": cannot read the size: " << ec.message());
    out.push_back(TextChunk{path, f, 0, static_cast<int64_t>(size), next_row, 1, 0});
    ++next_row;
    return;
  }
  int64_t data_begin = 0;
  if (f == TextFormat::kCsv || f == TextFormat::kTsv) {
    const auto header = read_header(path, f, &data_begin);
    FLURRY_CHECK(spec.text_field.empty() || column(header, spec.text_field) >= 0,
                 path << ": no column '" << spec.text_field << "' in the header (use --text-field)");
  }
  TextChunk cur{path, f, data_begin, data_begin, next_row, 0, 0};
  int64_t file_row = 0;
  scan_records(path, data_begin, f == TextFormat::kCsv, [&](int64_t rec_end, bool is_blank) {
    if (is_blank) {  // blank lines are not rows; they stay inside the chunk's byte range
      cur.byte_end = rec_end;
      return;
    }
    if (cur.rows == per_chunk) {
      out.push_back(cur);
      cur = TextChunk{path, f, cur.byte_end, cur.byte_end, next_row, 0, file_row};
    }
    ++cur.rows;
    ++file_row;
    ++next_row;
    cur.byte_end = rec_end;
  });
  if (cur.rows > 0) out.push_back(cur);
}

}  // namespace

TextFormat parse_text_format(const std::string& name) {
  const std::string n = lower_ascii(name);
  if (n == "auto" || n.empty()) return TextFormat::kAuto;
  if (n == "lines" || n == "txt" || n == "text") return TextFormat::kLines;
  if (n == "jsonl" || n == "json") return TextFormat::kJsonl;
  if (n == "csv") return TextFormat::kCsv;
  if (n == "tsv") return TextFormat::kTsv;
  if (n == "file" || n == "files") return TextFormat::kFile;
  if (n == "criteo") return TextFormat::kCriteo;
  FLURRY_FAIL("unknown input format '" << name << "' (auto, lines, jsonl, csv, tsv, file, criteo)");
}

const char* text_format_name(TextFormat f) {
  switch (f) {
    case TextFormat::kAuto: return "auto";
    case TextFormat::kLines: return "lines";
    case TextFormat::kJsonl: return "jsonl";
    case TextFormat::kCsv: return "csv";
    case TextFormat::kTsv: return "tsv";
    case TextFormat::kFile: return "file";
    case TextFormat::kCriteo: return "criteo";
  }
  return "?";
}

TextFormat text_format_of(const std::string& path, TextFormat requested) {
  if (requested != TextFormat::kAuto) return requested;
  const std::string p = lower_ascii(path);
  if (ends_with(p, ".jsonl") || ends_with(p, ".json") || ends_with(p, ".ndjson")) return TextFormat::kJsonl;
  if (ends_with(p, ".csv")) return TextFormat::kCsv;
  if (ends_with(p, ".tsv")) return TextFormat::kTsv;
  return TextFormat::kLines;
}

std::vector<TextChunk> index_text_inputs(const std::vector<std::string>& paths, const TextSpec& spec,
                                         int64_t rows_per_chunk) {
  FLURRY_CHECK(rows_per_chunk > 0, "rows per chunk must be positive, got " << rows_per_chunk);
  FLURRY_CHECK(!paths.empty(), "no inputs: give text files (lines, .jsonl, .csv, .tsv) or folders");
  std::vector<TextChunk> out;
  int64_t next_row = 0;
  for (const std::string& p : paths) {
    std::error_code ec;
    FLURRY_CHECK(fs::exists(p, ec), p << ": no such file or folder");
    if (fs::is_directory(p, ec)) {
      // A folder: its files (matching --glob) are documents, or records of the format asked for.
      std::vector<std::string> files;
      for (auto it = fs::recursive_directory_iterator(p, ec); !ec && it != fs::recursive_directory_iterator();
           it.increment(ec)) {
        if (it->is_regular_file(ec) && fnmatch(spec.glob.c_str(), it->path().filename().c_str(), 0) == 0) {
          files.push_back(it->path().string());
        }
      }
      FLURRY_CHECK(!ec, p << ": cannot list: " << ec.message());
      std::sort(files.begin(), files.end());
      const TextFormat f = spec.format == TextFormat::kAuto ? TextFormat::kFile : spec.format;
      for (const auto& file : files) index_one(file, f, spec, rows_per_chunk, out, next_row);
    } else {
      index_one(p, text_format_of(p, spec.format), spec, rows_per_chunk, out, next_row);
    }
  }
  return out;
}

std::vector<TextRow> read_text_chunk(const TextChunk& c, const TextSpec& spec) {
  std::vector<TextRow> rows;
  rows.reserve(static_cast<size_t>(c.rows));
  const std::string data = read_range(c.path, c.byte_begin, c.byte_end);
  if (c.format == TextFormat::kFile) {
    TextRow r;
    r.row = c.row_begin;
    parse_record(data, c, spec, {}, 0, r);
    r.id = c.path;
    rows.push_back(std::move(r));
    return rows;
  }
  std::vector<std::string> header;
  if (c.format == TextFormat::kCsv || c.format == TextFormat::kTsv) {
    int64_t unused = 0;
    header = read_header(c.path, c.format, &unused);
  }
  for_each_record(data, c.format == TextFormat::kCsv, [&](size_t b, size_t e) {
    const std::string rec = data.substr(b, e - b);
    if (blank(rec)) return;
    TextRow r;
    r.row = c.row_begin + static_cast<int64_t>(rows.size());
    parse_record(rec, c, spec, header, c.file_row_begin + static_cast<int64_t>(rows.size()), r);
    rows.push_back(std::move(r));
  });
  if (static_cast<int64_t>(rows.size()) != c.rows) {
    FLURRY_INPUT_FAIL(c.path << ": bytes " << c.byte_begin << "-" << c.byte_end << " hold " << rows.size()
                             << " rows, the index found " << c.rows << " (changed during the run?)");
  }
  return rows;
}

const std::vector<std::string>& criteo_columns() {
  static const std::vector<std::string> cols = [] {
    std::vector<std::string> c = {"label"};
    for (int i = 1; i <= 13; ++i) c.push_back("I" + std::to_string(i));
    for (int i = 1; i <= 26; ++i) c.push_back("C" + std::to_string(i));
    return c;
  }();
  return cols;
}

std::vector<std::string> table_header(const std::string& path, TextFormat format) {
  if (format != TextFormat::kCsv && format != TextFormat::kTsv) return {};
  int64_t unused = 0;
  return read_header(path, format, &unused);
}

std::vector<FieldRow> read_field_chunk(const TextChunk& c, const std::vector<std::string>& columns) {
  FLURRY_CHECK(c.format == TextFormat::kCsv || c.format == TextFormat::kTsv || c.format == TextFormat::kJsonl ||
                   c.format == TextFormat::kCriteo,
               c.path << ": a table input is CSV, TSV, JSONL or Criteo TSV, not " << text_format_name(c.format));
  std::vector<FieldRow> rows;
  rows.reserve(static_cast<size_t>(c.rows));
  const std::string data = read_range(c.path, c.byte_begin, c.byte_end);
  // Where each wanted column sits in a delimited record.
  std::vector<int> where(columns.size(), -1);
  if (c.format != TextFormat::kJsonl) {
    const std::vector<std::string> header = c.format == TextFormat::kCriteo ? criteo_columns() : table_header(c.path, c.format);
    for (size_t k = 0; k < columns.size(); ++k) where[k] = column(header, columns[k]);
  }
  std::vector<std::string> fields;
  for_each_record(data, c.format == TextFormat::kCsv, [&](size_t b, size_t e) {
    const std::string rec = data.substr(b, e - b);
    if (blank(rec)) return;
    FieldRow r;
    r.row = c.row_begin + static_cast<int64_t>(rows.size());
    r.values.assign(columns.size(), std::string());
    r.present.assign(columns.size(), 0);
    const size_t bad = utf8_find_invalid(rec);
    if (bad != std::string::npos) {
      r.error = "invalid UTF-8 at byte " + std::to_string(bad) + " of the record";
    } else if (c.format == TextFormat::kJsonl) {
      const nlohmann::json j = nlohmann::json::parse(rec, nullptr, false);
      if (j.is_discarded() || !j.is_object()) {
        r.error = "not a JSON object";
      } else {
        for (size_t k = 0; k < columns.size(); ++k) {
          const auto it = j.find(columns[k]);
          if (it == j.end() || it->is_null()) continue;
          r.present[k] = 1;
          if (it->is_string()) {
            r.values[k] = it->get<std::string>();
          } else if (it->is_array()) {
            for (const auto& el : *it) {
              if (!r.values[k].empty()) r.values[k] += '|';
              r.values[k] += el.is_string() ? el.get<std::string>() : el.dump();
            }
          } else {
            r.values[k] = it->dump();
          }
        }
      }
    } else if (!split_fields(rec, c.format, fields)) {
      r.error = "unterminated quote";
    } else {
      for (size_t k = 0; k < columns.size(); ++k) {
        if (where[k] >= 0 && where[k] < static_cast<int>(fields.size())) {
          r.values[k] = fields[static_cast<size_t>(where[k])];
          r.present[k] = 1;
        }
      }
      if (c.format == TextFormat::kCriteo && fields.size() != criteo_columns().size()) {
        r.error = "a Criteo record has " + std::to_string(criteo_columns().size()) + " tab-separated fields, this one " +
                  std::to_string(fields.size());
      }
    }
    rows.push_back(std::move(r));
  });
  if (static_cast<int64_t>(rows.size()) != c.rows) {
    FLURRY_INPUT_FAIL(c.path << ": bytes " << c.byte_begin << "-" << c.byte_end << " hold " << rows.size()
                             << " rows, the index found " << c.rows << " (changed during the run?)");
  }
  return rows;
}

std::string text_chunk_id(const TextChunk& c) {
  return c.path + "@" + std::to_string(c.byte_begin) + "-" + std::to_string(c.byte_end) + "#" +
         std::to_string(c.row_begin) + "+" + std::to_string(c.rows) + "~" + std::to_string(c.file_row_begin) + "/" +
         text_format_name(c.format);
}

TextChunk parse_text_chunk_id(const std::string& id) {
  // Parse from the end: the path itself may hold '@' or '#'.
  const size_t slash = id.rfind('/');
  const size_t tilde = id.rfind('~', slash);
  const size_t plus = id.rfind('+', tilde);
  const size_t hash = id.rfind('#', plus);
  const size_t dash = id.rfind('-', hash);
  const size_t at = id.rfind('@', dash);
  FLURRY_CHECK(slash != std::string::npos && tilde != std::string::npos && plus != std::string::npos &&
                   hash != std::string::npos && dash != std::string::npos && at != std::string::npos,
               "not a text chunk id: '" << id << "'");
  TextChunk c;
  c.path = id.substr(0, at);
  c.byte_begin = std::stoll(id.substr(at + 1, dash - at - 1));
  c.byte_end = std::stoll(id.substr(dash + 1, hash - dash - 1));
  c.row_begin = std::stoll(id.substr(hash + 1, plus - hash - 1));
  c.rows = std::stoll(id.substr(plus + 1, tilde - plus - 1));
  c.file_row_begin = std::stoll(id.substr(tilde + 1, slash - tilde - 1));
  c.format = parse_text_format(id.substr(slash + 1));
  return c;
}

}  // namespace flurry
