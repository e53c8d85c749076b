// Output writers for speech results in the formats openai-whisper's users expect: TXT, SRT, VTT,
// TSV and JSON, with the same timestamp rules as its utils.py (SRT always shows hours and uses ',',
// VTT shows hours only when non-zero and uses '.', TSV holds integer milliseconds; milliseconds
// are round(seconds * 1000) with ties to even, as Python's round does).
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "io/transcript.h"

namespace flurry {

// "HH:MM:SS,mmm" style timestamps. Hours appear when `always_include_hours` or when non-zero.
// Throws flurry::Error for negative or non-finite seconds.
std::string format_timestamp(double seconds, bool always_include_hours, char decimal_marker);

// Each returns the whole file's contents.
std::string format_txt(const Transcript& t);  // one stripped segment text per line
std::string format_srt(const Transcript& t);
std::string format_vtt(const Transcript& t);
std::string format_tsv(const Transcript& t);  // "start\tend\ttext" header, integer milliseconds
// {"id", "text", "language", "duration", "segments": [{"id", "seek", "start", "end", "text",
// "tokens", "temperature", "avg_logprob", "compression_ratio", "no_speech_prob"}]}.
nlohmann::json transcript_to_json(const Transcript& t);
// JSON text of transcript_to_json; bytes that are not UTF-8 (a segment cut inside a character)
// become U+FFFD instead of failing the write.
std::string format_json(const Transcript& t);

// The formats write_transcript_files accepts; "all" stands for every one of them.
const std::vector<std::string>& transcript_formats();

// Writes <out_dir>/<basename>.<fmt> for each format (creating out_dir). Each file is written to a
// temporary name in out_dir and renamed into place, so a killed run never leaves half a file.
// Returns the paths written. Throws flurry::Error naming the format or the path on failure.
std::vector<std::string> write_transcript_files(const Transcript& t, const std::string& out_dir,
                                                const std::string& basename,
                                                const std::vector<std::string>& formats);

}  // namespace flurry
