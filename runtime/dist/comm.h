// Collective operations on tensor data, host or device, behind one interface with three
// implementations:
//   - NCCL   (device buffers only; one rank per GPU; needs CUDA, NCCL and MPI to share the id),
//   - MPI    (host buffers directly; device buffers staged through host memory),
//   - self   (one rank: copies; what a build without MPI gets).
// make_communicator() picks NCCL when it can (every rank has its own GPU) and MPI otherwise, and
// logs which one it chose and why. Tests compare the MPI implementation with expected values on
// CPUs; on GPU hosts the NCCL one is checked against the MPI one.
//
// Conventions: counts are in elements of `t`; buffers live where `w` says. `stream` is a
// cudaStream_t passed as void* (nullptr: the default stream) so that this header needs no CUDA.
// NCCL calls are asynchronous on `stream`; MPI calls return when the data is in place (they
// synchronise `stream` first when staging device data).
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

#include "runtime/dtype.h"
#include "runtime/tensor.h"

namespace flurry::dist {

class DistContext;

enum class ReduceOp { Sum, Max, Min };
enum class CommKind { Auto, Nccl, Mpi, Self };
const char* comm_kind_name(CommKind k);

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual CommKind kind() const = 0;
  virtual int rank() const = 0;
  virtual int size() const = 0;

  // recv[r*count .. (r+1)*count) = rank r's send[0..count).
  virtual void all_gather(const void* send, void* recv, size_t count, DType t, Where w,
                          void* stream = nullptr) = 0;
  // Uniform all-to-all: rank r's block j (count elements) lands in rank j's block r.
  virtual void all_to_all(const void* send, void* recv, size_t count, DType t, Where w,
                          void* stream = nullptr) = 0;
  // Variable all-to-all; counts and displacements in elements, one per rank.
  virtual void all_to_allv(const void* send, const std::vector<size_t>& send_counts,
                           const std::vector<size_t>& send_displs, void* recv,
                           const std::vector<size_t>& recv_counts,
                           const std::vector<size_t>& recv_displs, DType t, Where w,
                           void* stream = nullptr) = 0;
  virtual void broadcast(void* buf, size_t count, DType t, Where w, int root,
                         void* stream = nullptr) = 0;
  // In place when send == recv. F16/BF16 are reduced in fp32 by the MPI implementation.
  virtual void all_reduce(const void* send, void* recv, size_t count, DType t, ReduceOp op, Where w,
                          void* stream = nullptr) = 0;
};

// kind Auto: NCCL when built with it, a GPU is selected and not shared; else MPI when active; else
// self. Asking for a kind that cannot work here throws flurry::Error saying why.
std::unique_ptr<Communicator> make_communicator(DistContext& ctx, CommKind kind = CommKind::Auto);

}  // namespace flurry::dist
