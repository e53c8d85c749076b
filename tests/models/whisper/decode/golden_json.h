// Reads a golden of tests/fixtures/whisper_decode; fails the test when it is missing.
#pragma once

#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "tests/common/test_util.h"

namespace flurry::whisper::test {

inline nlohmann::json load_golden(const std::string& name) {
  const std::string path = ::flurry::test::fixture_path("whisper_decode/" + name);
  std::ifstream f(path);
  if (!f) {
    ADD_FAILURE() << "missing golden " << path << " (tests/fixtures/whisper_decode/make_goldens.py makes it)";
    return nlohmann::json::object();
  }
  return nlohmann::json::parse(f);
}

}  // namespace flurry::whisper::test
