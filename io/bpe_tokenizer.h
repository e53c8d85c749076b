// Byte-level BPE tokenizer (GPT-2 style), the one Whisper's checkpoints ship.
//
// Reads the Hugging Face files as they sit beside a checkpoint: tokenizer.json, or the older
// vocab.json + merges.txt with added_tokens.json / special_tokens_map.json / tokenizer_config.json.
// Encoding and decoding follow Hugging Face `tokenizers` exactly (tests/tokenizer checks both
// against goldens written by it): added tokens are cut out of the text first, the rest is split
// by the GPT-2 pattern, each piece's bytes are mapped to the byte-level alphabet and merged by
// rank. Post-processing templates (Whisper's <|startoftranscript|> prefix) are not applied here;
// the model code builds its prompt from the special tokens it resolves by name (models/whisper/tokens.h).
//
// Immutable after loading, so one instance is shared by every reader thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace flurry {

struct AddedToken {
  int id = -1;
  std::string content;
  bool special = false;
  bool lstrip = false;      // swallow white space before a match
  bool rstrip = false;      // swallow white space after a match
  bool normalized = false;  // matched after normalization (a second pass; there is no normalizer)
};

class BpeTokenizer {
 public:
  // tokenizer.json when `dir` has one, else vocab.json + merges.txt (+ the optional extras).
  static BpeTokenizer from_dir(const std::string& dir);
  static BpeTokenizer from_tokenizer_json(const std::string& path);
  // `extras_dir` holds added_tokens.json / special_tokens_map.json / tokenizer_config.json, any of
  // which may be absent; empty means none.
  static BpeTokenizer from_vocab_merges(const std::string& vocab_json, const std::string& merges_txt,
                                        const std::string& extras_dir);

  // Text (UTF-8; invalid sequences are read as U+FFFD) to ids. With `allow_special` every added
  // token in the text becomes its id, as `tokenizers` encodes by default (prompts); without it
  // special added tokens are encoded as plain text, as with `encode_special_tokens=True`
  // (user text that happens to contain "<|endoftext|>"). Non-special added tokens match either way.
  std::vector<int> encode(const std::string& text, bool allow_special) const;

  // Ids to text. Bytes of consecutive tokens are joined before UTF-8 decoding, and invalid
  // sequences become U+FFFD (Python's errors='replace'). `skip_special` drops special tokens.
  std::string decode(const std::vector<int>& ids, bool skip_special) const;
  // The raw bytes, for callers that cut text at token boundaries (word timestamps, streaming).
  std::string decode_bytes(const std::vector<int>& ids, bool skip_special) const;

  // Vocabulary or added token by its string (byte-level alphabet for vocabulary entries).
  std::optional<int> token_to_id(const std::string& token) const;
  // Empty for an id with no token (gaps in the id space); throws when out of range.
  const std::string& id_to_token(int id) const;
  bool is_special(int id) const;
  bool is_added(int id) const;
  // One more than the largest id: the size the model's embedding table is expected to have.
  int vocab_size() const { return static_cast<int>(id_to_token_.size()); }
  const std::vector<AddedToken>& added_tokens() const { return added_; }
  bool add_prefix_space() const { return add_prefix_space_; }

  // The pre-tokenizer's pieces of `text` (UTF-8), exposed for tests.
  std::vector<std::string> pre_tokenize(const std::string& text) const;

 private:
  struct Merge {
    int rank;
    int new_id;
  };
  struct Span {  // a byte range of the input and, for an added token, its id
    size_t begin;
    size_t end;
    int added_id;  // -1: plain text
  };

  BpeTokenizer() = default;
  void set_vocab(std::unordered_map<std::string, int> vocab, const std::string& where);
  void add_merge(const std::string& left, const std::string& right, int rank, const std::string& where);
  void add_token(const AddedToken& tok, const std::string& where);
  void finish(const std::string& where);

  void split_added(const std::string& text, bool normalized_pass, bool allow_special,
                   std::vector<Span>& spans) const;
  void encode_piece(const std::string& piece, std::vector<int>& out) const;

  std::vector<std::string> id_to_token_;
  std::vector<std::string> id_bytes_;  // what each id decodes to
  std::vector<uint8_t> id_flags_;      // kSpecial | kAdded
  std::unordered_map<std::string, int> token_to_id_;
  std::unordered_map<uint64_t, Merge> merges_;  // (left id << 32 | right id) -> rank, result
  int byte_to_id_[256] = {};
  std::vector<AddedToken> added_;
  // Added tokens by first byte, longest first, so matching tries few candidates per position.
  std::vector<int> added_by_byte_[256];

  bool add_prefix_space_ = false;
  bool split_gpt2_ = true;        // apply the GPT-2 split pattern (ByteLevel use_regex)
  bool ignore_merges_ = false;    // a piece that is itself in the vocabulary is taken whole
  int unk_id_ = -1;
  bool fuse_unk_ = false;
};

}  // namespace flurry
