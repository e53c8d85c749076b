#include "io/bpe_tokenizer.h"

#include <algorithm>
#include <array>
#include <fstream>
#include <queue>
#include <sstream>
#include <sys/stat.h>

#include "io/json_file.h"
#include "io/unicode.h"
#include "runtime/check.h"

namespace flurry {

namespace {

constexpr uint8_t kSpecial = 1;
constexpr uint8_t kAdded = 2;

// The pattern GPT-2 (and Whisper, through tiktoken and Hugging Face) splits text with; a
// tokenizer.json that spells it out in a Split pre-tokenizer gets the same hand-written scanner.
const char* const kGpt2Pattern =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

// GPT-2's reversible byte -> code point map: printable Latin-1 bytes stand for themselves, the
// others (controls, space, 0x7F-0xA0, 0xAD) move to 256 + n so every byte is a visible character.
const std::array<uint32_t, 256>& byte_to_char() {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    uint32_t next = 256;
    for (uint32_t b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      t[b] = printable ? b : next++;
    }
    return t;
  }();
  return table;
}

// Inverse of byte_to_char(); -1 for code points outside the alphabet.
int char_to_byte(uint32_t cp) {
  static const std::vector<int> table = [] {
    std::vector<int> t(512, -1);
    for (int b = 0; b < 256; ++b) t[byte_to_char()[b]] = b;
    return t;
  }();
  return cp < table.size() ? table[cp] : -1;
}

std::string byte_level(const std::string& bytes) {
  std::string out;
  for (unsigned char b : bytes) append_utf8(out, byte_to_char()[b]);
  return out;
}

// What `tokenizers`' ByteLevel decoder yields for one token: its bytes when every character is in
// the byte alphabet, else (an added token written in plain text) its UTF-8 as it is.
std::string token_bytes(const std::string& token) {
  std::string out;
  for (size_t i = 0; i < token.size();) {
    uint32_t cp = 0;
    i += utf8_next(token, i, &cp);
    const int b = char_to_byte(cp);
    if (b < 0) return token;
    out.push_back(static_cast<char>(b));
  }
  return out;
}

bool file_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::string join_path(const std::string& dir, const std::string& name) {
  if (dir.empty() || dir.back() == '/') return dir + name;
  return dir + "/" + name;
}

uint64_t pair_key(int left, int right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}

struct CodePoints {
  std::vector<uint32_t> cp;
  std::vector<CharClass> cls;
  std::vector<size_t> offset;  // byte offset of each code point, plus one past the end
};

CodePoints decode_code_points(const std::string& s) {
  CodePoints c;
  for (size_t i = 0; i < s.size();) {
    uint32_t cp = 0;
    const size_t n = utf8_next(s, i, &cp);
    c.cp.push_back(cp);
    c.cls.push_back(char_class(cp));
    c.offset.push_back(i);
    i += n;
  }
  c.offset.push_back(s.size());
  return c;
}

// Length in code points of the GPT-2 pattern's match at p. The alternatives are tried in the
// pattern's order, so the first that matches wins, as in a backtracking regex engine.
size_t gpt2_match(const CodePoints& c, size_t p) {
  const size_t n = c.cp.size();
  auto at = [&](size_t i) { return i < n ? c.cp[i] : 0u; };
  if (c.cp[p] == '\'') {  // 's 't 're 've 'm 'll 'd (ASCII, case-sensitive)
    const uint32_t a = at(p + 1), b = at(p + 2);
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
  }
  // " ?\p{L}+", " ?\p{N}+", " ?[^\s\p{L}\p{N}]+": an optional ASCII space, then a run of one class.
  const size_t q = (c.cp[p] == ' ' && p + 1 < n && c.cls[p + 1] != CharClass::kSpace) ? p + 1 : p;
  const CharClass k = c.cls[q];
  if (k != CharClass::kSpace) {
    size_t e = q + 1;
    while (e < n && c.cls[e] == k) ++e;
    return e - p;
  }
  // "\s+(?!\S)" leaves the last blank of a run for the word after it; "\s+" takes a lone blank.
  size_t e = p + 1;
  while (e < n && c.cls[e] == CharClass::kSpace) ++e;
  if (e == n || e - p == 1) return e - p;
  return e - p - 1;
}

bool is_blank_before(const std::string& s, size_t end, size_t* start) {
  // Steps back over one code point ending at `end` when it is white space.
  size_t b = end - 1;
  while (b > 0 && (static_cast<unsigned char>(s[b]) & 0xC0) == 0x80) --b;
  uint32_t cp = 0;
  utf8_next(s, b, &cp);
  if (char_class(cp) != CharClass::kSpace) return false;
  *start = b;
  return true;
}

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) FLURRY_FAIL(path << ": cannot open");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Building the tables
// ---------------------------------------------------------------------------------------------

void BpeTokenizer::set_vocab(std::unordered_map<std::string, int> vocab, const std::string& where) {
  int max_id = -1;
  for (const auto& kv : vocab) {
    FLURRY_CHECK(kv.second >= 0, where << ": negative id " << kv.second << " for token '" << kv.first << "'");
    max_id = std::max(max_id, kv.second);
  }
  id_to_token_.assign(static_cast<size_t>(max_id + 1), std::string());
  id_flags_.assign(id_to_token_.size(), 0);
  for (const auto& kv : vocab) {
    FLURRY_CHECK(id_to_token_[kv.second].empty(),
                 where << ": id " << kv.second << " given to both '" << id_to_token_[kv.second] << "' and '"
                       << kv.first << "'");
    id_to_token_[kv.second] = kv.first;
  }
  token_to_id_ = std::move(vocab);
}

void BpeTokenizer::add_merge(const std::string& left, const std::string& right, int rank,
                             const std::string& where) {
  auto l = token_to_id_.find(left);
  auto r = token_to_id_.find(right);
  auto m = token_to_id_.find(left + right);
  FLURRY_CHECK(l != token_to_id_.end() && r != token_to_id_.end(),
               where << ": merge " << rank << " ('" << left << "' '" << right
                     << "') uses a token not in the vocabulary");
  FLURRY_CHECK(m != token_to_id_.end(),
               where << ": merge " << rank << " ('" << left << "' '" << right
                     << "') makes a token not in the vocabulary");
  // A repeated pair keeps its last rank, as `tokenizers` builds its merge map.
  merges_[pair_key(l->second, r->second)] = Merge{rank, m->second};
}

void BpeTokenizer::add_token(const AddedToken& tok, const std::string& where) {
  FLURRY_CHECK(tok.id >= 0 && !tok.content.empty(), where << ": bad added token '" << tok.content << "' id " << tok.id);
  for (auto& a : added_) {
    if (a.id == tok.id) {  // listed twice (tokenizer_config and added_tokens.json): merge the flags
      FLURRY_CHECK(a.content == tok.content, where << ": id " << tok.id << " is both '" << a.content
                                                   << "' and '" << tok.content << "'");
      a.special = a.special || tok.special;
      return;
    }
  }
  if (static_cast<size_t>(tok.id) >= id_to_token_.size()) {
    id_to_token_.resize(static_cast<size_t>(tok.id) + 1);
    id_flags_.resize(id_to_token_.size(), 0);
  }
  const std::string& existing = id_to_token_[tok.id];
  FLURRY_CHECK(existing.empty() || existing == tok.content,
               where << ": added token '" << tok.content << "' reuses id " << tok.id << " of '" << existing << "'");
  id_to_token_[tok.id] = tok.content;
  token_to_id_[tok.content] = tok.id;
  added_.push_back(tok);
}

void BpeTokenizer::finish(const std::string& where) {
  id_flags_.assign(id_to_token_.size(), 0);
  id_bytes_.assign(id_to_token_.size(), std::string());
  for (size_t id = 0; id < id_to_token_.size(); ++id) id_bytes_[id] = token_bytes(id_to_token_[id]);
  for (int b = 0; b < 256; ++b) {
    std::string ch;
    append_utf8(ch, byte_to_char()[b]);
    auto it = token_to_id_.find(ch);
    byte_to_id_[b] = it == token_to_id_.end() ? -1 : it->second;
  }
  for (auto& list : added_by_byte_) list.clear();
  for (size_t i = 0; i < added_.size(); ++i) {
    const AddedToken& a = added_[i];
    id_flags_[a.id] |= kAdded;
    if (a.special) id_flags_[a.id] |= kSpecial;
    added_by_byte_[static_cast<unsigned char>(a.content[0])].push_back(static_cast<int>(i));
  }
  for (auto& list : added_by_byte_) {
    std::stable_sort(list.begin(), list.end(), [&](int x, int y) {
      return added_[x].content.size() > added_[y].content.size();
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------------

namespace {

AddedToken added_from_json(const Json& t, int id, const std::string& where) {
  AddedToken a;
  a.id = id;
  a.content = json_get<std::string>(t, "content", where);
  a.special = json_get_or<bool>(t, "special", false, where);
  a.lstrip = json_get_or<bool>(t, "lstrip", false, where);
  a.rstrip = json_get_or<bool>(t, "rstrip", false, where);
  a.normalized = json_get_or<bool>(t, "normalized", false, where);
  FLURRY_CHECK(!json_get_or<bool>(t, "single_word", false, where),
               where << ": added token '" << a.content << "' has single_word=true, which is not supported");
  return a;
}

std::unordered_map<std::string, int> vocab_from_json(const Json& v, const std::string& where) {
  FLURRY_CHECK(v.is_object(), where << ": the vocabulary is not a JSON object");
  std::unordered_map<std::string, int> vocab;
  vocab.reserve(v.size());
  for (auto it = v.begin(); it != v.end(); ++it) {
    FLURRY_CHECK(it.value().is_number_integer(), where << ": vocabulary entry '" << it.key() << "' is not an integer");
    vocab.emplace(it.key(), it.value().get<int>());
  }
  return vocab;
}

// Reads the ByteLevel pre-tokenizer's settings, alone or after a Split by the GPT-2 pattern.
void read_pre_tokenizer(const Json& pt, bool* add_prefix_space, bool* split_gpt2, const std::string& where) {
  FLURRY_CHECK(pt.is_object(), where << ": pre_tokenizer is missing; a byte-level BPE needs ByteLevel");
  const std::string type = json_get<std::string>(pt, "type", where);
  if (type == "ByteLevel") {
    *add_prefix_space = json_get_or<bool>(pt, "add_prefix_space", false, where);
    *split_gpt2 = json_get_or<bool>(pt, "use_regex", true, where);
    return;
  }
  FLURRY_CHECK(type == "Sequence" && pt.contains("pretokenizers") && pt["pretokenizers"].size() == 2,
               where << ": unsupported pre_tokenizer '" << type << "' (want ByteLevel)");
  const Json& split = pt["pretokenizers"][0];
  const Json& bl = pt["pretokenizers"][1];
  const bool split_ok = json_get<std::string>(split, "type", where) == "Split" && split.contains("pattern") &&
                        split["pattern"].is_object() &&
                        json_get_or<std::string>(split["pattern"], "Regex", "", where) == kGpt2Pattern &&
                        json_get_or<std::string>(split, "behavior", "", where) == "Isolated" &&
                        !json_get_or<bool>(split, "invert", false, where);
  FLURRY_CHECK(split_ok, where << ": unsupported Split pre-tokenizer (only the GPT-2 pattern, Isolated)");
  FLURRY_CHECK(json_get<std::string>(bl, "type", where) == "ByteLevel" &&
                   !json_get_or<bool>(bl, "use_regex", true, where),
               where << ": a Split pre-tokenizer must be followed by ByteLevel with use_regex=false");
  *add_prefix_space = json_get_or<bool>(bl, "add_prefix_space", false, where);
  *split_gpt2 = true;
}

}  // namespace

BpeTokenizer BpeTokenizer::from_dir(const std::string& dir) {
  const std::string tj = join_path(dir, "tokenizer.json");
  if (file_exists(tj)) return from_tokenizer_json(tj);
  const std::string vj = join_path(dir, "vocab.json");
  const std::string mt = join_path(dir, "merges.txt");
  FLURRY_CHECK(file_exists(vj) && file_exists(mt),
               dir << ": no tokenizer.json and no vocab.json + merges.txt; is this a Whisper checkpoint?");
  return from_vocab_merges(vj, mt, dir);
}

BpeTokenizer BpeTokenizer::from_tokenizer_json(const std::string& path) {
  const Json j = read_json_file(path);
  BpeTokenizer t;
  FLURRY_CHECK(!j.contains("normalizer") || j["normalizer"].is_null(),
               path << ": normalizers are not supported by the byte-level BPE tokenizer");
  const Json& model = j.at("model");
  const std::string type = json_get_or<std::string>(model, "type", "BPE", path);
  FLURRY_CHECK(type == "BPE", path << ": model.type is '" << type << "', want BPE");
  FLURRY_CHECK(json_get_or<std::string>(model, "continuing_subword_prefix", "", path).empty() &&
                   json_get_or<std::string>(model, "end_of_word_suffix", "", path).empty(),
               path << ": subword prefixes/suffixes are not byte-level BPE");
  FLURRY_CHECK(!json_get_or<bool>(model, "byte_fallback", false, path), path << ": byte_fallback is not supported");
  FLURRY_CHECK(json_get_or<double>(model, "dropout", 0.0, path) == 0.0, path << ": BPE dropout is for training only");
  read_pre_tokenizer(j.contains("pre_tokenizer") ? j["pre_tokenizer"] : Json(), &t.add_prefix_space_,
                     &t.split_gpt2_, path);
  if (j.contains("decoder") && !j["decoder"].is_null()) {
    const std::string dec = json_get<std::string>(j["decoder"], "type", path);
    FLURRY_CHECK(dec == "ByteLevel", path << ": decoder '" << dec << "' is not supported (want ByteLevel)");
  }

  t.set_vocab(vocab_from_json(model.at("vocab"), path + " model.vocab"), path);
  const Json& merges = model.at("merges");
  FLURRY_CHECK(merges.is_array(), path << ": model.merges is not an array");
  int rank = 0;
  for (const Json& m : merges) {
    if (m.is_string()) {  // "left right": the older form; tokens never hold a plain space
      const std::string s = m.get<std::string>();
      const size_t sp = s.find(' ');
      FLURRY_CHECK(sp != std::string::npos, path << ": merge " << rank << " '" << s << "' has no space");
      t.add_merge(s.substr(0, sp), s.substr(sp + 1), rank, path);
    } else {
      FLURRY_CHECK(m.is_array() && m.size() == 2, path << ": merge " << rank << " is not a pair");
      t.add_merge(m[0].get<std::string>(), m[1].get<std::string>(), rank, path);
    }
    ++rank;
  }
  t.ignore_merges_ = json_get_or<bool>(model, "ignore_merges", false, path);
  t.fuse_unk_ = json_get_or<bool>(model, "fuse_unk", false, path);
  const std::string unk = json_get_or<std::string>(model, "unk_token", "", path);
  if (!unk.empty()) {
    auto it = t.token_to_id_.find(unk);
    FLURRY_CHECK(it != t.token_to_id_.end(), path << ": unk_token '" << unk << "' is not in the vocabulary");
    t.unk_id_ = it->second;
  }
  if (j.contains("added_tokens") && j["added_tokens"].is_array()) {
    for (const Json& a : j["added_tokens"]) t.add_token(added_from_json(a, json_get<int>(a, "id", path), path), path);
  }
  t.finish(path);
  return t;
}

namespace {

// Names of the special tokens in special_tokens_map.json: values are a string, {"content": ...},
// or (additional_special_tokens) a list of either.
void collect_special_names(const Json& v, std::vector<std::string>& out) {
  if (v.is_string()) {
    out.push_back(v.get<std::string>());
  } else if (v.is_object() && v.contains("content")) {
    out.push_back(v["content"].get<std::string>());
  } else if (v.is_array()) {
    for (const Json& e : v) collect_special_names(e, out);
  }
}

}  // namespace

BpeTokenizer BpeTokenizer::from_vocab_merges(const std::string& vocab_json, const std::string& merges_txt,
                                             const std::string& extras_dir) {
  BpeTokenizer t;
  t.set_vocab(vocab_from_json(read_json_file(vocab_json), vocab_json), vocab_json);
  std::istringstream lines(read_text_file(merges_txt));
  std::string line;
  int rank = 0;
  while (std::getline(lines, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || line.rfind("#version", 0) == 0) continue;
    const size_t sp = line.find(' ');
    FLURRY_CHECK(sp != std::string::npos, merges_txt << ": line '" << line << "' is not 'left right'");
    t.add_merge(line.substr(0, sp), line.substr(sp + 1), rank++, merges_txt);
  }

  std::vector<std::string> special_names;
  const std::string cfg_path = join_path(extras_dir, "tokenizer_config.json");
  const std::string map_path = join_path(extras_dir, "special_tokens_map.json");
  const std::string added_path = join_path(extras_dir, "added_tokens.json");
  if (!extras_dir.empty() && file_exists(cfg_path)) {
    const Json cfg = read_json_file(cfg_path);
    t.add_prefix_space_ = json_get_or<bool>(cfg, "add_prefix_space", false, cfg_path);
    if (cfg.contains("added_tokens_decoder") && cfg["added_tokens_decoder"].is_object()) {
      for (auto it = cfg["added_tokens_decoder"].begin(); it != cfg["added_tokens_decoder"].end(); ++it) {
        const std::string& key = it.key();
        FLURRY_CHECK(!key.empty() && key.find_first_not_of("0123456789") == std::string::npos && key.size() < 10,
                     cfg_path << ": added_tokens_decoder key '" << key << "' is not a token id");
        t.add_token(added_from_json(it.value(), std::stoi(key), cfg_path), cfg_path);
      }
    }
    for (const char* k : {"bos_token", "eos_token", "unk_token", "pad_token", "additional_special_tokens"}) {
      if (cfg.contains(k)) collect_special_names(cfg[k], special_names);
    }
  }
  if (!extras_dir.empty() && file_exists(map_path)) {
    const Json m = read_json_file(map_path);
    for (auto it = m.begin(); it != m.end(); ++it) collect_special_names(it.value(), special_names);
  }
  if (!extras_dir.empty() && file_exists(added_path)) {
    const Json a = read_json_file(added_path);
    for (auto it = a.begin(); it != a.end(); ++it) {
      AddedToken tok;
      tok.id = it.value().get<int>();
      tok.content = it.key();
      t.add_token(tok, added_path);
    }
  }
  // The special tokens named by the maps are whole tokens even when they only sit in vocab.json
  // (<|endoftext|> in GPT-2's), as the slow tokenizers treat them.
  for (const std::string& name : special_names) {
    auto it = t.token_to_id_.find(name);
    if (it == t.token_to_id_.end()) continue;
    AddedToken tok;
    tok.id = it->second;
    tok.content = name;
    tok.special = true;
    t.add_token(tok, map_path);
  }
  t.finish(vocab_json);
  return t;
}

// ---------------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------------

std::vector<std::string> BpeTokenizer::pre_tokenize(const std::string& text) const {
  std::vector<std::string> pieces;
  std::string s = utf8_replace_invalid(text);
  if (add_prefix_space_ && !s.empty() && s[0] != ' ') s.insert(s.begin(), ' ');
  if (s.empty()) return pieces;
  if (!split_gpt2_) {
    pieces.push_back(s);
    return pieces;
  }
  const CodePoints c = decode_code_points(s);
  for (size_t p = 0; p < c.cp.size();) {
    const size_t len = gpt2_match(c, p);
    pieces.push_back(s.substr(c.offset[p], c.offset[p + len] - c.offset[p]));
    p += len;
  }
  return pieces;
}

// Leftmost-longest matching of added tokens over the plain-text spans, the way `tokenizers` runs
// its Aho-Corasick pass: first the tokens matched on raw text, then those marked `normalized`.
void BpeTokenizer::split_added(const std::string& text, bool normalized_pass, bool allow_special,
                               std::vector<Span>& spans) const {
  std::vector<Span> out;
  for (const Span& sp : spans) {
    if (sp.added_id >= 0) {
      out.push_back(sp);
      continue;
    }
    size_t emitted = sp.begin;  // text before this offset is already in `out`
    size_t i = sp.begin;
    while (i < sp.end) {
      const AddedToken* hit = nullptr;
      for (int k : added_by_byte_[static_cast<unsigned char>(text[i])]) {
        const AddedToken& a = added_[k];
        if (a.normalized != normalized_pass || a.content.size() > sp.end - i) continue;
        if (text.compare(i, a.content.size(), a.content) == 0) {
          hit = &a;
          break;
        }
      }
      if (hit == nullptr) {
        ++i;
        continue;
      }
      size_t b = i, e = i + hit->content.size();
      if (hit->special && !allow_special) {  // consumed as text: the search resumes after it
        i = e;
        continue;
      }
      size_t prev = 0;
      while (hit->lstrip && b > emitted && is_blank_before(text, b, &prev)) b = prev;
      while (hit->rstrip && e < sp.end) {
        uint32_t cp = 0;
        const size_t n = utf8_next(text, e, &cp);
        if (char_class(cp) != CharClass::kSpace) break;
        e += n;
      }
      if (b > emitted) out.push_back(Span{emitted, b, -1});
      out.push_back(Span{b, e, hit->id});
      emitted = i = e;
    }
    if (sp.end > emitted) out.push_back(Span{emitted, sp.end, -1});
  }
  spans.swap(out);
}

void BpeTokenizer::encode_piece(const std::string& piece, std::vector<int>& out) const {
  if (ignore_merges_) {
    auto it = token_to_id_.find(byte_level(piece));
    if (it != token_to_id_.end() && !(id_flags_[it->second] & kAdded)) {
      out.push_back(it->second);
      return;
    }
  }
  // Symbols as a linked list over byte positions; a min-heap of candidate merges by (rank,
  // position) picks the lowest rank, leftmost first, as `tokenizers`' BPE does.
  struct Sym {
    int id;
    int prev;
    int next;
  };
  std::vector<Sym> sym;
  sym.reserve(piece.size());
  bool last_unk = false;
  for (unsigned char b : piece) {
    int id = byte_to_id_[b];
    if (id < 0) {  // a byte missing from the alphabet: unk when the model has one, else dropped
      if (unk_id_ < 0 || (fuse_unk_ && last_unk)) continue;
      id = unk_id_;
      last_unk = true;
    } else {
      last_unk = false;
    }
    const int n = static_cast<int>(sym.size());
    sym.push_back(Sym{id, n - 1, -1});
    if (n > 0) sym[n - 1].next = n;
  }
  struct Cand {
    int rank;
    int pos;
    int new_id;
    bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> heap;
  auto push_pair = [&](int pos) {
    if (pos < 0 || sym[pos].next < 0) return;
    auto it = merges_.find(pair_key(sym[pos].id, sym[sym[pos].next].id));
    if (it != merges_.end()) heap.push(Cand{it->second.rank, pos, it->second.new_id});
  };
  for (int i = 0; i + 1 < static_cast<int>(sym.size()); ++i) push_pair(i);
  while (!heap.empty()) {
    const Cand top = heap.top();
    heap.pop();
    Sym& left = sym[top.pos];
    if (left.id < 0 || left.next < 0) continue;  // merged away, or nothing to its right now
    auto it = merges_.find(pair_key(left.id, sym[left.next].id));
    if (it == merges_.end() || it->second.new_id != top.new_id) continue;  // stale candidate
    Sym& right = sym[left.next];
    left.id = top.new_id;
    left.next = right.next;
    if (right.next >= 0) sym[right.next].prev = top.pos;
    right.id = -1;
    push_pair(left.prev);
    push_pair(top.pos);
  }
  for (int i = sym.empty() ? -1 : 0; i >= 0; i = sym[i].next) out.push_back(sym[i].id);
}

std::vector<int> BpeTokenizer::encode(const std::string& raw, bool allow_special) const {
  const std::string text = utf8_replace_invalid(raw);
  std::vector<Span> spans{Span{0, text.size(), -1}};
  split_added(text, false, allow_special, spans);
  split_added(text, true, allow_special, spans);
  std::vector<int> ids;
  for (const Span& sp : spans) {
    if (sp.added_id >= 0) {
      ids.push_back(sp.added_id);
      continue;
    }
    for (const std::string& piece : pre_tokenize(text.substr(sp.begin, sp.end - sp.begin))) {
      encode_piece(piece, ids);
    }
  }
  return ids;
}

// ---------------------------------------------------------------------------------------------
// Decoding and lookups
// ---------------------------------------------------------------------------------------------

std::string BpeTokenizer::decode_bytes(const std::vector<int>& ids, bool skip_special) const {
  std::string out;
  for (int id : ids) {
    FLURRY_CHECK(id >= 0 && id < vocab_size(),
                 "token id " << id << " is outside the vocabulary [0, " << vocab_size() << ")");
    if (skip_special && (id_flags_[id] & kSpecial)) continue;
    out += id_bytes_[id];
  }
  return out;
}

std::string BpeTokenizer::decode(const std::vector<int>& ids, bool skip_special) const {
  return utf8_replace_invalid(decode_bytes(ids, skip_special));
}

std::optional<int> BpeTokenizer::token_to_id(const std::string& token) const {
  auto it = token_to_id_.find(token);
  if (it == token_to_id_.end()) return std::nullopt;
  return it->second;
}

const std::string& BpeTokenizer::id_to_token(int id) const {
  FLURRY_CHECK(id >= 0 && id < vocab_size(),
                 "token id " << id << " is outside the vocabulary [0, " << vocab_size() << ")");
  return id_to_token_[id];
}

bool BpeTokenizer::is_special(int id) const {
  return id >= 0 && id < vocab_size() && (id_flags_[id] & kSpecial) != 0;
}

bool BpeTokenizer::is_added(int id) const {
  return id >= 0 && id < vocab_size() && (id_flags_[id] & kAdded) != 0;
}

}  // namespace flurry
