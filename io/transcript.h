// A speech transcript: what Whisper's decoding produces and what every output writer reads (one
// type for both, so nothing is copied field by field between them).
#pragma once

#include <string>
#include <vector>

namespace flurry {

struct Segment {
  int id = 0;
  int seek = 0;        // mel frame the 30-second window started at
  double start = 0.0;  // seconds from the start of the input
  double end = 0.0;
  std::string text;
  std::vector<int> tokens;  // including timestamp tokens; empty when the segment was cleared
  double temperature = 0.0;  // the temperature the segment was decoded at
  double avg_logprob = 0.0;
  double compression_ratio = 0.0;
  double no_speech_prob = 0.0;
};

struct Transcript {
  std::string id;  // the input's id (set by the binary; the decoding leaves it empty)
  std::string language;
  std::string text;
  double duration = 0.0;  // seconds of audio (set by the binary)
  std::vector<Segment> segments;
  std::vector<int> all_tokens;  // initial prompt, then every kept segment's tokens
};

}  // namespace flurry
