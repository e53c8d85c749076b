// RAII owners for the CUDA objects a pipeline holds for its whole life: streams, events (also
// for timing), pinned host buffers and captured graphs. Created at start-up, never on the hot path.
// Every call is checked (CUDA_CHECK); destructors never throw.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <functional>

namespace flurry {

// A non-blocking stream: it does not synchronise with the legacy default stream, so copies and
// kernels on different Streams overlap.
class Stream {
 public:
  Stream();
  explicit Stream(int priority);  // lower number = higher priority (cudaDeviceGetStreamPriorityRange)
  ~Stream();
  Stream(Stream&& other) noexcept;
  Stream& operator=(Stream&& other) noexcept;
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  cudaStream_t get() const { return stream_; }
  operator cudaStream_t() const { return stream_; }  // NOLINT: passes straight into CUDA APIs
  void synchronize() const;
  // Makes later work on this stream wait for `event` (recorded on any stream); the host does not wait.
  void wait(cudaEvent_t event) const;

 private:
  cudaStream_t stream_ = nullptr;
};

// A CUDA event. Timing events (the default) measure elapsed time between two records; events made
// with timing = false are cheaper and serve only ordering between streams.
class Event {
 public:
  explicit Event(bool timing = true);
  ~Event();
  Event(Event&& other) noexcept;
  Event& operator=(Event&& other) noexcept;
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;

  cudaEvent_t get() const { return event_; }
  operator cudaEvent_t() const { return event_; }  // NOLINT
  void record(cudaStream_t stream);
  void synchronize() const;
  bool done() const;  // true when the recorded work has completed (cudaEventQuery)
  // Milliseconds from `start` to this event; both must be timing events, recorded and complete
  // (this synchronises on *this first).
  float elapsed_ms_since(const Event& start) const;

 private:
  cudaEvent_t event_ = nullptr;
};

// Page-locked host memory (cudaHostAlloc): what makes cudaMemcpyAsync truly asynchronous and lets
// H2D/D2H copies overlap kernels. Portable across devices so any rank-local GPU can use it.
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  explicit PinnedBuffer(size_t bytes);
  ~PinnedBuffer();
  PinnedBuffer(PinnedBuffer&& other) noexcept;
  PinnedBuffer& operator=(PinnedBuffer&& other) noexcept;
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;

  void* data() const { return data_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(data_);
  }
  size_t size() const { return bytes_; }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

// A captured CUDA graph: record the work enqueued on a stream once, replay it with one launch.
// Used where a step is many small launches (a decoder step), so launch gaps do not dominate.
// Every kernel captured must be launched on the capturing stream (or streams joined to it by
// events), and nothing in `work` may synchronise or allocate.
class CudaGraph {
 public:
  CudaGraph() = default;
  ~CudaGraph();
  CudaGraph(CudaGraph&& other) noexcept;
  CudaGraph& operator=(CudaGraph&& other) noexcept;
  CudaGraph(const CudaGraph&) = delete;
  CudaGraph& operator=(const CudaGraph&) = delete;

  // Captures what `work` enqueues on `stream` and instantiates it, replacing any earlier graph. If
  // `work` throws, the capture is ended and discarded and the exception propagates.
  void capture(cudaStream_t stream, const std::function<void()>& work);
  void launch(cudaStream_t stream) const;
  bool ready() const { return exec_ != nullptr; }
  size_t num_nodes() const { return nodes_; }

 private:
  void reset() noexcept;
  cudaGraph_t graph_ = nullptr;
  cudaGraphExec_t exec_ = nullptr;
  size_t nodes_ = 0;
};

}  // namespace flurry
