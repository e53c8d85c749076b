// Error type and host-side check macros shared by every part of flurry.
//
// flurry reports failures by throwing. Two kinds, kept apart on purpose:
//   flurry::InputError  the input's own fault (unreadable, empty, too long, undecodable, a malformed
//                       record). The runner turns it into that input's error record and goes on.
//   flurry::Error       anything else: a CUDA/MPI/library failure, a broken invariant, a bad flag or
//                       checkpoint. The runner stops the rank with the message and a non-zero exit;
//                       the records already written stay, and --resume redoes only the rest. A
//                       sticky CUDA fault must never mark every remaining input "error".
// InputError derives from Error, so code that only reports can catch Error; code that decides
// whether to go on must catch InputError.
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

class InputError : public Error {
 public:
  explicit InputError(const std::string& what) : Error(what) {}
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

// FLURRY_INPUT_CHECK / FLURRY_INPUT_FAIL: the same for faults of the input being processed; they
// throw flurry::InputError with the message alone (it is written into the input's error record,
// so it names the input, not a source line).
#define FLURRY_INPUT_CHECK(cond, msg)                                                    \
  do {                                                                                   \
    if (!(cond)) {                                                                       \
      std::ostringstream flurry_check_os_;                                               \
      flurry_check_os_ << msg;                                                           \
      throw ::flurry::InputError(flurry_check_os_.str());                                \
    }                                                                                    \
  } while (0)

#define FLURRY_INPUT_FAIL(msg)                                                           \
  do {                                                                                   \
    std::ostringstream flurry_fail_os_;                                                  \
    flurry_fail_os_ << msg;                                                              \
    throw ::flurry::InputError(flurry_fail_os_.str());                                   \
  } while (0)
