#include "models/whisper/transcribe.h"

#include <algorithm>
#include <cmath>
#include <exception>
#include <string>
#include <vector>

#include "models/whisper/text_metrics.h"
#include "runtime/check.h"

namespace flurry::whisper {
namespace {

std::string decode_text(const Detokenizer& detokenize, const std::vector<int>& ids, int below) {
  std::vector<int> kept;
  for (int t : ids) {
    if (t < below) kept.push_back(t);
  }
  return detokenize ? detokenize(kept) : std::string();
}

Segment make_segment(const SpecialTokens& sp, const DecodingResult& r, int seek, double start, double end,
                     std::vector<int> tokens, const Detokenizer& detokenize) {
  Segment s;
  s.seek = seek;
  s.start = start;
  s.end = end;
  s.text = decode_text(detokenize, tokens, sp.eot);  // text tokens only
  s.tokens = std::move(tokens);
  s.temperature = r.temperature;
  s.avg_logprob = r.avg_logprob;
  s.compression_ratio = r.compression_ratio;
  s.no_speech_prob = r.no_speech_prob;
  return s;
}

}  // namespace

DecodingResult decode_with_fallback(DecoderModel& model, const SpecialTokens& sp, const TranscribeOptions& options,
                                    const std::vector<int>& prompt, const DecodeHooks& hooks) {
  FLURRY_CHECK(!options.temperatures.empty(), "no temperatures to decode with");
  DecodeHooks h = hooks;
  h.prompts = {prompt};
  DecodingResult result;
  for (float t : options.temperatures) {
    DecodingOptions o = options.decode;
    o.temperature = t;
    if (t > 0.0f) {
      o.beam_size = 0;
      o.patience = 0.0f;
    } else {
      o.best_of = 0;
    }
    result = decode(model, sp, o, 1, h).front();

    bool needs_fallback = false;
    if (options.compression_ratio_threshold && result.compression_ratio > *options.compression_ratio_threshold) {
      needs_fallback = true;  // too repetitive
    }
    const bool low_logprob = options.logprob_threshold && result.avg_logprob < *options.logprob_threshold;
    if (low_logprob) needs_fallback = true;
    if (options.no_speech_threshold && result.no_speech_prob > *options.no_speech_threshold && low_logprob) {
      needs_fallback = false;  // silence: retrying cannot help
    }
    if (!needs_fallback) break;
  }
  return result;
}

WindowSegments split_window(const SpecialTokens& sp, const DecodingResult& result, int seek, int segment_size,
                            const Detokenizer& detokenize) {
  const std::vector<int>& tokens = result.tokens;
  const int n = static_cast<int>(tokens.size());
  const int tb = sp.timestamp_begin;
  auto is_ts = [&](int i) { return tokens[static_cast<size_t>(i)] >= tb; };
  const double time_offset = static_cast<double>(seek * kHopLength) / kSampleRate;
  const bool single_timestamp_ending = n >= 2 && !is_ts(n - 2) && is_ts(n - 1);

  std::vector<int> slices;  // end of each segment: after a pair of consecutive timestamps
  for (int i = 1; i < n; ++i) {
    if (is_ts(i - 1) && is_ts(i)) slices.push_back(i);
  }
  WindowSegments out;
  if (!slices.empty()) {
    if (single_timestamp_ending) slices.push_back(n);
    int last = 0;
    for (int cur : slices) {
      std::vector<int> seg(tokens.begin() + last, tokens.begin() + cur);
      const int start_pos = seg.front() - tb, end_pos = seg.back() - tb;
      out.segments.push_back(make_segment(sp, result, seek, time_offset + start_pos * kTimePrecision,
                                          time_offset + end_pos * kTimePrecision, std::move(seg), detokenize));
      last = cur;
    }
    if (single_timestamp_ending) {
      out.next_seek = seek + segment_size;  // no speech after the last timestamp
    } else {
      const int last_pos = tokens[static_cast<size_t>(last - 1)] - tb;
      out.next_seek = seek + last_pos * kInputStride;  // decode the unfinished tail again
    }
    return out;
  }
  double duration = static_cast<double>(segment_size * kHopLength) / kSampleRate;
  int last_ts = -1;
  for (int t : tokens) {
    if (t >= tb) last_ts = t;
  }
  if (last_ts >= 0 && last_ts != tb) duration = (last_ts - tb) * kTimePrecision;
  out.segments.push_back(make_segment(sp, result, seek, time_offset, time_offset + duration, tokens, detokenize));
  out.next_seek = seek + segment_size;
  return out;
}

Transcript transcribe(DecoderModel& model, const SpecialTokens& sp, const TranscribeOptions& options,
                      int content_frames, const WindowEncoder& encode_window, const Detokenizer& detokenize,
                      TokenSampler* sampler) {
  FLURRY_CHECK(content_frames >= 0, "negative frame count " << content_frames);
  Transcript tr;
  TranscribeOptions opts = options;
  if (opts.decode.language.empty()) {
    if (sp.multilingual()) {
      encode_window(0, std::min(kFramesPerWindow, content_frames));
      opts.decode.language = detect_language(model, sp, 1).front().code;
    } else {
      opts.decode.language = "en";
    }
  }
  tr.language = opts.decode.language;
  DecodeHooks hooks;
  hooks.detokenize = detokenize;
  hooks.sampler = sampler;

  const int half_ctx = model.n_text_ctx() / 2;
  const int remaining_prompt_length = half_ctx - 1 - static_cast<int>(opts.initial_prompt.size());
  tr.all_tokens = opts.initial_prompt;
  size_t prompt_reset_since = 0;
  // The spans to transcribe, in frames (openai-whisper's seek_clips).
  std::vector<int> points;
  for (double t : opts.clip_timestamps) {
    FLURRY_CHECK(std::isfinite(t) && t >= 0.0, "clip_timestamps: " << t << " is not a time in seconds");
    points.push_back(static_cast<int>(std::nearbyint(t * (kSampleRate / kHopLength))));  // round(t * 100)
  }
  if (points.empty()) points.push_back(0);
  if (points.size() % 2 == 1) points.push_back(content_frames);
  size_t clip = 0;
  int seek = points[0];
  while (clip < points.size() / 2) {
    const int clip_start = points[2 * clip], clip_end = points[2 * clip + 1];
    if (seek < clip_start) seek = clip_start;
    const int segment_size = std::min({kFramesPerWindow, content_frames - seek, clip_end - seek});
    if (seek >= clip_end || segment_size <= 0) {
      ++clip;
      if (clip < points.size() / 2) seek = points[2 * clip];
      continue;
    }
    encode_window(seek, segment_size);

    std::vector<int> prompt;
    if (opts.carry_initial_prompt) {
      const size_t ignored = std::max(opts.initial_prompt.size(), prompt_reset_since);
      std::vector<int> rest(tr.all_tokens.begin() + static_cast<std::ptrdiff_t>(std::min(ignored, tr.all_tokens.size())),
                            tr.all_tokens.end());
      // Python's rest[-remaining_prompt_length:]; 0 keeps all, a negative length drops the head.
      const int size = static_cast<int>(rest.size());
      const int r = remaining_prompt_length;
      const int from = r > 0 ? std::max(size - r, 0) : (r == 0 ? 0 : std::min(-r, size));
      prompt = opts.initial_prompt;
      prompt.insert(prompt.end(), rest.begin() + from, rest.end());
    } else {
      prompt.assign(tr.all_tokens.begin() + static_cast<std::ptrdiff_t>(prompt_reset_since), tr.all_tokens.end());
    }

    const DecodingResult result = decode_with_fallback(model, sp, opts, prompt, hooks);
    if (opts.no_speech_threshold) {
      bool skip = result.no_speech_prob > *opts.no_speech_threshold;
      if (opts.logprob_threshold && result.avg_logprob > *opts.logprob_threshold) skip = false;
      if (skip) {
        seek += segment_size;  // silent window: nothing kept, prompt unchanged
        continue;
      }
    }
    WindowSegments ws = split_window(sp, result, seek, segment_size, detokenize);
    seek = ws.next_seek;
    for (Segment& s : ws.segments) {
      if (s.start == s.end || strip_whitespace(s.text).empty()) {  // instantaneous or textless
        s.text.clear();
        s.tokens.clear();
      }
      s.id = static_cast<int>(tr.segments.size());
      tr.all_tokens.insert(tr.all_tokens.end(), s.tokens.begin(), s.tokens.end());
      tr.segments.push_back(std::move(s));
    }
    if (!opts.condition_on_previous_text || result.temperature > 0.5) {
      prompt_reset_since = tr.all_tokens.size();  // a high-temperature result is a poor context
    }
  }
  const std::vector<int> spoken(tr.all_tokens.begin() + static_cast<std::ptrdiff_t>(opts.initial_prompt.size()),
                                tr.all_tokens.end());
  tr.text = decode_text(detokenize, spoken, sp.timestamp_begin);
  return tr;
}

std::vector<double> parse_clip_timestamps(const std::string& csv) {
  std::vector<double> out;
  for (const std::string& t : split_fields(csv)) {
    FLURRY_CHECK(!t.empty(), "clip_timestamps '" << csv << "': an empty entry");
    size_t used = 0;
    double v = 0.0;
    try {
      v = std::stod(t, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    FLURRY_CHECK(used == t.size() && std::isfinite(v) && v >= 0.0,
                 "clip_timestamps '" << csv << "': '" << t << "' is not a time in seconds");
    out.push_back(v);
  }
  return out;
}

}  // namespace flurry::whisper
