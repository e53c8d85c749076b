#include "io/json_file.h"

#include <fstream>
#include <sstream>

#include "runtime/check.h"

namespace flurry {

Json read_json_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) FLURRY_FAIL(path << ": cannot open");
  std::stringstream ss;
  ss << in.rdbuf();
  try {
    return Json::parse(ss.str());
  } catch (const Json::parse_error& e) {
    FLURRY_FAIL(path << ": not valid JSON (byte " << e.byte << "): " << e.what());
  }
}

template <typename T>
T json_get(const Json& obj, const char* key, const std::string& where) {
  if (!obj.is_object()) FLURRY_FAIL(where << ": expected a JSON object when reading '" << key << "'");
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) FLURRY_FAIL(where << ": missing required key '" << key << "'");
  try {
    return it->get<T>();
  } catch (const Json::exception& e) {
    FLURRY_FAIL(where << ": key '" << key << "' has the wrong type (" << it->type_name() << ")");
  }
}

template <typename T>
T json_get_or(const Json& obj, const char* key, const T& fallback, const std::string& where) {
  if (!obj.is_object()) return fallback;
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return fallback;
  return json_get<T>(obj, key, where);
}

template int json_get<int>(const Json&, const char*, const std::string&);
template int64_t json_get<int64_t>(const Json&, const char*, const std::string&);
template double json_get<double>(const Json&, const char*, const std::string&);
template float json_get<float>(const Json&, const char*, const std::string&);
template bool json_get<bool>(const Json&, const char*, const std::string&);
template std::string json_get<std::string>(const Json&, const char*, const std::string&);
template int json_get_or<int>(const Json&, const char*, const int&, const std::string&);
template int64_t json_get_or<int64_t>(const Json&, const char*, const int64_t&, const std::string&);
template double json_get_or<double>(const Json&, const char*, const double&, const std::string&);
template float json_get_or<float>(const Json&, const char*, const float&, const std::string&);
template bool json_get_or<bool>(const Json&, const char*, const bool&, const std::string&);
template std::string json_get_or<std::string>(const Json&, const char*, const std::string&,
                                              const std::string&);

}  // namespace flurry
