// libFuzzer target for the safetensors parser. The input is a whole file image (8-byte length,
// header JSON, data area); any input must either parse into entries that lie inside the image or
// be refused with flurry::Error. Anything else (a crash, another exception, ASan/UBSan report) is
// a bug. Run with `make fuzz`; seeds are in tests/fixtures/fuzz/safetensors/.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <string>

#include "io/safetensors.h"
#include "runtime/check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Copy so the parser sees a heap block of exactly `size` bytes: ASan then flags any read past
  // the end of the image, as it would past the end of a mapped file.
  std::string image(reinterpret_cast<const char*>(data), size);
  std::map<std::string, std::string> metadata;
  try {
    const auto entries = flurry::parse_safetensors_buffer(image.data(), image.size(), "fuzz", &metadata);
    for (const auto& e : entries) {
      const char* b = static_cast<const char*>(e.data);
      const bool inside = b >= image.data() && e.begin <= e.end && b + e.nbytes() <= image.data() + image.size();
      const bool sized = static_cast<uint64_t>(e.numel()) * flurry::dtype_size(e.dtype) == e.nbytes();
      if (!inside || !sized) std::abort();  // validation let through an entry it should refuse
    }
  } catch (const flurry::Error&) {
    // Refused with a message: the expected outcome for damaged input.
  }
  return 0;
}
