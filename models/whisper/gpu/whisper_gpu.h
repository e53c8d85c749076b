// Whisper on the GPU: the immutable device model (weights in fp16 or bf16, fused QKV, folded query
// scale, uploaded once), the per-batch-plan state (every buffer from ONE device arena sized at
// start-up), and the stage functions that drive the kernels of kernels/:
//
//   auto gpu = WhisperGpu::load(dir, options);               // weights + state in one arena
//   upload_mels(*gpu, n, mels);                                // host log-mel -> device (or samples)
//   encode_windows(*gpu, first_audio, n);                      // encoder + cross K/V per window
//   decoder_forward(*gpu, seqs, last_logits, aux_logits);      // one step for a set of slots
//
// The weights come straight from the memory-mapped checkpoint through Whisper's weight table
// (models/whisper/weights.h): the same fused QKV / cross-KV layouts and folded head_dim^-0.5 query
// scale the CPU reference model binds, converted to the model dtype on the host into pinned staging
// and copied asynchronously (models/common/gpu/weight_upload.h). No fp32 copy of the model is made,
// so both backends read one set of weights the same way, the CPU path stays the oracle, and a GPU
// rank does not pay large-v3's 6 GB of fp32 host memory.
//
// Buffers (T = max_source_positions = 1500, d = d_model, L = decoder layers; dtype = options.dtype):
//   mel        [enc_batch, n_mels, 3000]        channel-major, as LogMelGpu writes it
//   enc_*      [enc_batch * T, ...]             encoder activations of one chunk of windows
//   enc_out    [enc_batch, T, d]                the chunk's final LayerNorm output
//   cross_kv   L x [max_windows, T, 2d]         k | v per row, one window per audio index
//   self_k/v   L x [max_slots + 1, max_tokens, d] decoder caches; the extra slot breaks fork cycles
//   dec_*      [dec_rows, ...]                  decoder activations of one step
//   logits     [2 * max_slots, vocab] fp32      last-token rows, then the auxiliary rows
//
// Only head_dim 64 is built by the attention kernels (every released Whisper: tiny .. large-v3);
// another head size is refused at start-up with that reason.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "io/safetensors.h"
#include "models/common/gpu/layers.h"
#include "models/whisper/model.h"
#include "runtime/arena.h"
#include "runtime/cuda/gemm_lt.h"
#include "runtime/cuda/stream.h"
#include "runtime/dtype.h"

namespace flurry {
class LogMelGpu;
}

namespace flurry::whisper {

// Linear and LayerNorm views of device weights, shared with every model (models/common/gpu/layers.h).
using models::GpuLayerNorm;
using models::GpuLinear;

struct GpuEncoderLayer {
  GpuLayerNorm attn_ln;
  GpuLinear qkv, attn_out;
  GpuLayerNorm ffn_ln;
  GpuLinear fc1, fc2;
};
struct GpuDecoderLayer {
  GpuLayerNorm self_ln;
  GpuLinear self_qkv, self_out;
  GpuLayerNorm cross_ln;
  GpuLinear cross_q, cross_kv, cross_out;
  GpuLayerNorm ffn_ln;
  GpuLinear fc1, fc2;
};

// Immutable device copy of a Whisper checkpoint. Pointers into an arena owned by the caller.
class WhisperGpuModel {
 public:
  // Device bytes upload() takes from the arena (each weight 256-byte aligned); from the table alone.
  static size_t device_bytes(const WhisperConfig& c, DType dtype);
  // Checks `ck` against Whisper's table for `c`, converts every weight to `dtype` (F16 or BF16) and
  // copies it into `arena` on `stream`; returns when the copies are done (start-up). Throws naming
  // the tensor when the checkpoint is damaged, and the reason when the model cannot run on the GPU
  // kernels (head_dim != 64).
  static std::unique_ptr<WhisperGpuModel> upload(const WhisperConfig& c, const Checkpoint& ck, DType dtype,
                                                 Arena& arena, cudaStream_t stream);
  // The checks upload() makes, without touching the device.
  static void check_supported(const WhisperConfig& c, DType dtype);

  const WhisperConfig& config() const { return config_; }
  DType dtype() const { return dtype_; }

  const void* conv1_w = nullptr;  // [d, n_mels, 3]
  const void* conv1_b = nullptr;
  const void* conv2_w = nullptr;  // [d, d, 3]
  const void* conv2_b = nullptr;
  const void* enc_positions = nullptr;  // [T, d]
  std::vector<GpuEncoderLayer> enc_layers;
  GpuLayerNorm enc_ln;
  const void* embed_tokens = nullptr;   // [vocab, d]
  const void* dec_positions = nullptr;  // [max_target_positions, d]
  std::vector<GpuDecoderLayer> dec_layers;
  GpuLayerNorm dec_ln;
  const void* proj_out = nullptr;  // [vocab, d]: embed_tokens when tied

 private:
  WhisperGpuModel() = default;
  WhisperConfig config_;
  DType dtype_ = DType::F16;
};

// The batch plan the state is sized from.
struct GpuPlan {
  int max_windows = 1;  // audio indices whose cross K/V are held at once
  int enc_batch = 1;    // windows per encoder launch chunk (<= max_windows)
  int max_slots = 1;    // decoding sequences at once (beam size x windows)
  int max_tokens = 0;   // decoder context per slot; 0: max_target_positions (448)
  int dec_rows = 0;     // token rows one decoder chunk holds; 0: max(max_tokens, 8 * max_slots)
  bool logmel = false;  // reserve LogMelGpu scratch and sample buffers (encode from audio samples)
};

// Per-plan device buffers (see the layout at the top). Pointers into the caller's arena; the
// pinned host staging buffers are owned here.
class WhisperGpuState {
 public:
  static size_t device_bytes(const WhisperConfig& c, DType dtype, const GpuPlan& plan);
  WhisperGpuState(const WhisperConfig& c, DType dtype, const GpuPlan& plan, Arena& arena);

  GpuPlan plan;
  int64_t d = 0, n_ctx = 0, n_frames = 0, n_mels = 0, vocab = 0, max_tokens = 0, dec_rows = 0, ffn = 0;
  size_t elt = 2;  // bytes per element of the model dtype

  void* mel = nullptr;
  float* samples = nullptr;            // [enc_batch, 480000] fp32 (plan.logmel)
  int32_t* sample_lengths = nullptr;   // [enc_batch]
  void* logmel_ws = nullptr;
  size_t logmel_ws_bytes = 0;
  void* conv_ws = nullptr;
  size_t conv_ws_bytes = 0;
  void *enc_h = nullptr, *enc_normed = nullptr, *enc_qkv = nullptr, *enc_attn = nullptr;
  void *enc_proj = nullptr, *enc_ffn = nullptr, *enc_out = nullptr;
  std::vector<void*> cross_kv;
  std::vector<void*> self_k, self_v;
  void *dec_h = nullptr, *dec_normed = nullptr, *dec_qkv = nullptr, *dec_attn = nullptr;
  void *dec_proj = nullptr, *dec_ffn = nullptr, *dec_sel = nullptr;
  float* logits = nullptr;  // [2 * max_slots, vocab]
  int32_t* ids = nullptr;      // [dec_rows]
  int32_t* dec_index = nullptr;  // a chunk's models::GpuDecodeIndex: positions, kv_lens, slots, row starts
  int32_t* error = nullptr;    // error word of the embedding and K/V append kernels
  void* attn_ws = nullptr;
  size_t attn_ws_bytes = 0;
  void* gemm_ws = nullptr;
  size_t gemm_ws_bytes = 0;

  PinnedBuffer host_ints;    // ids, then the sequence index: staging
  PinnedBuffer host_logits;  // [2 * max_slots, vocab] fp32
  PinnedBuffer host_mel;     // [enc_batch, n_mels, 3000] in the model dtype
  std::vector<bool> encoded;  // per audio index: cross K/V present
};

// Start-up options of the GPU backend.
struct WhisperGpuOptions {
  DType dtype = DType::F16;
  GpuPlan plan;
  size_t max_gpu_memory = 0;  // bytes; 0: what the device has free (less a margin for the runtime)
};

// Model + state + the library handles, from one device arena. Not thread-safe: one driver thread.
struct WhisperGpu {
  // Sizes the arena from the plan, refuses with the needed and available bytes and the flags that
  // lower the need (--batch-size, --max-gpu-memory) when it does not fit, uploads the weights from
  // the checkpoint (config `c`; the checkpoint may be closed afterwards).
  static std::unique_ptr<WhisperGpu> create(const WhisperConfig& c, const Checkpoint& ck,
                                            const WhisperGpuOptions& options);
  // The same from a Hugging Face folder (config.json + safetensors), without a CPU model.
  static std::unique_ptr<WhisperGpu> load(const std::string& dir, const WhisperGpuOptions& options);
  // The same for a loaded CPU model: reads its checkpoint folder again (cpu.checkpoint_dir(), which
  // must still exist) rather than its fp32 copies. For callers that also run the CPU path.
  static std::unique_ptr<WhisperGpu> create(const WhisperModel& cpu, const WhisperGpuOptions& options);
  ~WhisperGpu();

  std::unique_ptr<Arena> arena;
  std::unique_ptr<GemmLt> lt;
  std::unique_ptr<Stream> stream;
  std::unique_ptr<WhisperGpuModel> model;
  std::unique_ptr<WhisperGpuState> state;
  std::unique_ptr<LogMelGpu> logmel;  // only with plan.logmel
  double encode_seconds = 0.0, decode_seconds = 0.0;
  int64_t decode_calls = 0;
};

// Bytes WhisperGpu::create would take from the device for these options (weights + state + the
// alignment slack), for --max-gpu-memory planning and messages.
size_t whisper_gpu_bytes(const WhisperConfig& c, const WhisperGpuOptions& options);
size_t whisper_gpu_bytes(const WhisperModel& cpu, const WhisperGpuOptions& options);

// ---- encoder ----------------------------------------------------------------------------------

// Copies n (<= enc_batch) host log-mel windows ([n_mels, 3000] fp32, channel-major) into the mel
// buffer, converted to the model dtype. Waits for the stream first (the pinned staging is reused).
void upload_mels(WhisperGpu& g, int n, const float* const* mels);

// Copies n (<= enc_batch) windows of 16 kHz samples (each up to 480000; shorter ones are padded
// with silence) and runs LogMelGpu into the mel buffer. Needs plan.logmel. Each window is
// normalised by its own peak (LogMelGpu's definition), not by the whole file's (the pipeline's
// long-form windows go through GpuSlotBackend::encode_samples instead).
void logmel_windows(WhisperGpu& g, int n, const float* const* samples, const int32_t* lengths);

// Runs the encoder on the n windows in the mel buffer and stores each window's cross-attention K/V
// as audio first_audio + i. enc_out holds the n windows' encoder output until the next call.
void encode_windows(WhisperGpu& g, int first_audio, int n);

// ---- decoder ----------------------------------------------------------------------------------

// One sequence's share of a decoder call.
struct GpuSeq {
  int slot = 0;     // cache slot, < max_slots; distinct within a call
  int audio = 0;    // audio index whose cross K/V it reads (encoded)
  int pos = 0;      // tokens already in the slot's cache
  const int* tokens = nullptr;
  int n_new = 0;    // >= 1
  int aux = -1;     // index in tokens whose logits are also wanted, or -1
};

// Appends every sequence's tokens to its slot's cache and computes the logits after its last
// token (row i of `last`, [n, vocab]) and, for sequences with aux >= 0, at that token (row i of
// `aux_out`). Host pointers; either may be null (logits stay on the device in state.logits: rows
// 0..n-1 last, n..2n-1 aux). Sequences are processed in chunks of at most dec_rows token rows.
void decoder_forward(WhisperGpu& g, const std::vector<GpuSeq>& seqs, float* last, float* aux_out);

// Copies the first `len` cache rows of slot `from` into slot `to` in every decoder layer.
void copy_slot(WhisperGpu& g, int from, int to, int len);

// ---- design note: in-flight batching (slot pool, compaction and batched admission are built:
// models/whisper/inflight_core.h + gpu/inflight.h; reader threads, prefill and graphs are not) ----
// The per-file driver (GpuDecoderModel under transcribe()) runs one window at a time, which keeps
// the GPU path exactly the CPU path's semantics. The throughput path replaces it with:
//  - a window queue fed by reader threads (decode + resample + pinned staging), encoded in chunks
//    of enc_batch through logmel_windows / encode_windows into free audio indices;
//  - a slot pool of max_slots cache slots; each live sequence owns a slot and an audio index;
//    a finished sequence (EOT, sample_len, or context full) frees its slot at the end of the step,
//    and a waiting window's sequences take free slots at the start of the next one (prefill runs
//    as its own chunk: flash_attention per sequence), so the batch never drains;
//  - slots compacted so live sequences are consecutive (one decode_attention launch; copy_slot for
//    the moves), and the step for a batch-size bucket (1, 2, 4, ... max_slots) captured once as a
//    CudaGraph: the ids and the sequence index it reads are device arrays updated before each
//    launch, decode_attention is called with kv_len = max_tokens and the device kv_lens, and the
//    K/V append (kernels/kv_append.cuh) already writes the new rows at the device positions;
//  - logits_select on the device for the greedy rules (suppression, timestamps) so only the chosen
//    token and its logprob come back (built: GpuSlotBackend::forward_select, per request); beam
//    search and sampling keep full rows on the host (top-k on the device next);
//  - per-window state machines on the host for fallback / no-speech / seek, which re-queue a window
//    at the next temperature or at its next seek instead of blocking the batch.

}  // namespace flurry::whisper
