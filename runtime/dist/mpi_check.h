// MPI_CHECK: checks the return code of an MPI call and throws flurry::Error naming the call, the
// file, the line and the rank, with MPI's own text for the code. Only meaningful in builds with MPI
// (FLURRY_HAVE_MPI); the runner switches MPI_COMM_WORLD to MPI_ERRORS_RETURN so that codes reach
// this macro instead of aborting inside the library. Never wrap an MPI call in assert().
#pragma once

#include <string>

#include "runtime/check.h"

#if FLURRY_HAVE_MPI
#include <mpi.h>

namespace flurry::dist {
// "MPI_ERR_TRUNCATE: message truncated" style text for an MPI return code.
std::string mpi_error_string(int code);
}  // namespace flurry::dist

#define MPI_CHECK(expr)                                                                     \
  do {                                                                                      \
    const int flurry_mpi_rc_ = (expr);                                                      \
    if (flurry_mpi_rc_ != MPI_SUCCESS) {                                                    \
      ::flurry::throw_check_failure("MPI", #expr, __FILE__, __LINE__,                      \
                                    ::flurry::dist::mpi_error_string(flurry_mpi_rc_));     \
    }                                                                                       \
  } while (0)
#endif
