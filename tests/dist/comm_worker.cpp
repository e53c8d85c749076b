// Runs under mpirun (2-4 ranks): every collective of the MPI communicator on host buffers, checked
// against values each rank can compute on its own. Poisoned outputs catch elements never written.
// Exits 0 when every check passes on every rank, 1 otherwise (each failure is printed).
#include <cmath>
#include <cstdio>
#include <vector>

#include "runtime/dist/comm.h"
#include "runtime/dist/context.h"
#include "runtime/dist/mpi_check.h"

using flurry::DType;
using flurry::Where;
using namespace flurry::dist;

namespace {

int g_failures = 0;

void expect(bool ok, const char* what, int rank, size_t i, double got, double want) {
  if (ok) return;
  if (++g_failures <= 10) {
    std::fprintf(stderr, "rank %d: %s [%zu]: got %g, want %g\n", rank, what, i, got, want);
  }
}

void check_all_gather(Communicator& c, int r, int n) {
  const size_t count = 5;
  std::vector<float> send(count), recv(count * n, NAN);
  for (size_t i = 0; i < count; ++i) send[i] = static_cast<float>(r * 100 + i);
  c.all_gather(send.data(), recv.data(), count, DType::F32, Where::Host);
  for (int s = 0; s < n; ++s) {
    for (size_t i = 0; i < count; ++i) {
      const float want = static_cast<float>(s * 100 + i);
      expect(recv[s * count + i] == want, "all_gather", r, s * count + i, recv[s * count + i], want);
    }
  }
}

void check_all_to_all(Communicator& c, int r, int n) {
  const size_t count = 3;
  std::vector<int32_t> send(count * n), recv(count * n, -1);
  for (int j = 0; j < n; ++j) {
    for (size_t i = 0; i < count; ++i) send[j * count + i] = static_cast<int32_t>(r * 1000 + j * 10 + i);
  }
  c.all_to_all(send.data(), recv.data(), count, DType::I32, Where::Host);
  for (int j = 0; j < n; ++j) {
    for (size_t i = 0; i < count; ++i) {
      const int32_t want = static_cast<int32_t>(j * 1000 + r * 10 + i);
      expect(recv[j * count + i] == want, "all_to_all", r, j * count + i, recv[j * count + i], want);
    }
  }
}

// Rank r sends r + j + 1 elements to rank j, so every pair has its own block size.
void check_all_to_allv(Communicator& c, int r, int n) {
  std::vector<size_t> sc(n), sd(n), rc(n), rd(n);
  size_t st = 0, rt = 0;
  for (int j = 0; j < n; ++j) {
    sc[j] = static_cast<size_t>(r + j + 1);
    sd[j] = st;
    st += sc[j];
    rc[j] = static_cast<size_t>(j + r + 1);
    rd[j] = rt;
    rt += rc[j];
  }
  std::vector<int64_t> send(st), recv(rt, -1);
  for (int j = 0; j < n; ++j) {
    for (size_t i = 0; i < sc[j]; ++i) send[sd[j] + i] = r * 1000 + j * 10 + static_cast<int64_t>(i);
  }
  c.all_to_allv(send.data(), sc, sd, recv.data(), rc, rd, DType::I64, Where::Host);
  for (int j = 0; j < n; ++j) {
    for (size_t i = 0; i < rc[j]; ++i) {
      const int64_t want = j * 1000 + r * 10 + static_cast<int64_t>(i);
      const double got = static_cast<double>(recv[rd[j] + i]);
      expect(recv[rd[j] + i] == want, "all_to_allv", r, rd[j] + i, got, static_cast<double>(want));
    }
  }
}

void check_broadcast(Communicator& c, int r, int n) {
  const int root = n - 1;
  std::vector<float> buf(7, NAN);
  if (r == root) {
    for (size_t i = 0; i < buf.size(); ++i) buf[i] = static_cast<float>(7 * i + root);
  }
  c.broadcast(buf.data(), buf.size(), DType::F32, Where::Host, root);
  for (size_t i = 0; i < buf.size(); ++i) {
    expect(buf[i] == static_cast<float>(7 * i + root), "broadcast", r, i, buf[i], 7.0 * i + root);
  }
}

void check_all_reduce(Communicator& c, int r, int n) {
  const size_t count = 33;
  std::vector<float> send(count), recv(count, NAN);
  for (size_t i = 0; i < count; ++i) send[i] = static_cast<float>(r) + 0.5f * static_cast<float>(i);
  c.all_reduce(send.data(), recv.data(), count, DType::F32, ReduceOp::Sum, Where::Host);
  const double rank_sum = n * (n - 1) / 2.0;
  for (size_t i = 0; i < count; ++i) {
    const double want = rank_sum + n * 0.5 * i;
    expect(std::fabs(recv[i] - want) <= 1e-5 * std::fabs(want), "all_reduce f32 sum", r, i, recv[i], want);
  }
  std::vector<int64_t> v{static_cast<int64_t>(r), -static_cast<int64_t>(r)};
  c.all_reduce(v.data(), v.data(), 2, DType::I64, ReduceOp::Max, Where::Host);  // in place
  expect(v[0] == n - 1 && v[1] == 0, "all_reduce i64 max in place", r, 0, static_cast<double>(v[0]), n - 1);
  // fp16 in place: small integers are exact in fp16, so the sum must be exact too.
  std::vector<uint16_t> h(4);
  for (size_t i = 0; i < h.size(); ++i) h[i] = flurry::float_to_half_bits(static_cast<float>(r + i));
  c.all_reduce(h.data(), h.data(), h.size(), DType::F16, ReduceOp::Sum, Where::Host);
  for (size_t i = 0; i < h.size(); ++i) {
    const double got = flurry::half_bits_to_float(h[i]);
    expect(got == rank_sum + n * static_cast<double>(i), "all_reduce f16 sum", r, i, got, rank_sum + n * i);
  }
}

}  // namespace

int main(int argc, char** argv) {
  try {
    DistContext ctx(&argc, &argv);
    auto comm = make_communicator(ctx);
    const int r = comm->rank(), n = comm->size();
    if (n != ctx.size() || (n > 1 && comm->kind() != CommKind::Mpi)) {
      std::fprintf(stderr, "rank %d: expected the MPI communicator over %d ranks, got %s over %d\n", r,
                   ctx.size(), comm_kind_name(comm->kind()), n);
      ++g_failures;
    }
    check_all_gather(*comm, r, n);
    check_all_to_all(*comm, r, n);
    check_all_to_allv(*comm, r, n);
    check_broadcast(*comm, r, n);
    check_all_reduce(*comm, r, n);
    int total = g_failures;
#if FLURRY_HAVE_MPI
    if (ctx.mpi_active()) MPI_CHECK(MPI_Allreduce(&g_failures, &total, 1, MPI_INT, MPI_SUM, ctx.world()));
#endif
    if (r == 0) std::printf("comm checks on %d ranks: %d failure(s)\n", n, total);
    return total == 0 ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dist_comm_worker: %s\n", e.what());
    return 2;
  }
}
