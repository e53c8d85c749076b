#include "runtime/dist/context.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "runtime/check.h"
#include "runtime/device.h"
#include "runtime/dist/mpi_check.h"
#include "runtime/log.h"

namespace flurry::dist {

#if FLURRY_HAVE_MPI
std::string mpi_error_string(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(code, text, &len) != MPI_SUCCESS) return "MPI error code " + std::to_string(code);
  return std::string(text, static_cast<size_t>(len));
}
#endif

namespace {

bool env_set(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0';
}

int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  return std::atoi(v);
}

// Which launcher started us, from the variables each one exports. Empty: started alone.
std::string detect_launcher() {
  if (env_set("OMPI_COMM_WORLD_SIZE")) return "mpirun";
  if (env_set("SLURM_STEP_ID") && env_int("SLURM_STEP_NUM_TASKS", env_int("SLURM_NTASKS", 1)) >= 1 &&
      (env_set("PMIX_RANK") || env_set("PMI_RANK") || env_set("PMI_FD") || env_set("SLURM_PROCID"))) {
    return "srun";
  }
  if (env_set("PMIX_RANK") || env_set("PMI_RANK") || env_set("PMI_SIZE")) return "mpi";
  return "";
}

std::string local_hostname() {
  char name[256] = {0};
  if (gethostname(name, sizeof(name) - 1) != 0) return "unknown";
  return name;
}

}  // namespace

DistContext::DistContext(int* argc, char*** argv) {
  hostname_ = local_hostname();
  std::string launcher = detect_launcher();
  const char* force = std::getenv("FLURRY_MPI");
  bool want_mpi = !launcher.empty();
  if (force != nullptr && std::string(force) == "1") want_mpi = true;
  if (force != nullptr && std::string(force) == "0") want_mpi = false;
#if FLURRY_HAVE_MPI
  int already = 0;
  MPI_CHECK(MPI_Initialized(&already));
  if (already) {
    want_mpi = true;
    MPI_CHECK(MPI_Query_thread(&thread_level_));
  } else if (want_mpi) {
    // The dispatcher on rank 0 and the heartbeat on other ranks call MPI from a second thread,
    // always under one lock per process: SERIALIZED is enough, MULTIPLE is welcome.
    MPI_CHECK(MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &thread_level_));
    we_initialised_ = true;
  }
  if (want_mpi) {
    mpi_active_ = true;
    MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &world_));
    // Errors come back as codes that MPI_CHECK turns into flurry::Error naming call and rank.
    MPI_CHECK(MPI_Comm_set_errhandler(world_, MPI_ERRORS_RETURN));
    MPI_CHECK(MPI_Comm_rank(world_, &rank_));
    MPI_CHECK(MPI_Comm_size(world_, &size_));
    MPI_CHECK(MPI_Comm_split_type(world_, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &local_));
    MPI_CHECK(MPI_Comm_rank(local_, &local_rank_));
    MPI_CHECK(MPI_Comm_size(local_, &local_size_));
    launcher_ = launcher.empty() ? (already ? "mpi" : "singleton") : launcher;
    set_process_rank(rank_);
    if (size_ > 1 && thread_level_ < MPI_THREAD_SERIALIZED) {
      FLURRY_FAIL("the MPI library provides thread level " << thread_level_
                  << ", below MPI_THREAD_SERIALIZED, which the work dispatcher needs");
    }
  }
#else
  (void)argc;
  (void)argv;
  (void)want_mpi;
#endif
  // srun without a PMI plugin that MPI understands starts N singletons that all think they are
  // rank 0 and would overwrite each other's shard: refuse instead.
  const int slurm_tasks = env_int("SLURM_STEP_NUM_TASKS", 0);
  if (env_set("SLURM_STEP_ID") && slurm_tasks > 1 && size_ == 1) {
    FLURRY_FAIL("srun started " << slurm_tasks << " tasks but this process sees a job of 1 rank"
                << (mpi_active_ ? "" : " (built without MPI)")
                << ": launch with 'srun --mpi=pmix' (or pmi2) and an MPI-enabled build");
  }
}

DistContext::~DistContext() {
#if FLURRY_HAVE_MPI
  if (!mpi_active_) return;
  if (local_ != MPI_COMM_NULL) MPI_Comm_free(&local_);
  if (world_ != MPI_COMM_NULL) MPI_Comm_free(&world_);
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (we_initialised_ && !finalized) MPI_Finalize();
#endif
}

int gpu_for_local_rank(int local_rank, int device_count) {
  if (device_count <= 0) return -1;
  FLURRY_CHECK(local_rank >= 0, "negative node-local rank " << local_rank);
  return local_rank % device_count;
}

bool fake_gpus() {
  const char* v = std::getenv("FLURRY_TEST_GPU_COUNT");
  return v != nullptr && *v != '\0';
}

int usable_gpu_count(std::string* why) {
  if (fake_gpus()) {
    const int n = std::atoi(std::getenv("FLURRY_TEST_GPU_COUNT"));
    if (n <= 0 && why) *why = "FLURRY_TEST_GPU_COUNT says no GPU";
    return std::max(n, 0);
  }
  return cuda_device_count(why);
}

int DistContext::select_device() {
  std::string why;
  device_count_ = usable_gpu_count(&why);
  if (device_count_ == 0) {
    device_ = -1;
    LOG_DEBUG("no GPU for rank " << rank_ << ": " << why);
    return device_;
  }
  device_ = gpu_for_local_rank(local_rank_, device_count_);
  if (!fake_gpus()) set_device(device_);
  LOG_INFO("rank " << rank_ << " (local " << local_rank_ << "/" << local_size_ << " on " << hostname_
                   << ") uses GPU " << device_ << " of " << device_count_
                   << (gpu_shared() ? " (shared with other ranks)" : ""));
  return device_;
}

bool DistContext::gpu_shared() const { return device_count_ > 0 && local_size_ > device_count_; }

void DistContext::barrier() const {
#if FLURRY_HAVE_MPI
  if (mpi_active_) MPI_CHECK(MPI_Barrier(world_));
#endif
}

void DistContext::abort(int code) const {
#if FLURRY_HAVE_MPI
  if (mpi_active_ && size_ > 1) MPI_Abort(world_, code);
#endif
  std::fflush(stderr);
  std::_Exit(code);
}

std::string mpi_library_version() {
#if FLURRY_HAVE_MPI
  char text[MPI_MAX_LIBRARY_VERSION_STRING];
  int len = 0;
  if (MPI_Get_library_version(text, &len) != MPI_SUCCESS) return "unknown";
  std::string s(text, static_cast<size_t>(len));
  const size_t comma = s.find(',');  // "Open MPI v4.1.4, package: ..." -> "Open MPI v4.1.4"
  if (comma != std::string::npos) s.resize(comma);
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\0')) s.pop_back();
  return s;
#else
  return "none";
#endif
}

}  // namespace flurry::dist
