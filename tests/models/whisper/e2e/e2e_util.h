// Shared by the end-to-end Whisper tests: where the real checkpoint is, and speech synthesized at
// test time with espeak-ng.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "io/transcript.h"

namespace flurry::test {

inline std::string real_whisper_dir() {
  const std::string p = std::string(FLURRY_SOURCE_DIR) + "/models-cache/whisper-base";
  return std::filesystem::exists(p + "/model.safetensors") ? p : std::string();
}

// The sentences synthesized for the WER check, and their reference text.
inline const std::vector<std::string>& espeak_sentences() {
  static const std::vector<std::string> s = {
      "The quick brown fox jumps over the lazy dog.",
      "Please call Stella and ask her to bring these things with her from the store.",
      "We will meet at the train station at half past seven tomorrow.",
      "Machine learning models can transcribe thousands of hours of audio.",
  };
  return s;
}

// Writes espeak-ng's rendering of `text` (22.05 kHz mono WAV) to `path`; false when espeak-ng is
// not installed or fails.
inline bool synthesize(const std::string& text, const std::string& path) {
  if (std::system("command -v espeak-ng >/dev/null 2>&1") != 0) return false;
  const std::string cmd = "espeak-ng -v en-us -s 150 -w '" + path + "' '" + text + "' 2>/dev/null";
  return std::system(cmd.c_str()) == 0 && std::filesystem::exists(path);
}

// The speech the batched-pipeline tests use, written under `dir`: "jfk" (../shared/data/speech),
// "s0" and "s1" (espeak-ng sentences 0 and 1) and "long" (jfk, s0, jfk, s1, jfk at 16 kHz: > 30 s,
// long-form). Empty when jfk.wav, espeak-ng or sox is missing.
inline std::map<std::string, std::string> pipeline_speech(const std::filesystem::path& dir, const std::string& jfk) {
  if (jfk.empty()) return {};
  std::filesystem::create_directories(dir);
  const std::string s0 = (dir / "s0.wav").string(), s1 = (dir / "s1.wav").string();
  if (!synthesize(espeak_sentences()[0], s0) || !synthesize(espeak_sentences()[1], s1)) return {};
  const std::string s0_16 = (dir / "s0_16k.wav").string(), s1_16 = (dir / "s1_16k.wav").string();
  const std::string longf = (dir / "long.wav").string();
  const std::string cmd = "command -v sox >/dev/null 2>&1 && sox '" + s0 + "' -r 16000 -c 1 '" + s0_16 +
                          "' && sox '" + s1 + "' -r 16000 -c 1 '" + s1_16 + "' && sox '" + jfk + "' '" + s0_16 +
                          "' '" + jfk + "' '" + s1_16 + "' '" + jfk + "' '" + longf + "'";
  if (std::system(cmd.c_str()) != 0) return {};
  return {{"jfk", jfk}, {"s0", s0}, {"s1", s1}, {"long", longf}};
}

// What is spoken in pipeline_speech's files, in the order long, jfk, s0, s1 (the WER references).
inline std::vector<std::string> pipeline_speech_text() {
  const std::string jfk =
      "And so my fellow Americans, ask not what your country can do for you, ask what you can do for your country.";
  const std::string& e0 = espeak_sentences()[0];
  const std::string& e1 = espeak_sentences()[1];
  return {jfk + " " + e0 + " " + jfk + " " + e1 + " " + jfk, jfk, e0, e1};
}

// Prints where two transcripts' tokens first differ; true when they are equal.
inline bool same_tokens(const Transcript& want, const Transcript& got, const std::string& what) {
  const auto& a = want.all_tokens;
  const auto& b = got.all_tokens;
  if (a == b) return true;
  size_t i = 0;
  while (i < a.size() && i < b.size() && a[i] == b[i]) ++i;
  std::printf("%s: first differing token at %zu: want %d, got %d\n  want: %s\n  got:  %s\n", what.c_str(), i,
              i < a.size() ? a[i] : -1, i < b.size() ? b[i] : -1, want.text.c_str(), got.text.c_str());
  return false;
}

}  // namespace flurry::test
