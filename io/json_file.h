// Reading JSON files (config.json, tokenizer.json, modules.json, manifests) with errors that name
// the file and the position of a syntax error.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace flurry {

using Json = nlohmann::json;

// Parses the file; throws flurry::Error "<path>: <reason>" when it is missing, unreadable or not JSON.
Json read_json_file(const std::string& path);

// Typed field access with errors that name the file and the key:
//   int d = json_get<int>(cfg, "d_model", path);
template <typename T>
T json_get(const Json& obj, const char* key, const std::string& where);
template <typename T>
T json_get_or(const Json& obj, const char* key, const T& fallback, const std::string& where);

}  // namespace flurry
