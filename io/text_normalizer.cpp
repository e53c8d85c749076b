#include "io/text_normalizer.h"

#include <algorithm>
#include <map>
#include <regex>
#include <sstream>
#include <utility>
#include <vector>

#include "io/json_file.h"
#include "io/unicode.h"
#include "runtime/check.h"

namespace flurry {

namespace {

// ---- Unicode -----------------------------------------------------------------------------------

// Letters that NFKD leaves whole but Whisper's ADDITIONAL_DIACRITICS spells out.
const char* additional_diacritic(uint32_t cp) {
  switch (cp) {
    case 0x153: return "oe";   // œ
    case 0x152: return "OE";   // Œ
    case 0xF8: return "o";     // ø
    case 0xD8: return "O";     // Ø
    case 0xE6: return "ae";    // æ
    case 0xC6: return "AE";    // Æ
    case 0xDF: return "ss";    // ß
    case 0x1E9E: return "SS";  // ẞ
    case 0x111: return "d";    // đ
    case 0x110: return "D";    // Đ
    case 0xF0: return "d";     // ð
    case 0xD0: return "D";     // Ð
    case 0xFE: return "th";    // þ
    case 0xDE: return "th";    // Þ
    case 0x142: return "l";    // ł
    case 0x141: return "L";    // Ł
    default: return nullptr;
  }
}

bool is_mark_symbol_or_punct(uint32_t cp) {
  const char m = unicode::major_category(cp);
  return m == 'M' || m == 'S' || m == 'P';
}

std::string re_sub(const std::string& s, const std::regex& re, const char* fmt) {
  return std::regex_replace(s, re, fmt);
}

// ---- numbers -----------------------------------------------------------------------------------

__extension__ typedef __int128 Int;  // Python ints are unbounded; 128 bits hold up to decillions.
__extension__ typedef unsigned __int128 UInt;

std::string int_str(Int v) {
  if (v == 0) return "0";
  const bool neg = v < 0;
  std::string s;
  while (v != 0) {
    const int d = static_cast<int>(v % 10);
    s += static_cast<char>('0' + (neg ? -d : d));
    v /= 10;
  }
  if (neg) s += '-';
  std::reverse(s.begin(), s.end());
  return s;
}

Int pow10(int n) {
  Int p = 1;
  while (n-- > 0) p *= 10;
  return p;
}

// A decimal string as numerator / 10^scale; false when it is not a plain decimal or too long.
bool parse_decimal(const std::string& s, Int* num, int* scale) {
  static const std::regex kDec(R"(^\d*\.?\d*$)");
  if (s.empty() || s == "." || !std::regex_match(s, kDec) || s.size() > 36) return false;
  Int n = 0;
  int sc = 0;
  bool after_point = false;
  for (char c : s) {
    if (c == '.') {
      after_point = true;
      continue;
    }
    n = n * 10 + (c - '0');
    if (after_point) ++sc;
  }
  *num = n;
  *scale = sc;
  return true;
}

// value * multiplier when that is a whole number (Python's Fraction(value) * multiplier).
bool scaled_integer(const std::string& value, Int multiplier, Int* out) {
  Int num;
  int scale;
  if (!parse_decimal(value, &num, &scale)) return false;
  const Int max = static_cast<Int>(~static_cast<UInt>(0) >> 1);
  if (num != 0 && multiplier > max / num) return false;  // beyond 128 bits: leave it as text
  const Int p = num * multiplier;
  const Int den = pow10(scale);
  if (p % den != 0) return false;
  *out = p / den;
  return true;
}

struct NumberWords {
  std::map<std::string, int> zeros_ones, ones, tens, tens_dummy;
  std::map<std::string, std::pair<int, std::string>> ones_suffixed, tens_suffixed;
  std::map<std::string, Int> multipliers;
  std::map<std::string, std::pair<Int, std::string>> multipliers_suffixed;
  std::map<std::string, std::string> preceding, following;
  std::vector<std::string> zeros{"o", "oh", "zero"}, specials{"and", "double", "triple", "point"};

  NumberWords() {
    const char* names[] = {"one",     "two",      "three",    "four",     "five",
                           "six",     "seven",    "eight",    "nine",     "ten",
                           "eleven",  "twelve",   "thirteen", "fourteen", "fifteen",
                           "sixteen", "seventeen", "eighteen", "nineteen"};
    for (int i = 0; i < 19; ++i) ones[names[i]] = i + 1;
    for (const auto& [name, v] : ones) {
      ones_suffixed[name == "six" ? "sixes" : name + "s"] = {v, "s"};
    }
    ones_suffixed["zeroth"] = {0, "th"};
    ones_suffixed["first"] = {1, "st"};
    ones_suffixed["second"] = {2, "nd"};
    ones_suffixed["third"] = {3, "rd"};
    ones_suffixed["fifth"] = {5, "th"};
    ones_suffixed["twelfth"] = {12, "th"};
    for (const auto& [name, v] : ones) {
      if (v > 3 && v != 5 && v != 12) {
        ones_suffixed[name + (name.back() == 't' ? "h" : "th")] = {v, "th"};
      }
    }
    const char* tnames[] = {"twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"};
    for (int i = 0; i < 8; ++i) {
      const std::string t = tnames[i];
      tens[t] = 20 + 10 * i;
      const std::string stem = t.substr(0, t.size() - 1);  // every tens word ends in 'y'
      tens_suffixed[stem + "ies"] = {tens[t], "s"};
      tens_suffixed[stem + "ieth"] = {tens[t], "th"};
    }
    const char* mnames[] = {"hundred",     "thousand",   "million",    "billion",
                            "trillion",    "quadrillion", "quintillion", "sextillion",
                            "septillion",  "octillion",  "nonillion",  "decillion"};
    const int mexp[] = {2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 30, 33};
    for (int i = 0; i < 12; ++i) {
      multipliers[mnames[i]] = pow10(mexp[i]);
      multipliers_suffixed[std::string(mnames[i]) + "s"] = {pow10(mexp[i]), "s"};
      multipliers_suffixed[std::string(mnames[i]) + "th"] = {pow10(mexp[i]), "th"};
    }
    preceding = {{"minus", "-"}, {"negative", "-"}, {"plus", "+"}, {"positive", "+"}};
    following = {{"pound", "£"}, {"pounds", "£"}, {"euro", "€"}, {"euros", "€"},
                 {"dollar", "$"}, {"dollars", "$"}, {"cent", "¢"}, {"cents", "¢"}};
  }

  bool is_zero(const std::string& w) const { return std::find(zeros.begin(), zeros.end(), w) != zeros.end(); }
  bool is_special(const std::string& w) const {
    return std::find(specials.begin(), specials.end(), w) != specials.end();
  }
  bool is_word(const std::string& w) const {
    return is_zero(w) || ones.count(w) || ones_suffixed.count(w) || tens.count(w) ||
           tens_suffixed.count(w) || multipliers.count(w) || multipliers_suffixed.count(w) ||
           preceding.count(w) || following.count(w) || w == "per" || w == "percent" || is_special(w);
  }
  bool is_decimal_word(const std::string& w) const { return ones.count(w) || tens.count(w) || is_zero(w); }
};

const NumberWords& number_words() {
  static const NumberWords words;
  return words;
}

// The pending number: nothing, a whole number, or digits kept as text ("101", "1.5", "3.").
struct Value {
  enum Kind { None, Integer, Text } kind = None;
  Int i = 0;
  std::string s;
  std::string str() const { return kind == Integer ? int_str(i) : s; }
  // Python's str(value or ""): None, 0 and "" give "".
  std::string str_or_empty() const {
    if (kind == None || (kind == Integer && i == 0)) return "";
    return str();
  }
  static Value integer(Int v) { return Value{Integer, v, {}}; }
  static Value text(std::string t) { return Value{Text, 0, std::move(t)}; }
};

bool is_plain_number(const std::string& w) {
  static const std::regex kNum(R"(^\d+(\.\d+)?$)");
  return std::regex_match(w, kNum);
}

// First UTF-8 character of w and the rest.
std::pair<std::string, std::string> split_first_char(const std::string& w) {
  uint32_t cp = 0;
  const size_t n = w.empty() ? 0 : utf8_next(w, 0, &cp);
  return {w.substr(0, n), w.substr(n)};
}

class NumberProcessor {
 public:
  explicit NumberProcessor(std::vector<std::string>* out) : out_(out) {}

  void process(const std::vector<std::string>& words);

 private:
  void emit(const std::string& result) {
    out_->push_back(prefix_ + result);
    value_ = Value();
    prefix_.clear();
  }
  void emit_value_if_any() {
    if (value_.kind != Value::None) emit(value_.str());
  }
  void on_arabic(const std::string& current, const std::string& digits, const std::string& sign);
  void on_ones(const std::string& prev, int ones, const std::string& suffix, bool suffixed);
  void on_tens(int tens, const std::string& suffix, bool suffixed);
  void on_multiplier(Int m, const std::string& suffix, bool suffixed);
  bool on_special(const std::string& prev, const std::string& current, const std::string& next,
                  bool next_numeric);

  std::vector<std::string>* out_;
  Value value_;
  std::string prefix_;
  bool skip_ = false;
};

void NumberProcessor::on_arabic(const std::string& current, const std::string& digits,
                                const std::string& sign) {
  if (value_.kind != Value::None) {
    if (value_.kind == Value::Text && !value_.s.empty() && value_.s.back() == '.') {
      value_.s += current;  // decimals / IP address components
      return;
    }
    emit(value_.str());
  }
  if (!sign.empty()) prefix_ = sign;
  Int num;
  int scale;
  const bool ok = parse_decimal(digits, &num, &scale);
  if (ok && num % pow10(scale) == 0) {
    value_ = Value::integer(num / pow10(scale));
  } else {
    value_ = Value::text(digits);
  }
}

void NumberProcessor::on_ones(const std::string& prev, int ones, const std::string& suffix,
                              bool suffixed) {
  const NumberWords& W = number_words();
  std::string result;
  bool have_result = true;
  if (value_.kind == Value::None) {
    if (!suffixed) {
      value_ = Value::integer(ones);
      return;
    }
    result = std::to_string(ones) + suffix;
  } else if (value_.kind == Value::Text || W.ones.count(prev)) {
    std::string v = value_.str();
    if (W.tens.count(prev) && ones < 10) {
      FLURRY_CHECK(!v.empty() && v.back() == '0', "number normaliser: expected a trailing zero in " << v);
      v = v.substr(0, v.size() - 1) + std::to_string(ones);
    } else {
      v += std::to_string(ones);
    }
    if (!suffixed) {
      value_ = Value::text(v);
      have_result = false;
    } else {
      result = v + suffix;
    }
  } else {
    const Int base = ones < 10 ? 10 : 100;
    const bool add = value_.i % base == 0;
    if (!suffixed) {
      value_ = add ? Value::integer(value_.i + ones) : Value::text(int_str(value_.i) + std::to_string(ones));
      have_result = false;
    } else {
      result = (add ? int_str(value_.i + ones) : int_str(value_.i) + std::to_string(ones)) + suffix;
    }
  }
  if (have_result) {
    emit(result);
    value_ = Value();
  }
}

void NumberProcessor::on_tens(int tens, const std::string& suffix, bool suffixed) {
  std::string result;
  if (value_.kind == Value::None) {
    if (!suffixed) {
      value_ = Value::integer(tens);
      return;
    }
    result = std::to_string(tens) + suffix;
  } else if (value_.kind == Value::Text) {
    if (!suffixed) {
      value_ = Value::text(value_.s + std::to_string(tens));
      return;
    }
    result = value_.s + std::to_string(tens) + suffix;
  } else {
    const bool add = value_.i % 100 == 0;
    if (!suffixed) {
      value_ = add ? Value::integer(value_.i + tens) : Value::text(int_str(value_.i) + std::to_string(tens));
      return;
    }
    result = (add ? int_str(value_.i + tens) : int_str(value_.i) + std::to_string(tens)) + suffix;
  }
  emit(result);
}

void NumberProcessor::on_multiplier(Int m, const std::string& suffix, bool suffixed) {
  if (value_.kind == Value::None) {
    if (suffixed) {
      emit(int_str(m) + suffix);
    } else {
      value_ = Value::integer(m);
    }
    return;
  }
  if (value_.kind == Value::Text || (!suffixed && value_.i == 0)) {
    Int p;
    if (scaled_integer(value_.str(), m, &p)) {
      if (suffixed) {
        emit(int_str(p) + suffix);
      } else {
        value_ = Value::integer(p);
      }
    } else {
      emit(value_.str());
      if (suffixed) {
        emit(int_str(m) + suffix);
      } else {
        value_ = Value::integer(m);
      }
    }
    return;
  }
  const Int before = value_.i / 1000 * 1000;
  const Int residual = value_.i % 1000;
  value_ = Value::integer(before + residual * m);
  if (suffixed) emit(int_str(value_.i) + suffix);
}

// Returns true when the word was consumed here.
bool NumberProcessor::on_special(const std::string& prev, const std::string& current,
                                 const std::string& next, bool next_numeric) {
  const NumberWords& W = number_words();
  if (!W.is_word(next) && !next_numeric) {
    emit_value_if_any();
    emit(current);
  } else if (current == "and") {
    if (!W.multipliers.count(prev)) {  // "and" after hundreds, thousands, ... is dropped
      emit_value_if_any();
      emit(current);
    }
  } else if (current == "double" || current == "triple") {
    if (W.ones.count(next) || W.is_zero(next)) {
      const int repeats = current == "double" ? 2 : 3;
      const int ones = W.ones.count(next) ? W.ones.at(next) : 0;
      std::string v = value_.str_or_empty();
      for (int r = 0; r < repeats; ++r) v += std::to_string(ones);
      value_ = Value::text(v);
      skip_ = true;
    } else {
      emit_value_if_any();
      emit(current);
    }
  } else if (current == "point") {
    if (W.is_decimal_word(next) || next_numeric) value_ = Value::text(value_.str_or_empty() + ".");
  }
  return true;
}

void NumberProcessor::process(const std::vector<std::string>& words) {
  const NumberWords& W = number_words();
  static const std::string kPrefixChars[] = {"-", "+", "£", "€", "$", "¢"};
  for (size_t idx = 0; idx < words.size(); ++idx) {
    const std::string prev = idx > 0 ? words[idx - 1] : std::string();
    const std::string& current = words[idx];
    const std::string next = idx + 1 < words.size() ? words[idx + 1] : std::string();
    if (skip_) {
      skip_ = false;
      continue;
    }
    const bool next_numeric = !next.empty() && is_plain_number(next);
    const auto [first, rest] = split_first_char(current);
    const bool has_prefix = std::find(std::begin(kPrefixChars), std::end(kPrefixChars), first) !=
                            std::end(kPrefixChars);
    const std::string without_prefix = has_prefix ? rest : current;
    if (is_plain_number(without_prefix)) {
      on_arabic(current, without_prefix, has_prefix ? first : std::string());
    } else if (!W.is_word(current)) {
      emit_value_if_any();
      emit(current);
    } else if (W.is_zero(current)) {
      value_ = Value::text(value_.str_or_empty() + "0");
    } else if (W.ones.count(current)) {
      on_ones(prev, W.ones.at(current), "", false);
    } else if (W.ones_suffixed.count(current)) {
      const auto& [v, suf] = W.ones_suffixed.at(current);
      on_ones(prev, v, suf, true);
    } else if (W.tens.count(current)) {
      on_tens(W.tens.at(current), "", false);
    } else if (W.tens_suffixed.count(current)) {
      const auto& [v, suf] = W.tens_suffixed.at(current);
      on_tens(v, suf, true);
    } else if (W.multipliers.count(current)) {
      on_multiplier(W.multipliers.at(current), "", false);
    } else if (W.multipliers_suffixed.count(current)) {
      const auto& [m, suf] = W.multipliers_suffixed.at(current);
      on_multiplier(m, suf, true);
      value_ = Value();
    } else if (W.preceding.count(current)) {
      emit_value_if_any();
      if (W.is_word(next) || next_numeric) {
        prefix_ = W.preceding.at(current);
      } else {
        emit(current);
      }
    } else if (W.following.count(current)) {
      if (value_.kind != Value::None) {
        prefix_ = W.following.at(current);
        emit(value_.str());
      } else {
        emit(current);
      }
    } else if (current == "per" || current == "percent") {
      if (value_.kind == Value::None) {
        emit(current);
      } else if (current == "percent") {
        emit(value_.str() + "%");
      } else if (next == "cent") {
        emit(value_.str() + "%");
        skip_ = true;
      } else {
        emit(value_.str());
        emit(current);
      }
    } else {
      on_special(prev, current, next, next_numeric);
    }
  }
  emit_value_if_any();
}

std::vector<std::string> split_ws(const std::string& s) {
  std::vector<std::string> w;
  std::istringstream is(s);
  for (std::string x; is >> x;) w.push_back(x);
  return w;
}

// Python's re.split: the pieces between matches, including empty leading/trailing ones.
std::vector<std::string> regex_split(const std::string& s, const std::regex& re) {
  std::vector<std::string> pieces;
  auto begin = s.cbegin();
  for (std::sregex_iterator it(s.begin(), s.end(), re), end; it != end; ++it) {
    pieces.emplace_back(begin, (*it)[0].first);
    begin = (*it)[0].second;
  }
  pieces.emplace_back(begin, s.cend());
  return pieces;
}

std::string preprocess_numbers(const std::string& s) {
  const NumberWords& W = number_words();
  // "<number> and a half" -> "<number> point five"
  static const std::regex kHalf(R"(\band\s+a\s+half\b)");
  const std::vector<std::string> segments = regex_split(s, kHalf);
  std::vector<std::string> results;
  for (size_t i = 0; i < segments.size(); ++i) {
    const std::string& seg = segments[i];
    if (seg.find_first_not_of(" \t\n\r\f\v") == std::string::npos) continue;
    results.push_back(seg);
    if (i + 1 == segments.size()) continue;
    const std::vector<std::string> words = split_ws(seg);
    const std::string last_word = words.empty() ? "" : words.back();
    results.push_back(W.is_decimal_word(last_word) || W.multipliers.count(last_word) ? "point five"
                                                                                     : "and a half");
  }
  std::string out;
  for (size_t i = 0; i < results.size(); ++i) out += (i ? " " : "") + results[i];
  static const std::regex kLetterDigit("([a-z])([0-9])"), kDigitLetter("([0-9])([a-z])"),
      kSuffix(R"(([0-9])\s+(st|nd|rd|th|s)\b)");
  out = re_sub(out, kLetterDigit, "$1 $2");
  out = re_sub(out, kDigitLetter, "$1 $2");
  out = re_sub(out, kSuffix, "$1$2");
  return out;
}

std::string postprocess_numbers(const std::string& s) {
  // "$2 and ¢7" -> "$2.07"
  static const std::regex kCents(R"((€|£|\$)([0-9]+) (?:and )?¢([0-9]{1,2})\b)");
  static const std::regex kOnlyCents(R"((?:€|£|\$)0.([0-9]{1,2})\b)");
  static const std::regex kOne(R"(\b1(s?)\b)");
  std::string out;
  auto begin = s.cbegin();
  for (std::sregex_iterator it(s.begin(), s.end(), kCents), end; it != end; ++it) {
    const auto& m = *it;
    out.append(begin, m[0].first);
    const int cents = std::stoi(m[3].str());
    out += m[1].str() + m[2].str() + "." + (cents < 10 ? "0" : "") + std::to_string(cents);
    begin = m[0].second;
  }
  out.append(begin, s.cend());
  std::string out2;
  begin = out.cbegin();
  for (std::sregex_iterator it(out.begin(), out.end(), kOnlyCents), end; it != end; ++it) {
    const auto& m = *it;
    out2.append(begin, m[0].first);
    out2 += "¢" + std::to_string(std::stoi(m[1].str()));
    begin = m[0].second;
  }
  out2.append(begin, out.cend());
  return re_sub(out2, kOne, "one$1");
}

std::string join(const std::vector<std::string>& words) {
  std::string out;
  for (size_t i = 0; i < words.size(); ++i) out += (i ? " " : "") + words[i];
  return out;
}

}  // namespace

std::string utf8_lower(const std::string& s) { return unicode::lower(s); }

// Whisper applies NFKD to the whole string before looking at each character, so `keep` is tested
// on the decomposed characters (a fullwidth dollar sign is kept as "$" when "$" is kept).
std::string remove_symbols_and_diacritics(const std::string& s, const std::string& keep) {
  const std::string d = unicode::nfkd(s);
  std::string out;
  out.reserve(d.size());
  for (size_t i = 0; i < d.size();) {
    uint32_t cp = 0;
    const size_t n = utf8_next(d, i, &cp);
    const std::string_view c(d.data() + i, n);
    i += n;
    if (keep.find(c) != std::string::npos) {
      out += c;
    } else if (const char* spelled = additional_diacritic(cp)) {
      out += spelled;
    } else if (unicode::category(cp) == unicode::Category::kMn) {
      continue;
    } else if (is_mark_symbol_or_punct(cp)) {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out;
}

std::string normalize_english_numbers(const std::string& s) {
  std::vector<std::string> out;
  NumberProcessor proc(&out);
  proc.process(split_ws(preprocess_numbers(s)));
  return postprocess_numbers(join(out));
}

EnglishTextNormalizer::EnglishTextNormalizer(const std::string& spelling_json) {
  if (spelling_json.empty()) return;
  const Json j = read_json_file(spelling_json);
  FLURRY_CHECK(j.is_object(), spelling_json << ": expected a JSON object of word -> word");
  for (const auto& [k, v] : j.items()) {
    if (v.is_string()) spelling_[k] = v.get<std::string>();
  }
}

std::string EnglishTextNormalizer::operator()(const std::string& text) const {
  // Contractions, titles and perfect tenses, in the order Whisper applies them.
  static const std::vector<std::pair<std::regex, const char*>> kReplacers = [] {
    const std::pair<const char*, const char*> rules[] = {
        {R"(\bwon't\b)", "will not"}, {R"(\bcan't\b)", "can not"}, {R"(\blet's\b)", "let us"},
        {R"(\bain't\b)", "aint"}, {R"(\by'all\b)", "you all"}, {R"(\bwanna\b)", "want to"},
        {R"(\bgotta\b)", "got to"}, {R"(\bgonna\b)", "going to"}, {R"(\bi'ma\b)", "i am going to"},
        {R"(\bimma\b)", "i am going to"}, {R"(\bwoulda\b)", "would have"},
        {R"(\bcoulda\b)", "could have"}, {R"(\bshoulda\b)", "should have"},
        {R"(\bma'am\b)", "madam"}, {R"(\bmr\b)", "mister "}, {R"(\bmrs\b)", "missus "},
        {R"(\bst\b)", "saint "}, {R"(\bdr\b)", "doctor "}, {R"(\bprof\b)", "professor "},
        {R"(\bcapt\b)", "captain "}, {R"(\bgov\b)", "governor "}, {R"(\bald\b)", "alderman "},
        {R"(\bgen\b)", "general "}, {R"(\bsen\b)", "senator "}, {R"(\brep\b)", "representative "},
        {R"(\bpres\b)", "president "}, {R"(\brev\b)", "reverend "}, {R"(\bhon\b)", "honorable "},
        {R"(\basst\b)", "assistant "}, {R"(\bassoc\b)", "associate "},
        {R"(\blt\b)", "lieutenant "}, {R"(\bcol\b)", "colonel "}, {R"(\bjr\b)", "junior "},
        {R"(\bsr\b)", "senior "}, {R"(\besq\b)", "esquire "}, {R"('d been\b)", " had been"},
        {R"('s been\b)", " has been"}, {R"('d gone\b)", " had gone"}, {R"('s gone\b)", " has gone"},
        {R"('d done\b)", " had done"}, {R"('s got\b)", " has got"}, {R"(n't\b)", " not"},
        {R"('re\b)", " are"}, {R"('s\b)", " is"}, {R"('d\b)", " would"}, {R"('ll\b)", " will"},
        {R"('t\b)", " not"}, {R"('ve\b)", " have"}, {R"('m\b)", " am"}};
    std::vector<std::pair<std::regex, const char*>> v;
    for (const auto& [p, r] : rules) v.emplace_back(std::regex(p), r);
    return v;
  }();
  static const std::regex kBrackets(R"([<\[][^>\]]*[>\]])"), kParens(R"(\(([^)]+?)\))"),
      kFillers(R"(\b(hmm|mm|mhm|mmm|uh|um)\b)"), kSpaceApostrophe(R"(\s+')"),
      kDigitComma(R"((\d),(\d))"), kPeriod(R"(\.([^0-9]|$))"),
      kLoneSymbol(R"((\.|\$|¢|€|£)([^0-9]))"), kLonePercent(R"(([^0-9])%)"), kSpaces(R"(\s+)");

  std::string s = utf8_lower(text);
  s = re_sub(s, kBrackets, "");
  s = re_sub(s, kParens, "");
  s = re_sub(s, kFillers, "");
  s = re_sub(s, kSpaceApostrophe, "'");
  for (const auto& [re, rep] : kReplacers) s = re_sub(s, re, rep);
  s = re_sub(s, kDigitComma, "$1$2");
  s = re_sub(s, kPeriod, " $1");
  s = remove_symbols_and_diacritics(s, ".%$¢€£");
  s = normalize_english_numbers(s);
  if (!spelling_.empty()) {
    std::vector<std::string> words = split_ws(s);
    for (auto& w : words) {
      auto it = spelling_.find(w);
      if (it != spelling_.end()) w = it->second;
    }
    s = join(words);
  }
  s = re_sub(s, kLoneSymbol, " $2");
  s = re_sub(s, kLonePercent, "$1 ");
  s = re_sub(s, kSpaces, " ");
  return s;
}

std::string basic_normalize(const std::string& text, bool remove_diacritics) {
  static const std::regex kBrackets(R"([<\[][^>\]]*[>\]])"), kParens(R"(\(([^)]+?)\))"),
      kSpaces(R"(\s+)");
  std::string s = utf8_lower(text);
  s = re_sub(s, kBrackets, "");
  s = re_sub(s, kParens, "");
  if (remove_diacritics) {
    s = remove_symbols_and_diacritics(s);
  } else {
    // Whisper's remove_symbols: NFKC, then marks/symbols/punctuation to spaces.
    const std::string c = unicode::nfkc(s);
    std::string out;
    out.reserve(c.size());
    for (size_t i = 0; i < c.size();) {
      uint32_t cp = 0;
      const size_t n = utf8_next(c, i, &cp);
      if (is_mark_symbol_or_punct(cp)) {
        out += ' ';
      } else {
        out.append(c, i, n);
      }
      i += n;
    }
    s = out;
  }
  s = utf8_lower(s);
  return re_sub(s, kSpaces, " ");
}

}  // namespace flurry
