// WordPiece tokenizer (BERT and the sentence-embedding encoders built on it: all-MiniLM-L6-v2,
// bge, e5, gte, arctic-embed).
//
// Follows Hugging Face `tokenizers` (BertNormalizer + BertPreTokenizer + WordPiece + the
// [CLS] ... [SEP] template), which is what BertTokenizerFast, sentence-transformers and
// text-embeddings-inference run; tests/tokenizer/wordpiece_test.cpp compares every id against
// goldens it wrote (tests/fixtures/wordpiece/make_goldens.py). In order:
//   1. special tokens ([CLS], [SEP], [PAD], [MASK], [UNK] and any other added token) written in the
//      text are cut out first, as they are, case-sensitively, and become their own id;
//   2. the rest is cleaned (U+0000, U+FFFD and control/format/private-use/surrogate characters
//      dropped, except tab, newline and carriage return; white space to ' '), CJK ideographs get a
//      space on each side, accents are stripped (NFD, then nonspacing marks dropped) and the text is
//      lower-cased, each step when the configuration asks for it;
//   3. it is split at white space and around each punctuation character;
//   4. each word becomes the longest vocabulary entries from its start, greedily, later pieces
//      prefixed with "##"; a word with a part no entry matches, or longer than 100 characters,
//      is [UNK] as a whole.
// Immutable after loading, so one instance is shared by every reader thread.
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace flurry {

struct WordPieceConfig {
  bool clean_text = true;
  bool handle_chinese_chars = true;
  bool lowercase = true;
  // Strip accents; when unset it follows `lowercase` (BERT's uncased checkpoints strip, cased ones
  // do not), as both Hugging Face implementations do.
  enum class Accents { kFollowLowercase, kStrip, kKeep } strip_accents = Accents::kFollowLowercase;
  std::string unk_token = "[UNK]";
  std::string cls_token = "[CLS]";
  std::string sep_token = "[SEP]";
  std::string pad_token = "[PAD]";
  std::string mask_token = "[MASK]";
  std::string continuing_prefix = "##";
  int max_input_chars_per_word = 100;
};

class WordPieceTokenizer {
 public:
  // tokenizer.json when `dir` has one, else from_vocab_dir(dir). As in transformers, flags that
  // tokenizer_config.json sets explicitly (do_lower_case, strip_accents, tokenize_chinese_chars)
  // override tokenizer.json's normalizer.
  static WordPieceTokenizer from_dir(const std::string& dir);
  // model.vocab, the normalizer's flags, the added tokens and the post-processor's [CLS]/[SEP].
  static WordPieceTokenizer from_tokenizer_json(const std::string& path);
  // vocab.txt (token i on line i), with tokenizer_config.json and special_tokens_map.json when
  // present (do_lower_case, strip_accents, tokenize_chinese_chars, the special token strings).
  static WordPieceTokenizer from_vocab_dir(const std::string& dir);
  static WordPieceTokenizer from_vocab_txt(const std::string& vocab_txt, const WordPieceConfig& config);
  // For tests and callers with their own vocabulary: token i gets id i.
  static WordPieceTokenizer from_tokens(const std::vector<std::string>& tokens,
                                        const WordPieceConfig& config);

  // UTF-8 text to ids: [CLS], the text's tokens, [SEP]. With max_len > 0 the text's tokens are cut
  // so that the whole, both specials counted, is at most max_len (max_len must then be >= 2); with
  // max_len <= 0 nothing is cut. Throws flurry::InputError (a flurry::Error) naming the byte offset
  // when `text` is not valid UTF-8.
  std::vector<int32_t> encode(std::string_view text, int max_len) const;
  // The text's tokens as strings, without specials and without truncation (for debugging).
  std::vector<std::string> tokenize(std::string_view text) const;
  // The text after normalization (step 2), and normalized text split into words (step 3), for
  // tests and debugging.
  std::string normalize(std::string_view text) const;
  std::vector<std::string> pre_tokenize(std::string_view normalized) const;

  int32_t token_to_id(const std::string& token) const;  // -1 when absent
  const std::string& id_to_token(int32_t id) const;     // throws when out of range
  int vocab_size() const { return static_cast<int>(id_to_token_.size()); }

  int32_t cls_id() const { return cls_id_; }
  int32_t sep_id() const { return sep_id_; }
  int32_t pad_id() const { return pad_id_; }
  int32_t unk_id() const { return unk_id_; }
  int32_t mask_id() const { return mask_id_; }  // -1 when the vocabulary has none
  const WordPieceConfig& config() const { return config_; }

 private:
  struct Special {
    std::string content;  // as matched: raw text, or normalized text when `normalized`
    int32_t id;
    bool normalized;      // matched after normalization (added tokens with "normalized": true)
    bool lstrip, rstrip;  // swallow the white space before / after a match
  };

  WordPieceTokenizer() = default;
  static WordPieceTokenizer from_tokenizer_json(const nlohmann::json& j, const std::string& path);
  void set_vocab(std::vector<std::string> id_to_token, const std::string& where);
  void add_special(const std::string& token, const std::string& where);
  void add_special(Special special, const std::string& where);
  void finish(const std::string& where);

  // Ids of `text` without specials; stops once `limit` ids are out (limit < 0: no limit).
  void encode_text(std::string_view text, long limit, std::vector<int32_t>& ids) const;
  // Cuts `text` at the special tokens of one kind (raw or normalized); calls `plain` on the text
  // between them and `special` on each id, until `limit` ids are out.
  template <typename Plain>
  void split_specials(std::string_view text, bool normalized, long limit, std::vector<int32_t>& ids,
                      Plain&& plain) const;
  void encode_words(std::string_view normalized, long limit, std::vector<int32_t>& ids) const;
  void encode_word(std::string_view word, std::vector<int32_t>& ids) const;

  WordPieceConfig config_;
  std::vector<std::string> id_to_token_;
  std::unordered_map<std::string, int32_t> vocab_;
  size_t max_token_bytes_ = 0;  // longest entry, with its "##": bounds the longest-match search
  // Longest first, so that a longer one wins where two start at the same place.
  std::vector<Special> specials_;
  int32_t cls_id_ = -1, sep_id_ = -1, pad_id_ = -1, unk_id_ = -1, mask_id_ = -1;
};

}  // namespace flurry
