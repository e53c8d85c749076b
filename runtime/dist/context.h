// DistContext: who this process is in a distributed run, and which GPU it drives.
//
// The same binary runs alone, under `mpirun` and under `srun`. DistContext decides whether to
// initialise MPI from the environment the launcher leaves behind (Open MPI's OMPI_COMM_WORLD_SIZE,
// PMI/PMIx variables from srun or Hydra); started alone it does not initialise MPI at all, so a
// single-rank run needs no MPI runtime. FLURRY_MPI=1 forces initialisation (MPI singleton),
// FLURRY_MPI=0 forbids it. Builds without MPI (FLURRY_HAVE_MPI undefined) are always one rank.
//
// Rank -> GPU: by node-local rank (a shared-memory split of the world communicator), modulo the
// number of visible devices, so several ranks may share one GPU. gpu_shared() says when they do;
// NCCL cannot run two ranks on one device, and make_communicator() falls back to MPI then.
//
// One DistContext per process, created first thing in main and destroyed last (it finalises MPI).
#pragma once

#include <string>

#if FLURRY_HAVE_MPI
#include <mpi.h>
#endif

namespace flurry::dist {

class DistContext {
 public:
  DistContext(int* argc, char*** argv);
  ~DistContext();
  DistContext(const DistContext&) = delete;
  DistContext& operator=(const DistContext&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  int local_rank() const { return local_rank_; }
  int local_size() const { return local_size_; }
  bool is_root() const { return rank_ == 0; }
  // True when MPI was initialised (by us or by the caller before us).
  bool mpi_active() const { return mpi_active_; }
  // How the process was started: "alone", "mpirun", "srun", "mpi" (another PMI launcher), "singleton".
  const std::string& launcher() const { return launcher_; }
  const std::string& hostname() const { return hostname_; }

  // Picks and sets this rank's GPU (local_rank % device count) and returns it; -1 when no GPU is
  // usable, which is not an error (CPU runs). Logs the choice once.
  int select_device();
  int device() const { return device_; }
  // True when more local ranks than GPUs exist on this node, so some ranks share a device.
  bool gpu_shared() const;

  void barrier() const;
  // Ends every rank of the job with `code` (MPI_Abort), or this process when MPI is not active.
  [[noreturn]] void abort(int code) const;

#if FLURRY_HAVE_MPI
  MPI_Comm world() const { return world_; }
  MPI_Comm local() const { return local_; }
  int thread_level() const { return thread_level_; }
#endif

 private:
  int rank_ = 0;
  int size_ = 1;
  int local_rank_ = 0;
  int local_size_ = 1;
  int device_ = -1;
  int device_count_ = 0;
  bool mpi_active_ = false;
  bool we_initialised_ = false;
  std::string launcher_ = "alone";
  std::string hostname_;
#if FLURRY_HAVE_MPI
  MPI_Comm world_ = MPI_COMM_NULL;
  MPI_Comm local_ = MPI_COMM_NULL;
  int thread_level_ = 0;
#endif
};

// The GPU a rank drives: node-local rank modulo the devices the node shows it (-1 without any).
int gpu_for_local_rank(int local_rank, int device_count);

// Usable CUDA devices (0 on any error, with the reason in `why`). Test hook: FLURRY_TEST_GPU_COUNT=N
// pretends N devices exist (no CUDA call is made, and select_device() sets none), so that the
// rank -> GPU choice of every binary can be checked on a machine without GPUs.
int usable_gpu_count(std::string* why = nullptr);
bool fake_gpus();

// Library versions for manifests: "Open MPI v4.1.4, ..." or "none" (built without MPI).
std::string mpi_library_version();

}  // namespace flurry::dist
