// Whisper on the CPU reference path: an immutable model (config + fp32 weights) and a per-request
// state (KV caches, encoder output, scratch), with one function per stage.
//
//   auto model = WhisperModel::load("path/to/whisper-large-v3");     // config.json + safetensors
//   WhisperState st(*model);                                          // sized once, reused per window
//   encode(*model, st, mel);                 // mel [n_mels, 2*max_source_positions], channel-major
//   decoder_reset(st);
//   const float* logits = decoder_step(*model, st, prefix, 4);        // [vocab] of the last token
//   logits = decoder_step(*model, st, &next, 1);                      // one more token, cached
//
// One sequence per state; a batch of windows uses one state each. The model is shared read-only.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "io/safetensors.h"
#include "models/common/layers.h"
#include "models/common/weight_table.h"
#include "models/whisper/config.h"

namespace flurry::whisper {

// nn.Linear: w [out, in] row-major, b [out] (empty when the layer has no bias); shared with every
// model (models/common/weight_table.h).
using models::LayerNormW;
using models::LinearW;

// Attention projections are fused at load time as Whisper's weight table says (models/whisper/weights.h):
// self-attention's q, k, v into one [3d, d] matrix, cross-attention's k, v into one [2d, d] matrix
// (q stays apart: it reads the decoder stream, k and v read the encoder output). The query rows and
// bias carry HF's head_dim^-0.5 scale already, so attention runs with scale 1; for head_dim 64 (every
// released Whisper) the scale is a power of two and the folding is exact. k_proj has no bias in
// Whisper; its part of the fused bias is zero.
struct EncoderLayerW {
  LayerNormW attn_ln;
  LinearW qkv, attn_out;
  LayerNormW ffn_ln;
  LinearW fc1, fc2;
};
struct DecoderLayerW {
  LayerNormW self_ln;
  LinearW self_qkv, self_out;
  LayerNormW cross_ln;
  LinearW cross_q, cross_kv, cross_out;
  LayerNormW ffn_ln;
  LinearW fc1, fc2;
};

class WhisperModel {
 public:
  // Reads <dir>/config.json and the safetensors weights in <dir>; throws flurry::Error naming the
  // file, the tensor and the reason when anything is missing or malformed.
  static std::shared_ptr<const WhisperModel> load(const std::string& dir);
  static std::shared_ptr<const WhisperModel> from_checkpoint(const WhisperConfig& config,
                                                             const Checkpoint& ck);

  const WhisperConfig& config() const { return config_; }
  // The folder the weights were read from; the GPU upload reads the checkpoint again from there
  // (straight from the mapping, not from these fp32 copies).
  const std::string& checkpoint_dir() const { return checkpoint_dir_; }

  // Encoder: conv1 [d, n_mels, 3], conv2 [d, d, 3], positions [max_source_positions, d].
  LinearW conv1, conv2;  // w kept in PyTorch's [c_out, c_in, 3] order, i.e. [c_out, c_in*3]
  std::vector<float> enc_positions;
  std::vector<EncoderLayerW> enc_layers;
  LayerNormW enc_ln;
  // Decoder: token embedding [vocab, d] (also the output projection when tied), positions
  // [max_target_positions, d].
  std::vector<float> embed_tokens;
  std::vector<float> dec_positions;
  std::vector<DecoderLayerW> dec_layers;
  LayerNormW dec_ln;
  std::vector<float> proj_out;  // [vocab, d]; empty when tied to embed_tokens
  const float* output_projection() const {
    return proj_out.empty() ? embed_tokens.data() : proj_out.data();
  }

 private:
  WhisperModel() = default;
  WhisperConfig config_;
  std::string checkpoint_dir_;
};

// One window's encoder result, read by every sequence that decodes the window.
struct WhisperEncoding {
  std::vector<float> encoder_out;            // [n_ctx, d] after the final LayerNorm
  std::vector<std::vector<float>> cross_kv;  // per decoder layer [n_ctx, 2d]: k | v
};

// Working buffers of the stage functions; nothing in them outlives one call.
// Rows = max(n_ctx, max_tokens).
struct WhisperScratch {
  std::vector<float> conv_in, conv_scratch;  // conv1 output [n_frames, d]; im2col columns
  std::vector<float> hidden;                  // the residual stream [rows, d]
  models::CpuBuffers blocks;                  // the shared blocks' scratch
};

// Everything one sequence needs while it runs, allocated once from the config and `max_tokens`
// (0 = max_target_positions). Stage functions only write into these buffers.
//
// Copying a state forks the sequence (beam search, several prompts over one window): the copy owns
// its self-attention cache, position and logits, and SHARES the encoding (read-only) and the scratch
// with the original, so a fork costs the KV cache and not the encoder output. Because scratch is
// shared, a state and its copies must be run from one thread; a thread of its own needs a state
// built with WhisperState(model). encode() on a state whose encoding is shared gives that state a
// fresh encoding and leaves the other copies' window alone.
struct WhisperState {
  explicit WhisperState(const WhisperModel& model, int64_t max_tokens = 0);

  int64_t d_model = 0, n_ctx = 0, n_frames = 0, vocab = 0, max_tokens = 0;
  bool encoded = false;  // encode() has run since construction
  int64_t n_past = 0;    // decoder positions held in the self-attention cache

  std::shared_ptr<WhisperEncoding> enc;
  std::shared_ptr<WhisperScratch> scratch;
  std::vector<std::vector<float>> self_k;  // per decoder layer [max_tokens, d]
  std::vector<std::vector<float>> self_v;
  std::vector<float> logits;  // [vocab] of the last position of the last decoder_step

  // Stage timers, accumulated over the state's life, so a run can report where the time went.
  double encode_seconds = 0.0, decode_seconds = 0.0;
  int64_t decode_calls = 0;

  const float* encoder_out() const { return enc->encoder_out.data(); }  // [n_ctx, d]
};

// Runs the encoder on one window and computes every decoder layer's cross-attention K/V from it
// (once per window). mel: [n_mels, n_frames] channel-major log-mel. Resets the decoder. Returns
// state.encoder_out().
const float* encode(const WhisperModel& model, WhisperState& st, const float* mel);

// Forgets the decoded tokens (keeps the encoder output and cross K/V).
void decoder_reset(WhisperState& st);

// Appends n_new tokens at positions n_past .. n_past+n_new-1, updating the self-attention cache, and
// returns the logits [vocab] of the last new position (state.logits). Throws when the context would
// exceed max_tokens or encode() has not run.
const float* decoder_step(const WhisperModel& model, WhisperState& st, const int32_t* tokens,
                          int64_t n_new);

// Resets the decoder and runs `n` tokens as one prefix; returns the logits of every position [n, vocab].
// For tests and scoring; decoding uses decoder_step.
std::vector<float> decoder_logits_all(const WhisperModel& model, WhisperState& st,
                                      const int32_t* tokens, int64_t n);

// Greedy decoding after encode(): feeds `prefix`, then appends the argmax token until `eot` is
// produced (it is included in the result) or max_new_tokens or the context is reached. No token
// suppression and no timestamp rules: the plain argmax loop HF generate() runs with suppression off.
std::vector<int32_t> greedy_decode(const WhisperModel& model, WhisperState& st,
                                   const std::vector<int32_t>& prefix, int32_t eot,
                                   int64_t max_new_tokens);

}  // namespace flurry::whisper
