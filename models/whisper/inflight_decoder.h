// In-flight batching with the CPU reference's full decoding semantics.
//
// InflightCore (inflight_core.h) schedules single tokens and knows only the no-timestamps greedy
// rules. Everything else the reference decodes with (language detection, beam search, best-of
// sampling, temperature fallback with the compression-ratio / log-prob / no-speech checks, the
// timestamp rules, long-form seeking, condition_on_previous_text, the initial prompt) lives in
// decoding.cpp and transcribe.cpp as a per-file loop over DecoderModel calls. Rather than a second
// implementation of those rules that would have to be kept token-for-token equal to the first,
// InflightDecoder runs the reference loop itself, one lane per file in flight, and batches what the
// lanes ask of the model:
//
//   - Each lane is a DecoderModel (the reference's own interface) owned by one file's driver
//     thread (transcribe() on that file, unchanged). A lane holds G decoder slots (the beams or
//     best-of candidates of its current window: beams are slots) and one audio index (the file's
//     current window: windows of one file are sequential, many files are in flight at once).
//   - encode_audio() and forward() post a request and block; fork() (beam reordering) posts a cheap
//     request the engine serves at once.
//   - serve(), on the one thread that owns the backend (the GPU's), waits until every lane that is
//     transcribing has a request posted, then runs all posted encodes as encoder batches of up to E
//     windows and all posted decoder calls as ONE batched forward over the union of the lanes'
//     sequences (prefill of a new window's prompt and single-token steps mixed), and wakes the
//     lanes. A lane whose file is done leaves; the driver thread takes the next file and rejoins,
//     so the lane's slots are refilled as soon as their sequences finish.
//
// Because every sequence's arithmetic is independent of the batch it is in (the CPU backend runs
// each slot through the reference decoder_step with the same token chunks as CpuDecoderModel), the
// batched path gives the one-file-at-a-time reference's tokens exactly, at any batch size.
//
// Selection on the backend: where the backend can apply the logit rules itself
// (SlotBackend::selects_tokens(), the GPU's logits_select), a lane decoding greedily at temperature
// 0 asks for the chosen token and its logprob instead of the row, and a beam-search lane for each
// beam's beam_size + 1 best (token, logprob) (DecoderModel::forward_select): the call carries the
// lane's rules and each sequence's sampled tokens. A sampling lane (fallback temperatures, best_of)
// on a backend that also samples (samples_tokens()) sends the uniforms its sampler would have used
// and gets the draws back (DecoderModel::forward_select with temperature > 0). The choice is made
// per request, so language detection in the same step still gets full rows, and the lane's
// transcribe() loop is the reference's either way. What stays on the lanes' threads: beam
// bookkeeping over the candidates, the samplers' uniforms, compression ratio, seeking.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <vector>

#include "models/whisper/decoding.h"
#include "models/whisper/inflight_core.h"

namespace flurry::whisper {

// The most candidates per sequence a backend's selection returns (the GPU's kLogitsMaxTopK), and
// the stride of SlotBackend::forward_select's outputs.
constexpr int kMaxSelectTopK = 10;

// One sequence's share of a batched decoder call (the GPU's GpuSeq, backend-neutral).
struct SlotCall {
  int slot = 0;   // decoder slot; its self cache holds `pos` positions (0: start it on `audio`)
  int audio = 0;  // audio index whose encoding it reads
  int pos = 0;
  const int* tokens = nullptr;
  int n_new = 0;  // >= 1
  int aux = -1;   // index in tokens whose logits are also wanted, or -1
  // Selection on the backend (forward_select): the rules to apply to the row after the last token
  // and the sequence's sampled tokens; null: the row itself is wanted.
  const LogitRuleSet* rules = nullptr;
  const int* sampled = nullptr;
  int n_sampled = 0;
  int top_k = 0;  // 0: the argmax; else the top_k best (<= kMaxSelectTopK)
  // > 0 (top_k 0): instead of the argmax, sample_inverse_cdf of the filtered row at this
  // temperature with `uniform` (SelectQuery's sampling; the backend's samples_tokens()).
  float temperature = 0.0f;
  double uniform = 0.0;
};

// A window to encode from a file's samples instead of host log-mel: frames [seek, seek + n_frames)
// of the file's long-form log-mel (models/whisper/app/features.h: the file padded with 30 s of
// silence, one spectrogram, clamped at the file's peak - 8, zero past n_frames), computed by the
// backend.
struct SampleWindow {
  const float* samples = nullptr;  // the whole file, 16 kHz mono
  int64_t n_samples = 0;
  int64_t seek = 0;
  int64_t n_frames = 0;
  float* floor = nullptr;  // in/out: the file's clamp value (log10 peak - 8); NaN: the backend finds it
};

// The device side of InflightDecoder: slots, audio indices and batched calls over them. Called
// from one thread only (InflightDecoder::serve()).
class SlotBackend {
 public:
  virtual ~SlotBackend() = default;
  virtual int vocab() const = 0;
  virtual int n_text_ctx() const = 0;
  virtual int slots() const = 0;         // decoder slots 0..slots()-1
  virtual int audios() const = 0;        // audio indices 0..audios()-1
  virtual int encoder_batch() const = 0; // windows per encode() call at most
  // Encodes host log-mel windows ([n_mels, 3000] fp32) as audio indices audio[k] (distinct).
  virtual void encode(const std::vector<int>& audio, const std::vector<const float*>& mels, InflightStats& stats) = 0;
  // Optional log-mel on the backend: a backend returning true implements encode_samples(), which
  // encodes windows given as samples (SampleWindow) as audio indices audio[k], finding a file's
  // floor first where it is NaN.
  virtual bool encodes_samples() const { return false; }
  virtual void encode_samples(const std::vector<int>& audio, const std::vector<const SampleWindow*>& windows,
                              InflightStats& stats);
  // Appends each call's tokens to its slot and writes the logits after its last token to row i of
  // `last` ([n, vocab]) and, where aux >= 0, the logits at tokens[aux] to row i of `aux_out`.
  virtual void forward(const std::vector<SlotCall>& calls, float* last, float* aux_out, InflightStats& stats) = 0;
  // Copies the first `len` cache positions (and the audio binding) of slot `from` into slot `to`;
  // `to` or `from` may be spare_slot(), a slot no call uses, for breaking permutation cycles.
  virtual void copy_slot(int from, int to, int len) = 0;
  virtual int spare_slot() const = 0;
  // Optional selection on the backend: a backend returning true implements forward_select(), which
  // InflightDecoder calls instead of forward() when some call has `rules` set. It is forward(),
  // except that for those calls row i of `last` is not written; instead token / logprob
  // [i * kMaxSelectTopK, ...) get the filtered row's argmax (first index on ties) and its
  // log-softmax (top_k 0), or its top_k best ids and log-softmax values, by logprob descending then
  // id ascending.
  virtual bool selects_tokens() const { return false; }
  // With selects_tokens(): true when forward_select also takes sampling calls (temperature > 0),
  // returning the draw and its log-softmax at temperature 1 in the argmax's place.
  virtual bool samples_tokens() const { return false; }
  virtual void forward_select(const std::vector<SlotCall>& calls, float* last, float* aux_out, int32_t* token,
                              float* logprob, InflightStats& stats);
};

class InflightDecoder {
 public:
  // `lanes` files in flight; lane k owns slots [k*G, (k+1)*G) with G = backend.slots() / lanes,
  // and audio index k.
  InflightDecoder(SlotBackend& backend, int lanes);
  ~InflightDecoder();
  InflightDecoder(const InflightDecoder&) = delete;
  InflightDecoder& operator=(const InflightDecoder&) = delete;

  int lanes() const { return static_cast<int>(lanes_.size()); }
  int slots_per_lane() const { return group_; }

  class Lane;
  // The DecoderModel of lane k for one file: join() before transcribing, leave() after (the
  // LaneSession guard does both). A lane is driven by one thread at a time.
  Lane& lane(int k) { return *lanes_[static_cast<size_t>(k)]; }

  // Serves the lanes' requests on the calling thread until close() has been called and no lane
  // has joined. Rethrows a backend failure after waking every lane with it.
  void serve();
  // No lane will join any more: serve() returns once the joined ones have left.
  void close();
  // Opens a closed decoder for another serve() (no lane may be joined).
  void reopen();

  const InflightStats& stats() const { return stats_; }
  void reset_stats() { stats_ = InflightStats{}; }

 private:
  friend class Lane;
  enum class Kind { kNone, kEncode, kForward, kFork };
  void post(Lane& lane);     // from a lane's thread: posts lane.req_ and waits for it to be served
  void serve_cheap();        // forks; with mu_ held
  void serve_batch(std::unique_lock<std::mutex>& lock);
  void run_fork(Lane& lane);

  SlotBackend& be_;
  int group_ = 1;
  std::vector<std::unique_ptr<Lane>> lanes_;
  std::mutex mu_;
  std::condition_variable cv_engine_, cv_lanes_;
  int joined_ = 0, heavy_ = 0, cheap_ = 0;
  bool closed_ = false;
  std::exception_ptr failure_;
  InflightStats stats_;
  // Scratch of one batched call.
  std::vector<SlotCall> calls_;
  std::vector<float> last_, aux_, chosen_logprob_;
  std::vector<int32_t> chosen_;
};

class InflightDecoder::Lane : public DecoderModel {
 public:
  Lane(InflightDecoder& owner, int index);

  // Encodes a window's log-mel ([n_mels, 3000] fp32) as this lane's audio.
  void encode_audio(const float* mel);
  // Encodes a window given as samples (needs the backend's encodes_samples()).
  void encode_samples(const SampleWindow& w);
  bool encodes_samples() const;

  int vocab_size() const override;
  int n_text_ctx() const override;
  void begin(const std::vector<int>& audio_of_seq) override;
  void forward(const std::vector<std::vector<int>>& tokens, float* last_logits, const std::vector<int>& aux_pos,
               float* aux_logits) override;
  void fork(const std::vector<int>& parent) override;
  bool selects_tokens() const override;
  bool samples_tokens() const override;
  int max_select_top_k() const override;
  void forward_select(const std::vector<std::vector<int>>& tokens, const SelectQuery& q, int* token_out,
                      float* logprob_out, const std::vector<int>& aux_pos, float* aux_logits) override;

  void join();
  void leave();

 private:
  friend class InflightDecoder;
  InflightDecoder& o_;
  int index_;
  bool joined_ = false;
  int vocab_ = 0, n_ctx_ = 0;
  std::vector<int> pos_;  // per sequence (slot first_slot + s): cached positions
  // The posted request, read by the engine while the lane waits.
  Kind kind_ = Kind::kNone;
  bool done_ = false;
  const float* mel_ = nullptr;
  const SampleWindow* window_ = nullptr;  // an encode from samples (mel_ null)
  const std::vector<std::vector<int>>* tokens_ = nullptr;
  const std::vector<int>* aux_pos_ = nullptr;
  float *last_ = nullptr, *aux_ = nullptr;
  const SelectQuery* query_ = nullptr;  // set: a selection request (token_out_/logprob_out_, not last_)
  int* token_out_ = nullptr;
  float* logprob_out_ = nullptr;
  const std::vector<int>* parent_ = nullptr;
};

// Joins a lane for the life of a scope (leaves on exceptions too).
class LaneSession {
 public:
  explicit LaneSession(InflightDecoder::Lane& lane) : lane_(lane) { lane_.join(); }
  ~LaneSession() { lane_.leave(); }
  LaneSession(const LaneSession&) = delete;
  LaneSession& operator=(const LaneSession&) = delete;

 private:
  InflightDecoder::Lane& lane_;
};

}  // namespace flurry::whisper
