// MPI implementation of the communicator. Host buffers go to MPI directly; device buffers are
// staged through host vectors (Debian's Open MPI is not CUDA-aware, and staging keeps this path
// correct everywhere; NCCL is the fast path for device data).
#include <algorithm>
#include <climits>
#include <vector>

#include "runtime/check.h"
#include "runtime/dist/comm_impl.h"
#include "runtime/dist/context.h"
#include "runtime/dist/mpi_check.h"

namespace flurry::dist {
namespace {

int to_int(size_t n, const char* what) {
  FLURRY_CHECK(n <= static_cast<size_t>(INT_MAX),
               what << " of " << n << " bytes exceeds what one MPI call can move (2^31-1)");
  return static_cast<int>(n);
}

MPI_Op mpi_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum: return MPI_SUM;
    case ReduceOp::Max: return MPI_MAX;
    case ReduceOp::Min: return MPI_MIN;
  }
  return MPI_SUM;
}

// A host view of a buffer: the buffer itself when it is on the host, a staging copy otherwise.
class HostView {
 public:
  HostView(const void* p, Where w, size_t bytes, bool copy_in) : p_(const_cast<void*>(p)), w_(w), bytes_(bytes) {
    if (w_ == Where::Host) return;
    stage_.resize(bytes_);
    if (copy_in) copy_bytes(stage_.data(), Where::Host, p_, w_, bytes_);
  }
  char* data() { return w_ == Where::Host ? static_cast<char*>(p_) : stage_.data(); }
  void copy_out() {
    if (w_ != Where::Host) copy_bytes(p_, w_, stage_.data(), Where::Host, bytes_);
  }

 private:
  void* p_;
  Where w_;
  size_t bytes_;
  std::vector<char> stage_;
};

class MpiCommunicator final : public Communicator {
 public:
  explicit MpiCommunicator(DistContext& ctx) : comm_(ctx.world()), rank_(ctx.rank()), size_(ctx.size()) {}

  CommKind kind() const override { return CommKind::Mpi; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }

  void all_gather(const void* send, void* recv, size_t count, DType t, Where w, void* s) override {
    if (w == Where::Device) sync_stream(s);
    const size_t bytes = count * dtype_size(t);
    HostView in(send, w, bytes, true);
    HostView out(recv, w, bytes * size_, false);
    MPI_CHECK(MPI_Allgather(in.data(), to_int(bytes, "all_gather block"), MPI_BYTE, out.data(),
                            to_int(bytes, "all_gather block"), MPI_BYTE, comm_));
    out.copy_out();
  }

  void all_to_all(const void* send, void* recv, size_t count, DType t, Where w, void* s) override {
    if (w == Where::Device) sync_stream(s);
    const size_t bytes = count * dtype_size(t);
    HostView in(send, w, bytes * size_, true);
    HostView out(recv, w, bytes * size_, false);
    MPI_CHECK(MPI_Alltoall(in.data(), to_int(bytes, "all_to_all block"), MPI_BYTE, out.data(),
                           to_int(bytes, "all_to_all block"), MPI_BYTE, comm_));
    out.copy_out();
  }

  void all_to_allv(const void* send, const std::vector<size_t>& send_counts,
                   const std::vector<size_t>& send_displs, void* recv,
                   const std::vector<size_t>& recv_counts, const std::vector<size_t>& recv_displs,
                   DType t, Where w, void* s) override {
    const size_t n = static_cast<size_t>(size_);
    FLURRY_CHECK(send_counts.size() == n && send_displs.size() == n && recv_counts.size() == n &&
                     recv_displs.size() == n,
                 "all_to_allv needs one count and displacement per rank (" << n << ")");
    if (w == Where::Device) sync_stream(s);
    const size_t es = dtype_size(t);
    std::vector<int> sc(n), sd(n), rc(n), rd(n);
    size_t send_end = 0, recv_end = 0;
    for (size_t r = 0; r < n; ++r) {
      sc[r] = to_int(send_counts[r] * es, "all_to_allv block");
      sd[r] = to_int(send_displs[r] * es, "all_to_allv displacement");
      rc[r] = to_int(recv_counts[r] * es, "all_to_allv block");
      rd[r] = to_int(recv_displs[r] * es, "all_to_allv displacement");
      send_end = std::max(send_end, (send_displs[r] + send_counts[r]) * es);
      recv_end = std::max(recv_end, (recv_displs[r] + recv_counts[r]) * es);
    }
    HostView in(send, w, send_end, true);
    // Copy the receive buffer in too: gaps between blocks must keep their contents.
    HostView out(recv, w, recv_end, true);
    MPI_CHECK(MPI_Alltoallv(in.data(), sc.data(), sd.data(), MPI_BYTE, out.data(), rc.data(), rd.data(),
                            MPI_BYTE, comm_));
    out.copy_out();
  }

  void broadcast(void* buf, size_t count, DType t, Where w, int root, void* s) override {
    FLURRY_CHECK(root >= 0 && root < size_, "broadcast root " << root << " out of range for " << size_ << " ranks");
    if (w == Where::Device) sync_stream(s);
    const size_t bytes = count * dtype_size(t);
    HostView v(buf, w, bytes, rank_ == root);
    MPI_CHECK(MPI_Bcast(v.data(), to_int(bytes, "broadcast"), MPI_BYTE, root, comm_));
    v.copy_out();
  }

  void all_reduce(const void* send, void* recv, size_t count, DType t, ReduceOp op, Where w,
                  void* s) override {
    if (w == Where::Device) sync_stream(s);
    const size_t bytes = count * dtype_size(t);
    HostView in(send, w, bytes, true);
    HostView out(recv, w, bytes, false);
    const bool in_place = send == recv;
    if (t == DType::F16 || t == DType::BF16) {
      // MPI has no 16-bit float type: reduce in fp32, round once at the end.
      std::vector<float> acc(count);
      convert_to_f32(in.data(), acc.data(), count, t);
      MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, acc.data(), to_int(count, "all_reduce"), MPI_FLOAT, mpi_op(op), comm_));
      convert_from_f32(acc.data(), in_place ? in.data() : out.data(), count, t);
      if (in_place) in.copy_out(); else out.copy_out();
      return;
    }
    MPI_Datatype mt = MPI_FLOAT;
    switch (t) {
      case DType::F32: mt = MPI_FLOAT; break;
      case DType::I32: mt = MPI_INT32_T; break;
      case DType::I64: mt = MPI_INT64_T; break;
      case DType::U8: mt = MPI_UINT8_T; break;
      default: FLURRY_FAIL("all_reduce: unsupported dtype " << dtype_name(t));
    }
    if (in_place) {
      MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, in.data(), to_int(count, "all_reduce"), mt, mpi_op(op), comm_));
      in.copy_out();
    } else {
      MPI_CHECK(MPI_Allreduce(in.data(), out.data(), to_int(count, "all_reduce"), mt, mpi_op(op), comm_));
      out.copy_out();
    }
  }

 private:
  MPI_Comm comm_;
  int rank_;
  int size_;
};

}  // namespace

std::unique_ptr<Communicator> make_mpi_communicator(DistContext& ctx) {
  return std::make_unique<MpiCommunicator>(ctx);
}

}  // namespace flurry::dist
