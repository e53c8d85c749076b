// Shared by the end-to-end Whisper tests: where the real checkpoint is, and speech synthesized at
// test time with espeak-ng.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

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

}  // namespace flurry::test
