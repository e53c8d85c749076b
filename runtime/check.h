// Error type and host-side check macros shared by every part of flurry.
//
// flurry reports failures by throwing flurry::Error. A per-input failure (a corrupt audio file, a
// malformed record) is caught by the runner and turned into an error record; a failure of the
// runtime itself (a CUDA error, an MPI error) propagates to main, which prints it and exits non-zero.
// The library-specific macros (CUDA_CHECK, CUBLAS_CHECK, ...) live in runtime/cuda/cuda_check.h and
// runtime/dist/mpi_check.h so that CPU-only code does not include CUDA headers.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace flurry {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// The process's rank in a distributed run, -1 before the runner sets it. Check messages and log
// lines carry it so that a failure in a 64-rank job names the rank it came from.
int process_rank();
void set_process_rank(int rank);

// Formats "<lib> error: <expr> failed at file:line [rank r]: detail" and throws flurry::Error.
[[noreturn]] void throw_check_failure(const char* lib, const char* expr, const char* file, int line,
                                      const std::string& detail);

}  // namespace flurry

// FLURRY_CHECK(cond, stream-expression): throws flurry::Error naming the condition and location.
//   FLURRY_CHECK(n > 0, "batch size must be positive, got " << n);
#define FLURRY_CHECK(cond, msg)                                                          \
  do {                                                                                   \
    if (!(cond)) {                                                                       \
      std::ostringstream flurry_check_os_;                                               \
      flurry_check_os_ << msg;                                                           \
      ::flurry::throw_check_failure("check", #cond, __FILE__, __LINE__,                  \
                                    flurry_check_os_.str());                             \
    }                                                                                    \
  } while (0)

// FLURRY_FAIL(stream-expression): throws unconditionally with a formatted message.
#define FLURRY_FAIL(msg)                                                                 \
  do {                                                                                   \
    std::ostringstream flurry_fail_os_;                                                  \
    flurry_fail_os_ << msg;                                                              \
    throw ::flurry::Error(flurry_fail_os_.str());                                        \
  } while (0)
