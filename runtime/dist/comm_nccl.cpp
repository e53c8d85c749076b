// NCCL implementation of the communicator: device buffers only, one rank per GPU. The unique id
// travels from rank 0 over MPI. all-to-all(v) are grouped point-to-point sends and receives.
#include <nccl.h>

#include <vector>

#include "runtime/check.h"
#include "runtime/cuda/cuda_check.h"
#include "runtime/dist/comm_impl.h"
#include "runtime/dist/context.h"
#include "runtime/dist/mpi_check.h"
#include "runtime/log.h"

namespace flurry::dist {
namespace {

ncclDataType_t nccl_type(DType t) {
  switch (t) {
    case DType::F32: return ncclFloat32;
    case DType::F16: return ncclFloat16;
    case DType::BF16: return ncclBfloat16;
    case DType::I32: return ncclInt32;
    case DType::I64: return ncclInt64;
    case DType::U8: return ncclUint8;
  }
  return ncclUint8;
}

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum: return ncclSum;
    case ReduceOp::Max: return ncclMax;
    case ReduceOp::Min: return ncclMin;
  }
  return ncclSum;
}

void require_device(Where w, const char* op) {
  FLURRY_CHECK(w == Where::Device, "NCCL " << op << " needs device buffers; use the MPI communicator for host data");
}

class NcclCommunicator final : public Communicator {
 public:
  explicit NcclCommunicator(DistContext& ctx) : rank_(ctx.rank()), size_(ctx.size()) {
    ncclUniqueId id;
    if (rank_ == 0) NCCL_CHECK(ncclGetUniqueId(&id));
    MPI_CHECK(MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, ctx.world()));
    NCCL_CHECK(ncclCommInitRank(&comm_, size_, id, rank_));
  }
  ~NcclCommunicator() override {
    if (comm_ != nullptr) (void)ncclCommDestroy(comm_);
  }

  CommKind kind() const override { return CommKind::Nccl; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }

  void all_gather(const void* send, void* recv, size_t count, DType t, Where w, void* s) override {
    require_device(w, "all_gather");
    NCCL_CHECK(ncclAllGather(send, recv, count, nccl_type(t), comm_, stream(s)));
  }

  void all_to_all(const void* send, void* recv, size_t count, DType t, Where w, void* s) override {
    std::vector<size_t> counts(size_, count), displs(size_);
    for (int r = 0; r < size_; ++r) displs[r] = count * r;
    all_to_allv(send, counts, displs, recv, counts, displs, t, w, s);
  }

  void all_to_allv(const void* send, const std::vector<size_t>& send_counts,
                   const std::vector<size_t>& send_displs, void* recv,
                   const std::vector<size_t>& recv_counts, const std::vector<size_t>& recv_displs,
                   DType t, Where w, void* s) override {
    require_device(w, "all_to_allv");
    const size_t n = static_cast<size_t>(size_);
    FLURRY_CHECK(send_counts.size() == n && send_displs.size() == n && recv_counts.size() == n &&
                     recv_displs.size() == n,
                 "all_to_allv needs one count and displacement per rank (" << n << ")");
    const size_t es = dtype_size(t);
    const ncclDataType_t nt = nccl_type(t);
    NCCL_CHECK(ncclGroupStart());
    for (int r = 0; r < size_; ++r) {
      if (send_counts[r] > 0) {
        NCCL_CHECK(ncclSend(static_cast<const char*>(send) + send_displs[r] * es, send_counts[r], nt, r,
                            comm_, stream(s)));
      }
      if (recv_counts[r] > 0) {
        NCCL_CHECK(ncclRecv(static_cast<char*>(recv) + recv_displs[r] * es, recv_counts[r], nt, r, comm_,
                            stream(s)));
      }
    }
    NCCL_CHECK(ncclGroupEnd());
  }

  void broadcast(void* buf, size_t count, DType t, Where w, int root, void* s) override {
    require_device(w, "broadcast");
    NCCL_CHECK(ncclBroadcast(buf, buf, count, nccl_type(t), root, comm_, stream(s)));
  }

  void all_reduce(const void* send, void* recv, size_t count, DType t, ReduceOp op, Where w,
                  void* s) override {
    require_device(w, "all_reduce");
    NCCL_CHECK(ncclAllReduce(send, recv, count, nccl_type(t), nccl_op(op), comm_, stream(s)));
  }

 private:
  static cudaStream_t stream(void* s) { return static_cast<cudaStream_t>(s); }
  ncclComm_t comm_ = nullptr;
  int rank_;
  int size_;
};

}  // namespace

std::unique_ptr<Communicator> make_nccl_communicator(DistContext& ctx) {
  return std::make_unique<NcclCommunicator>(ctx);
}

}  // namespace flurry::dist
