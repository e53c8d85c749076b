// Long-form transcription: openai-whisper's transcribe() loop over successive 30 s windows, with
// temperature fallback, the no-speech skip, prompting from previous text, segmenting at timestamp
// tokens and seeking, clip_timestamps. Word timestamps and hallucination_silence_threshold are not
// implemented.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "io/transcript.h"
#include "models/whisper/decoding.h"

namespace flurry::whisper {

struct TranscribeOptions {
  // Per-window decoding options; `temperature` is replaced by each fallback temperature, and
  // beam_size / patience are dropped at t > 0, best_of at t == 0, as openai-whisper does.
  DecodingOptions decode;
  std::vector<float> temperatures = {0.0f, 0.2f, 0.4f, 0.6f, 0.8f, 1.0f};
  std::optional<double> compression_ratio_threshold = 2.4;  // above: too repetitive, retry
  std::optional<double> logprob_threshold = -1.0;           // avg_logprob below: retry
  std::optional<double> no_speech_threshold = 0.6;          // with low logprob: silence, skip
  bool condition_on_previous_text = true;
  std::vector<int> initial_prompt;    // tokens of " " + initial prompt text
  bool carry_initial_prompt = false;  // prepend initial_prompt to every window's prompt
  // openai-whisper's clip_timestamps: start,end,start,end,... seconds of the spans to transcribe
  // (frames round(t * 100)); an odd count's last span runs to the end; empty: the whole file.
  // Windows never cross a span's end; a span the previous window overran is skipped. One
  // deviation: where a span reaches past the audio and seeking lands at its end, openai-whisper
  // would decode an empty window (and may never leave it); here the span ends.
  std::vector<double> clip_timestamps;
};

// Parses the comma-separated clip_timestamps option ("0", "5,25.5,40", ""); throws on a bad number.
std::vector<double> parse_clip_timestamps(const std::string& csv);

// The decoding fills language, text, segments and all_tokens; the binary adds id and duration.
using Segment = flurry::Segment;
using Transcript = flurry::Transcript;

// Makes the model's audio 0 the encoder output of mel frames [seek, seek + n_frames), zero-padded
// to 3000 frames (openai-whisper's pad_or_trim of the window). The caller owns audio, mel and
// encoder. Language detection asks for the first window too (openai-whisper pads that one with
// the log-mel of silence instead of zeros).
using WindowEncoder = std::function<void(int seek, int n_frames)>;

// Transcribes `content_frames` mel frames. `detokenize` turns ids below timestamp_begin into text.
// `sampler` draws tokens at t > 0 (default: RandomSampler(options.decode.seed)).
Transcript transcribe(DecoderModel& model, const SpecialTokens& sp, const TranscribeOptions& options,
                      int content_frames, const WindowEncoder& encode_window, const Detokenizer& detokenize,
                      TokenSampler* sampler = nullptr);

// decode_with_fallback for the window currently encoded as audio 0.
DecodingResult decode_with_fallback(DecoderModel& model, const SpecialTokens& sp, const TranscribeOptions& options,
                                    const std::vector<int>& prompt, const DecodeHooks& hooks);

// The segments one window's result yields, and where the next window starts. Follows
// openai-whisper: split after each pair of consecutive timestamps; a window ending in a single
// timestamp was fully transcribed (advance by the window), otherwise seek to the last timestamp
// and decode the unfinished tail again; without timestamp pairs the window is one segment.
struct WindowSegments {
  std::vector<Segment> segments;
  int next_seek = 0;
};
WindowSegments split_window(const SpecialTokens& sp, const DecodingResult& result, int seek, int segment_size,
                            const Detokenizer& detokenize);

}  // namespace flurry::whisper
