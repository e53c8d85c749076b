// Constructors of the individual communicator implementations (internal to runtime/dist).
#pragma once

#include <memory>

#include "runtime/dist/comm.h"

namespace flurry::dist {

std::unique_ptr<Communicator> make_self_communicator();
#if FLURRY_HAVE_MPI
std::unique_ptr<Communicator> make_mpi_communicator(DistContext& ctx);
#endif
#if FLURRY_HAVE_NCCL
std::unique_ptr<Communicator> make_nccl_communicator(DistContext& ctx);
#endif

// Copies between host and device (or within either) for staging; plain memcpy without CUDA.
void copy_bytes(void* dst, Where dst_w, const void* src, Where src_w, size_t bytes);
void sync_stream(void* stream);

}  // namespace flurry::dist
