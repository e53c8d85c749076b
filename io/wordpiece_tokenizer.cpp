#include "io/wordpiece_tokenizer.h"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <sys/stat.h>

#include "io/json_file.h"
#include "io/unicode.h"
#include "runtime/check.h"

namespace flurry {

namespace {

bool file_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// The CJK Unified Ideographs blocks and their compatibility forms, as tokenizers lists them. Not
// Hiragana, Katakana or Hangul, which BERT writes with ordinary letters. tokenizers starts one
// range at U+2B920 where BERT's Python (_is_chinese_char) has U+2B820; we follow tokenizers.
bool is_cjk_ideograph(uint32_t cp) {
  return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) ||
         (cp >= 0x20000 && cp <= 0x2A6DF) || (cp >= 0x2A700 && cp <= 0x2B73F) ||
         (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B920 && cp <= 0x2CEAF) ||
         (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

// tokenizers decides "control", "punctuation" and "nonspacing mark" with category tables of an
// older Unicode (the unicode_categories crate, Unicode 8) than utf8proc's. These marks,
// punctuation and format characters, added since, are ordinary characters to it: never dropped,
// split or stripped. The list is what tokenizer_wordpiece_test finds when it compares every code
// point with the reference (tests/fixtures/wordpiece/goldens.json, codepoint_classes).
struct Range {
  uint32_t first, last;  // inclusive
};
constexpr Range kPlainInReference[] = {
    {0x61D, 0x61D}, {0x7FD, 0x7FD}, {0x890, 0x891}, {0x898, 0x89F}, {0x8CA, 0x8E2}, {0x9FD, 0x9FE},
    {0xA76, 0xA76}, {0xAFA, 0xAFF}, {0xB55, 0xB55}, {0xC04, 0xC04}, {0xC3C, 0xC3C}, {0xC77, 0xC77},
    {0xC84, 0xC84}, {0xD00, 0xD00}, {0xD3B, 0xD3C}, {0xD81, 0xD81}, {0xEBA, 0xEBA}, {0xECE, 0xECE},
    {0x180F, 0x180F}, {0x1885, 0x1886}, {0x1ABF, 0x1ACE}, {0x1B7D, 0x1B7E}, {0x1DF6, 0x1DFB},
    {0x2E43, 0x2E4F}, {0x2E52, 0x2E5D}, {0xA82C, 0xA82C}, {0xA8C5, 0xA8C5}, {0xA8FF, 0xA8FF},
    {0xA9BD, 0xA9BD}, {0x10D24, 0x10D27}, {0x10EAB, 0x10EAD}, {0x10EFD, 0x10EFF},
    {0x10F46, 0x10F50}, {0x10F55, 0x10F59}, {0x10F82, 0x10F89}, {0x11070, 0x11070},
    {0x11073, 0x11074}, {0x110C2, 0x110C2}, {0x110CD, 0x110CD}, {0x111CF, 0x111CF},
    {0x1123E, 0x1123E}, {0x11241, 0x11241}, {0x1133B, 0x1133B}, {0x11438, 0x1143F},
    {0x11442, 0x11444}, {0x11446, 0x11446}, {0x1144B, 0x1144F}, {0x1145A, 0x1145B},
    {0x1145D, 0x1145E}, {0x11660, 0x1166C}, {0x116B9, 0x116B9}, {0x1182F, 0x11837},
    {0x11839, 0x1183B}, {0x1193B, 0x1193C}, {0x1193E, 0x1193E}, {0x11943, 0x11946},
    {0x119D4, 0x119D7}, {0x119DA, 0x119DB}, {0x119E0, 0x119E0}, {0x119E2, 0x119E2},
    {0x11A01, 0x11A0A}, {0x11A33, 0x11A38}, {0x11A3B, 0x11A47}, {0x11A51, 0x11A56},
    {0x11A59, 0x11A5B}, {0x11A8A, 0x11A96}, {0x11A98, 0x11A9C}, {0x11A9E, 0x11AA2},
    {0x11B00, 0x11B09}, {0x11C30, 0x11C36}, {0x11C38, 0x11C3D}, {0x11C3F, 0x11C3F},
    {0x11C41, 0x11C45}, {0x11C70, 0x11C71}, {0x11C92, 0x11CA7}, {0x11CAA, 0x11CB0},
    {0x11CB2, 0x11CB3}, {0x11CB5, 0x11CB6}, {0x11D31, 0x11D36}, {0x11D3A, 0x11D3A},
    {0x11D3C, 0x11D3D}, {0x11D3F, 0x11D45}, {0x11D47, 0x11D47}, {0x11D90, 0x11D91},
    {0x11D95, 0x11D95}, {0x11D97, 0x11D97}, {0x11EF3, 0x11EF4}, {0x11EF7, 0x11EF8},
    {0x11F00, 0x11F01}, {0x11F36, 0x11F3A}, {0x11F40, 0x11F40}, {0x11F42, 0x11F4F},
    {0x11FFF, 0x11FFF}, {0x12FF1, 0x12FF2}, {0x13430, 0x13440}, {0x13447, 0x13455},
    {0x16E97, 0x16E9A}, {0x16F4F, 0x16F4F}, {0x16FE2, 0x16FE2}, {0x16FE4, 0x16FE4},
    {0x1CF00, 0x1CF2D}, {0x1CF30, 0x1CF46}, {0x1E000, 0x1E006}, {0x1E008, 0x1E018},
    {0x1E01B, 0x1E021}, {0x1E023, 0x1E024}, {0x1E026, 0x1E02A}, {0x1E08F, 0x1E08F},
    {0x1E130, 0x1E136}, {0x1E2AE, 0x1E2AE}, {0x1E2EC, 0x1E2EF}, {0x1E4EC, 0x1E4EF},
    {0x1E944, 0x1E94A}, {0x1E95E, 0x1E95F},
};

// The general category as tokenizers' tables have it: utf8proc's, less what Unicode added or
// moved since (three characters changed category: U+166D Po -> So, U+1734 Mn -> Mc, U+111C9
// Po -> Mn).
unicode::Category reference_category(uint32_t cp) {
  using unicode::Category;
  if (cp < 0x61D) return unicode::category(cp);  // the common scripts: nothing changed
  if (cp == 0x166D || cp == 0x111C9) return Category::kPo;
  if (cp == 0x1734) return Category::kMn;
  const auto* end = std::end(kPlainInReference);
  const auto* it = std::upper_bound(std::begin(kPlainInReference), end, cp,
                                    [](uint32_t c, const Range& r) { return c < r.first; });
  if (it != std::begin(kPlainInReference) && cp <= (it - 1)->last) return Category::kLo;
  return unicode::category(cp);
}

// What text cleaning drops: the "other" categories but unassigned (Cc, Cf, Co, Cs), which is what
// tokenizers' is_other() tests. Tab, newline and carriage return are white space instead.
bool is_bert_control(uint32_t cp) {
  if (cp == '\t' || cp == '\n' || cp == '\r') return false;
  using unicode::Category;
  const Category c = reference_category(cp);
  return c == Category::kCc || c == Category::kCf || c == Category::kCo || c == Category::kCs;
}

// ASCII symbols count as punctuation ("$", "+", "^", "`" ...) besides Unicode's P* categories.
bool is_bert_punctuation(uint32_t cp) {
  if ((cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) || (cp >= 91 && cp <= 96) ||
      (cp >= 123 && cp <= 126)) {
    return true;
  }
  using unicode::Category;
  const Category c = reference_category(cp);
  return cp >= 0x80 && c >= Category::kPc && c <= Category::kPo;
}

// NFD, except for U+11938 (Unicode 13), whose decomposition tokenizers' normalization tables do
// not have. It and its decomposition are starters, so the pieces between can be decomposed apart.
std::string reference_nfd(const std::string& s) {
  const char* const kKept = "\xF0\x91\xA4\xB8";
  size_t at = s.find(kKept);
  if (at == std::string::npos) return unicode::nfd(s);
  std::string out;
  size_t begin = 0;
  for (; at != std::string::npos; at = s.find(kKept, begin)) {
    out += unicode::nfd(std::string_view(s).substr(begin, at - begin));
    out += kKept;
    begin = at + 4;
  }
  return out + unicode::nfd(std::string_view(s).substr(begin));
}

std::string json_token(const Json& j, const std::string& where) {
  // Special tokens appear as "[CLS]" or, in newer files, {"content": "[CLS]", ...}.
  if (j.is_string()) return j.get<std::string>();
  FLURRY_CHECK(j.is_object() && j.contains("content") && j.at("content").is_string(),
               where << ": a special token must be a string or an object with \"content\"");
  return j.at("content").get<std::string>();
}

// tokenizer_config.json's keys over `cfg`; absent keys leave it as it is.
void apply_tokenizer_config(const Json& j, const std::string& where, WordPieceConfig& cfg) {
  if (j.contains("do_lower_case") && j.at("do_lower_case").is_boolean()) {
    cfg.lowercase = j.at("do_lower_case").get<bool>();
  }
  if (j.contains("strip_accents")) {
    const Json& a = j.at("strip_accents");
    cfg.strip_accents = a.is_null() ? WordPieceConfig::Accents::kFollowLowercase
                        : a.get<bool>() ? WordPieceConfig::Accents::kStrip
                                        : WordPieceConfig::Accents::kKeep;
  }
  if (j.contains("tokenize_chinese_chars") && j.at("tokenize_chinese_chars").is_boolean()) {
    cfg.handle_chinese_chars = j.at("tokenize_chinese_chars").get<bool>();
  }
  const std::pair<const char*, std::string*> names[] = {
      {"unk_token", &cfg.unk_token}, {"cls_token", &cfg.cls_token}, {"sep_token", &cfg.sep_token},
      {"pad_token", &cfg.pad_token}, {"mask_token", &cfg.mask_token}};
  for (const auto& [key, field] : names) {
    if (j.contains(key) && !j.at(key).is_null()) *field = json_token(j.at(key), where);
  }
}

// BertPreTokenizer: white space separates words and goes; each punctuation character is a word of
// its own. Calls f(word) for each while it returns true.
template <typename F>
void for_each_word(std::string_view s, F&& f) {
  size_t word_begin = 0;
  for (size_t i = 0; i < s.size();) {
    uint32_t cp = 0;
    const size_t n = utf8_next(s, i, &cp);
    const bool space = unicode::is_white_space(cp);
    if (space || is_bert_punctuation(cp)) {
      if (i > word_begin && !f(s.substr(word_begin, i - word_begin))) return;
      if (!space && !f(s.substr(i, n))) return;
      word_begin = i + n;
    }
    i += n;
  }
  if (word_begin < s.size()) f(s.substr(word_begin));
}

}  // namespace

// ---- loading ------------------------------------------------------------------------------------

WordPieceTokenizer WordPieceTokenizer::from_dir(const std::string& dir) {
  const std::string json = dir + "/tokenizer.json";
  const std::string cfg_path = dir + "/tokenizer_config.json";
  if (!file_exists(json)) return from_vocab_dir(dir);
  WordPieceTokenizer tok = from_tokenizer_json(json);
  if (file_exists(cfg_path)) {
    // Only the normaliser's flags: the special tokens of tokenizer.json are already complete.
    WordPieceConfig cfg = tok.config_;
    Json flags = read_json_file(cfg_path);
    for (const char* key : {"unk_token", "cls_token", "sep_token", "pad_token", "mask_token"}) {
      flags.erase(key);
    }
    apply_tokenizer_config(flags, cfg_path, cfg);
    tok.config_.lowercase = cfg.lowercase;
    tok.config_.strip_accents = cfg.strip_accents;
    tok.config_.handle_chinese_chars = cfg.handle_chinese_chars;
  }
  return tok;
}

WordPieceTokenizer WordPieceTokenizer::from_vocab_dir(const std::string& dir) {
  WordPieceConfig cfg;
  for (const char* name : {"special_tokens_map.json", "tokenizer_config.json"}) {
    const std::string path = dir + "/" + name;
    if (file_exists(path)) apply_tokenizer_config(read_json_file(path), path, cfg);
  }
  return from_vocab_txt(dir + "/vocab.txt", cfg);
}

WordPieceTokenizer WordPieceTokenizer::from_vocab_txt(const std::string& vocab_txt,
                                                      const WordPieceConfig& config) {
  std::ifstream f(vocab_txt, std::ios::binary);
  FLURRY_CHECK(f.good(), vocab_txt << ": cannot open the WordPiece vocabulary");
  std::vector<std::string> tokens;
  std::string line;
  // One token per line; only the "\n" goes (transformers' load_vocab does rstrip("\n")).
  while (std::getline(f, line)) tokens.push_back(line);
  return from_tokens(tokens, config);
}

WordPieceTokenizer WordPieceTokenizer::from_tokens(const std::vector<std::string>& tokens,
                                                   const WordPieceConfig& config) {
  WordPieceTokenizer tok;
  tok.config_ = config;
  tok.set_vocab(tokens, "vocabulary");
  for (const std::string* s : {&config.unk_token, &config.cls_token, &config.sep_token,
                               &config.pad_token, &config.mask_token}) {
    if (tok.token_to_id(*s) >= 0) tok.add_special(*s, "vocabulary");
  }
  tok.finish("vocabulary");
  return tok;
}

WordPieceTokenizer WordPieceTokenizer::from_tokenizer_json(const std::string& path) {
  const Json j = read_json_file(path);
  try {
    return from_tokenizer_json(j, path);
  } catch (const Json::exception& e) {  // a field of the wrong type or a missing one
    FLURRY_FAIL(path << ": " << e.what());
  }
}

WordPieceTokenizer WordPieceTokenizer::from_tokenizer_json(const Json& j, const std::string& path) {
  FLURRY_CHECK(j.contains("model") && j.at("model").is_object(), path << ": no \"model\" object");
  const Json& m = j.at("model");
  FLURRY_CHECK(m.value("type", "") == "WordPiece",
               path << ": model type is \"" << m.value("type", "") << "\", expected WordPiece");
  WordPieceTokenizer tok;
  WordPieceConfig& cfg = tok.config_;
  cfg.unk_token = json_get_or<std::string>(m, "unk_token", cfg.unk_token, path);
  cfg.continuing_prefix =
      json_get_or<std::string>(m, "continuing_subword_prefix", cfg.continuing_prefix, path);
  cfg.max_input_chars_per_word =
      json_get_or<int>(m, "max_input_chars_per_word", cfg.max_input_chars_per_word, path);

  const Json& n = j.contains("normalizer") ? j.at("normalizer") : Json();
  if (n.is_null()) {
    cfg.clean_text = cfg.handle_chinese_chars = cfg.lowercase = false;
    cfg.strip_accents = WordPieceConfig::Accents::kKeep;
  } else {
    FLURRY_CHECK(n.value("type", "") == "BertNormalizer",
                 path << ": normalizer \"" << n.value("type", "") << "\" is not supported (BertNormalizer)");
    cfg.clean_text = n.value("clean_text", true);
    cfg.handle_chinese_chars = n.value("handle_chinese_chars", true);
    cfg.lowercase = n.value("lowercase", true);
    apply_tokenizer_config(Json{{"strip_accents", n.value("strip_accents", Json())}}, path, cfg);
  }
  const Json& pre = j.contains("pre_tokenizer") ? j.at("pre_tokenizer") : Json();
  FLURRY_CHECK(pre.is_object() && pre.value("type", "") == "BertPreTokenizer",
               path << ": only the BertPreTokenizer pre-tokenizer is supported");

  // [CLS] and [SEP] from the post-processor: BertProcessing names them, TemplateProcessing's
  // "single" template must be exactly [CLS] $A [SEP] (anything else is not what encode() builds).
  const Json& post = j.contains("post_processor") ? j.at("post_processor") : Json();
  const std::string post_type = post.is_object() ? post.value("type", "") : "";
  if (post_type == "BertProcessing") {
    cfg.cls_token = post.at("cls").at(0).get<std::string>();
    cfg.sep_token = post.at("sep").at(0).get<std::string>();
  } else if (post_type == "TemplateProcessing") {
    const Json& single = post.at("single");
    const bool shape = single.is_array() && single.size() == 3 && single[0].contains("SpecialToken") &&
                       single[1].contains("Sequence") && single[2].contains("SpecialToken");
    FLURRY_CHECK(shape, path << ": the post-processor's single template is not [CLS] $A [SEP]");
    cfg.cls_token = single[0].at("SpecialToken").at("id").get<std::string>();
    cfg.sep_token = single[2].at("SpecialToken").at("id").get<std::string>();
  } else {
    FLURRY_FAIL(path << ": post-processor \"" << post_type
                     << "\" is not supported (BertProcessing, TemplateProcessing)");
  }
  if (j.contains("padding") && j.at("padding").is_object()) {
    cfg.pad_token = json_get_or<std::string>(j.at("padding"), "pad_token", cfg.pad_token, path);
  }

  // The vocabulary, and added tokens that extend it.
  const Json& vocab = m.at("vocab");
  FLURRY_CHECK(vocab.is_object(), path << ": model.vocab must be an object of token -> id");
  std::vector<std::string> id_to_token;
  auto place = [&](const std::string& token, long id) {
    FLURRY_CHECK(id >= 0 && id < (1L << 24), path << ": token id " << id << " out of range");
    if (static_cast<size_t>(id) >= id_to_token.size()) id_to_token.resize(static_cast<size_t>(id) + 1);
    id_to_token[static_cast<size_t>(id)] = token;
  };
  for (const auto& [token, id] : vocab.items()) place(token, id.get<long>());
  const Json& added = j.contains("added_tokens") ? j.at("added_tokens") : Json::array();
  for (const Json& a : added) place(a.at("content").get<std::string>(), a.at("id").get<long>());
  tok.set_vocab(std::move(id_to_token), path);
  for (const Json& a : added) {
    FLURRY_CHECK(!a.value("single_word", false),
                 path << ": added token " << a.at("content") << " has single_word, which is not supported");
    tok.add_special(Special{a.at("content").get<std::string>(), a.at("id").get<int32_t>(),
                            a.value("normalized", false), a.value("lstrip", false),
                            a.value("rstrip", false)},
                    path);
  }
  tok.finish(path);
  return tok;
}

void WordPieceTokenizer::set_vocab(std::vector<std::string> id_to_token, const std::string& where) {
  FLURRY_CHECK(!id_to_token.empty(), where << ": empty vocabulary");
  id_to_token_ = std::move(id_to_token);
  vocab_.clear();
  vocab_.reserve(id_to_token_.size());
  max_token_bytes_ = 0;
  for (size_t i = 0; i < id_to_token_.size(); ++i) {
    const std::string& t = id_to_token_[i];
    if (t.empty()) continue;  // a gap in the id space
    // A token listed twice keeps its later id, as transformers' load_vocab does.
    vocab_[t] = static_cast<int32_t>(i);
    max_token_bytes_ = std::max(max_token_bytes_, t.size());
  }
}

void WordPieceTokenizer::add_special(const std::string& token, const std::string& where) {
  add_special(Special{token, token_to_id(token), false, false, false}, where);
}

void WordPieceTokenizer::add_special(Special special, const std::string& where) {
  FLURRY_CHECK(!special.content.empty(), where << ": empty added token");
  FLURRY_CHECK(utf8_find_invalid(special.content) == std::string_view::npos,
               where << ": added token is not valid UTF-8");
  FLURRY_CHECK(special.id >= 0 && special.id < vocab_size(),
               where << ": added token \"" << special.content << "\" has no id");
  for (const Special& s : specials_) {
    if (s.content == special.content && s.normalized == special.normalized) return;
  }
  specials_.push_back(std::move(special));
}

void WordPieceTokenizer::finish(const std::string& where) {
  const WordPieceConfig& c = config_;
  FLURRY_CHECK(c.max_input_chars_per_word > 0, where << ": max_input_chars_per_word must be positive");
  unk_id_ = token_to_id(c.unk_token);
  cls_id_ = token_to_id(c.cls_token);
  sep_id_ = token_to_id(c.sep_token);
  pad_id_ = token_to_id(c.pad_token);
  mask_id_ = token_to_id(c.mask_token);
  FLURRY_CHECK(unk_id_ >= 0, where << ": unknown token \"" << c.unk_token << "\" is not in the vocabulary");
  FLURRY_CHECK(cls_id_ >= 0, where << ": \"" << c.cls_token << "\" is not in the vocabulary");
  FLURRY_CHECK(sep_id_ >= 0, where << ": \"" << c.sep_token << "\" is not in the vocabulary");
  // Normalized added tokens are matched in normalized text, so their own text is normalized too.
  for (Special& s : specials_) {
    if (s.normalized) s.content = normalize(s.content);
  }
  specials_.erase(std::remove_if(specials_.begin(), specials_.end(),
                                 [](const Special& s) { return s.content.empty(); }),
                  specials_.end());
  std::stable_sort(specials_.begin(), specials_.end(), [](const Special& a, const Special& b) {
    return a.content.size() > b.content.size();
  });
}

int32_t WordPieceTokenizer::token_to_id(const std::string& token) const {
  const auto it = vocab_.find(token);
  return it == vocab_.end() ? -1 : it->second;
}

const std::string& WordPieceTokenizer::id_to_token(int32_t id) const {
  FLURRY_CHECK(id >= 0 && id < vocab_size(), "token id " << id << " out of range [0, " << vocab_size() << ")");
  return id_to_token_[static_cast<size_t>(id)];
}

// ---- encoding -----------------------------------------------------------------------------------

std::string WordPieceTokenizer::normalize(std::string_view text) const {
  const WordPieceConfig& c = config_;
  std::string s;
  s.reserve(text.size() + 8);
  bool ascii = true;
  for (size_t i = 0; i < text.size();) {
    uint32_t cp = 0;
    i += utf8_next(text, i, &cp);
    if (c.clean_text) {
      if (cp == 0 || cp == 0xFFFD || is_bert_control(cp)) continue;
      if (cp == '\t' || cp == '\n' || cp == '\r' || unicode::is_white_space(cp)) {
        s += ' ';
        continue;
      }
    }
    ascii = ascii && cp < 0x80;
    if (c.handle_chinese_chars && is_cjk_ideograph(cp)) {
      s += ' ';
      append_utf8(s, cp);
      s += ' ';
    } else {
      append_utf8(s, cp);
    }
  }
  const bool strip = c.strip_accents == WordPieceConfig::Accents::kStrip ||
                     (c.strip_accents == WordPieceConfig::Accents::kFollowLowercase && c.lowercase);
  // Accents go before lower-casing, in tokenizers' order (İ: NFD gives I + U+0307, the mark goes,
  // then "i"; lower-casing first would give the same here, but the order is the reference's).
  if (strip && !ascii) {
    const std::string d = reference_nfd(s);
    s.clear();
    for (size_t i = 0; i < d.size();) {
      uint32_t cp = 0;
      const size_t n = utf8_next(d, i, &cp);
      if (reference_category(cp) != unicode::Category::kMn) s.append(d, i, n);
      i += n;
    }
  }
  if (c.lowercase) {
    if (ascii) {
      for (char& ch : s) ch = (ch >= 'A' && ch <= 'Z') ? static_cast<char>(ch + 32) : ch;
    } else {
      // Per character, with no Final_Sigma context: tokenizers lower-cases char by char.
      const std::string u = std::move(s);
      s.clear();
      s.reserve(u.size());
      for (size_t i = 0; i < u.size();) {
        uint32_t cp = 0;
        i += utf8_next(u, i, &cp);
        unicode::append_lower_full(s, cp);
      }
    }
  }
  return s;
}

template <typename Plain>
void WordPieceTokenizer::split_specials(std::string_view text, bool normalized, long limit,
                                        std::vector<int32_t>& ids, Plain&& plain) const {
  auto full = [&] { return limit >= 0 && static_cast<long>(ids.size()) >= limit; };
  size_t plain_begin = 0;
  for (size_t i = 0; i < text.size() && !full();) {
    const Special* hit = nullptr;
    for (const Special& s : specials_) {
      if (s.normalized == normalized && text.compare(i, s.content.size(), s.content) == 0) {
        hit = &s;  // longest first: the first hit is the longest match here
        break;
      }
    }
    if (hit == nullptr) {
      ++i;  // UTF-8 is self-synchronising: a match can only start on a character boundary
      continue;
    }
    size_t before = i, after = i + hit->content.size();
    // lstrip / rstrip take the neighbouring white space into the token (it disappears); ASCII
    // white space only, which is all that BERT-family files that set these flags meet in practice.
    while (hit->lstrip && before > plain_begin && (text[before - 1] == ' ' || text[before - 1] == '\t' ||
                                                   text[before - 1] == '\n' || text[before - 1] == '\r')) {
      --before;
    }
    while (hit->rstrip && after < text.size() &&
           (text[after] == ' ' || text[after] == '\t' || text[after] == '\n' || text[after] == '\r')) {
      ++after;
    }
    if (before > plain_begin) plain(text.substr(plain_begin, before - plain_begin));
    if (!full()) ids.push_back(hit->id);
    i = plain_begin = after;
  }
  if (plain_begin < text.size() && !full()) plain(text.substr(plain_begin));
}

void WordPieceTokenizer::encode_text(std::string_view text, long limit, std::vector<int32_t>& ids) const {
  const size_t bad = utf8_find_invalid(text);
  if (bad != std::string_view::npos) {
    char byte[8];
    std::snprintf(byte, sizeof(byte), "0x%02x", static_cast<unsigned char>(text[bad]));
    throw InputError("WordPiece: text is not valid UTF-8 (byte " + std::string(byte) + " at offset " +
                     std::to_string(bad) + " of " + std::to_string(text.size()) + ")");
  }
  split_specials(text, false, limit, ids, [&](std::string_view raw) {
    const std::string norm = normalize(raw);
    split_specials(norm, true, limit, ids,
                   [&](std::string_view words) { encode_words(words, limit, ids); });
  });
}

void WordPieceTokenizer::encode_words(std::string_view s, long limit, std::vector<int32_t>& ids) const {
  for_each_word(s, [&](std::string_view word) {
    encode_word(word, ids);
    return limit < 0 || static_cast<long>(ids.size()) < limit;
  });
  if (limit >= 0 && static_cast<long>(ids.size()) > limit) ids.resize(static_cast<size_t>(limit));
}

std::vector<std::string> WordPieceTokenizer::pre_tokenize(std::string_view normalized) const {
  std::vector<std::string> words;
  for_each_word(normalized, [&](std::string_view word) {
    words.emplace_back(word);
    return true;
  });
  return words;
}

void WordPieceTokenizer::encode_word(std::string_view word, std::vector<int32_t>& ids) const {
  // Character boundaries: the greedy search cuts only there.
  std::vector<size_t> bounds;
  bounds.reserve(word.size() + 1);
  for (size_t i = 0; i < word.size();) {
    bounds.push_back(i);
    uint32_t cp = 0;
    i += utf8_next(word, i, &cp);
  }
  bounds.push_back(word.size());
  const size_t chars = bounds.size() - 1;
  if (chars > static_cast<size_t>(config_.max_input_chars_per_word)) {
    ids.push_back(unk_id_);
    return;
  }
  const size_t first = ids.size();
  const std::string& prefix = config_.continuing_prefix;
  std::string key;
  key.reserve(max_token_bytes_);
  for (size_t start = 0; start < chars;) {
    const size_t head = start > 0 ? prefix.size() : 0;
    int32_t found = -1;
    size_t end = chars;
    // Longest match first; entries longer than the longest in the vocabulary cannot match.
    while (end > start && bounds[end] - bounds[start] + head > max_token_bytes_) --end;
    for (; end > start; --end) {
      key.clear();
      if (start > 0) key += prefix;
      key.append(word.substr(bounds[start], bounds[end] - bounds[start]));
      const auto it = vocab_.find(key);
      if (it != vocab_.end()) {
        found = it->second;
        break;
      }
    }
    if (found < 0) {  // one part without an entry makes the whole word unknown
      ids.resize(first);
      ids.push_back(unk_id_);
      return;
    }
    ids.push_back(found);
    start = end;
  }
}

std::vector<int32_t> WordPieceTokenizer::encode(std::string_view text, int max_len) const {
  FLURRY_CHECK(max_len <= 0 || max_len >= 2,
               "WordPiece: max_len " << max_len << " cannot hold [CLS] and [SEP]");
  std::vector<int32_t> ids{cls_id_};
  encode_text(text, max_len > 0 ? static_cast<long>(max_len) - 1 : -1, ids);
  ids.push_back(sep_id_);
  return ids;
}

std::vector<std::string> WordPieceTokenizer::tokenize(std::string_view text) const {
  std::vector<int32_t> ids;
  encode_text(text, -1, ids);
  std::vector<std::string> out;
  out.reserve(ids.size());
  for (int32_t id : ids) out.push_back(id_to_token_[static_cast<size_t>(id)]);
  return out;
}

}  // namespace flurry
