#include "runtime/dist/comm.h"

#include <cstring>
#include <string>

#include "runtime/check.h"
#include "runtime/dist/comm_impl.h"
#include "runtime/dist/context.h"
#include "runtime/log.h"

#if FLURRY_HAVE_CUDA
#include <cuda_runtime.h>

#include "runtime/cuda/cuda_check.h"
#endif

namespace flurry::dist {

const char* comm_kind_name(CommKind k) {
  switch (k) {
    case CommKind::Auto: return "auto";
    case CommKind::Nccl: return "nccl";
    case CommKind::Mpi: return "mpi";
    case CommKind::Self: return "self";
  }
  return "?";
}

void copy_bytes(void* dst, Where dst_w, const void* src, Where src_w, size_t bytes) {
  if (bytes == 0 || dst == src) return;
  if (dst_w == Where::Host && src_w == Where::Host) {
    std::memmove(dst, src, bytes);
    return;
  }
#if FLURRY_HAVE_CUDA
  CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDefault));
#else
  FLURRY_FAIL("device buffer given to a communicator, but flurry was built without CUDA");
#endif
}

void sync_stream(void* stream) {
#if FLURRY_HAVE_CUDA
  CUDA_CHECK(cudaStreamSynchronize(static_cast<cudaStream_t>(stream)));
#else
  (void)stream;
#endif
}

namespace {

// One rank: every collective is a copy (or nothing, in place).
class SelfCommunicator final : public Communicator {
 public:
  CommKind kind() const override { return CommKind::Self; }
  int rank() const override { return 0; }
  int size() const override { return 1; }

  void all_gather(const void* send, void* recv, size_t count, DType t, Where w, void* s) override {
    if (w == Where::Device) sync_stream(s);  // host buffers: nothing to wait for (and maybe no driver)
    copy_bytes(recv, w, send, w, count * dtype_size(t));
  }
  void all_to_all(const void* send, void* recv, size_t count, DType t, Where w, void* s) override {
    all_gather(send, recv, count, t, w, s);
  }
  void all_to_allv(const void* send, const std::vector<size_t>& send_counts,
                   const std::vector<size_t>& send_displs, void* recv,
                   const std::vector<size_t>& recv_counts, const std::vector<size_t>& recv_displs,
                   DType t, Where w, void* s) override {
    FLURRY_CHECK(send_counts.size() == 1 && recv_counts.size() == 1 && send_displs.size() == 1 &&
                     recv_displs.size() == 1,
                 "all_to_allv on one rank takes one count and one displacement per side");
    FLURRY_CHECK(send_counts[0] == recv_counts[0],
                 "all_to_allv: send count " << send_counts[0] << " != receive count " << recv_counts[0]);
    if (w == Where::Device) sync_stream(s);  // host buffers: nothing to wait for (and maybe no driver)
    const size_t es = dtype_size(t);
    copy_bytes(static_cast<char*>(recv) + recv_displs[0] * es, w,
               static_cast<const char*>(send) + send_displs[0] * es, w, send_counts[0] * es);
  }
  void broadcast(void*, size_t, DType, Where, int root, void*) override {
    FLURRY_CHECK(root == 0, "broadcast root " << root << " out of range for 1 rank");
  }
  void all_reduce(const void* send, void* recv, size_t count, DType t, ReduceOp, Where w,
                  void* s) override {
    all_gather(send, recv, count, t, w, s);
  }
};

}  // namespace

std::unique_ptr<Communicator> make_self_communicator() { return std::make_unique<SelfCommunicator>(); }

std::unique_ptr<Communicator> make_communicator(DistContext& ctx, CommKind kind) {
  std::string why;
  if (kind == CommKind::Auto) {
#if FLURRY_HAVE_NCCL
    if (ctx.size() == 1) {
      why = "one rank";
    } else if (ctx.device() < 0) {
      why = "no GPU selected";
    } else if (ctx.gpu_shared()) {
      why = "ranks share a GPU, which NCCL cannot do";
    } else {
      kind = CommKind::Nccl;
      why = "one GPU per rank";
    }
#else
    why = "built without NCCL";
#endif
    if (kind == CommKind::Auto) kind = ctx.size() > 1 || ctx.mpi_active() ? CommKind::Mpi : CommKind::Self;
  }
  std::unique_ptr<Communicator> comm;
  switch (kind) {
    case CommKind::Nccl:
#if FLURRY_HAVE_NCCL
      FLURRY_CHECK(ctx.device() >= 0, "NCCL communicator requested but no GPU is selected");
      FLURRY_CHECK(!ctx.gpu_shared(), "NCCL communicator requested but ranks share a GPU on "
                                          << ctx.hostname() << "; use the MPI communicator");
      comm = make_nccl_communicator(ctx);
#else
      FLURRY_FAIL("NCCL communicator requested but flurry was built without NCCL");
#endif
      break;
    case CommKind::Mpi:
#if FLURRY_HAVE_MPI
      FLURRY_CHECK(ctx.mpi_active(), "MPI communicator requested but MPI is not initialised "
                                     "(start under mpirun/srun or set FLURRY_MPI=1)");
      comm = make_mpi_communicator(ctx);
#else
      FLURRY_FAIL("MPI communicator requested but flurry was built without MPI");
#endif
      break;
    case CommKind::Self:
      FLURRY_CHECK(ctx.size() == 1, "the self communicator serves one rank, the job has " << ctx.size());
      comm = make_self_communicator();
      break;
    case CommKind::Auto: break;
  }
  if (ctx.is_root()) {
    LOG_INFO("communicator: " << comm_kind_name(comm->kind()) << " across " << comm->size() << " rank(s)"
                              << (why.empty() ? "" : " (" + why + ")"));
  }
  return comm;
}

}  // namespace flurry::dist
