#include "engine/cuda/runtime.h"

#include <mutex>
#include <vector>

#include "engine/device.h"

namespace rg::cuda {

namespace {

// The device count cannot change within a process (CUDA_VISIBLE_DEVICES is read at start).
int device_count() {
  static const int count = cuda_device_count();
  return count;
}

void check_device(int device, const char* what) {
  const int count = device_count();
  RG_CHECK(device >= 0 && device < count, what, ": CUDA device cuda:", device, " requested, but ",
           count, " CUDA device(s) are available");
}

// One engine stream per device, shared by all threads. Never destroyed: tensors and cached
// blocks may outlive static destruction, and the driver may already be shut down by then.
cudaStream_t engine_default_stream(int device) {
  static std::mutex mutex;
  static auto* streams = new std::vector<cudaStream_t>();
  std::lock_guard<std::mutex> lock(mutex);
  if (streams->empty()) streams->resize(device_count(), nullptr);
  cudaStream_t& stream = (*streams)[device];
  if (stream == nullptr) {
    DeviceGuard guard(device);
    RG_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    // Kernels take their reduction scratch with cudaMallocAsync from the device's default
    // pool, which by default returns memory to the driver at every synchronization; keeping
    // it makes those allocations free in the steady state (and legal during graph capture).
    cudaMemPool_t pool = nullptr;
    RG_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, device));
    uint64_t keep_all = UINT64_MAX;
    RG_CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep_all));
  }
  return stream;
}

// This thread's current stream per device (nullptr: not looked up yet).
std::vector<cudaStream_t>& thread_streams() {
  thread_local std::vector<cudaStream_t> streams;
  if (streams.empty()) streams.resize(device_count(), nullptr);
  return streams;
}

}  // namespace

cudaStream_t current_stream(int device) {
  check_device(device, "current_stream");
  cudaStream_t& stream = thread_streams()[device];
  if (stream == nullptr) stream = engine_default_stream(device);
  return stream;
}

void set_current_stream(int device, cudaStream_t stream) {
  check_device(device, "set_current_stream");
  thread_streams()[device] = stream != nullptr ? stream : engine_default_stream(device);
}

StreamGuard::StreamGuard(int device, cudaStream_t stream)
    : device_(device), previous_(current_stream(device)) {
  set_current_stream(device, stream);
}

StreamGuard::~StreamGuard() {
  // previous_ was valid when the guard was made; restoring cannot fail for a checked device.
  thread_streams()[device_] = previous_;
}

Stream::Stream(int device, int priority) : device_(device) {
  check_device(device, "Stream");
  DeviceGuard guard(device);
  // Priorities outside the device's range are clamped by the runtime.
  RG_CUDA_CHECK(cudaStreamCreateWithPriority(&stream_, cudaStreamNonBlocking, priority));
}

Stream::~Stream() {
  if (stream_ == nullptr) return;
  // Wait for the work first: the caching allocator keys blocks by stream handle, and a stream
  // created later could get this handle while this one's kernels still use those blocks.
  cudaStreamSynchronize(stream_);
  cudaStreamDestroy(stream_);
}

void Stream::synchronize() const {
  RG_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

Event::Event(bool timing) {
  RG_CUDA_CHECK(
      cudaEventCreateWithFlags(&event_, timing ? cudaEventDefault : cudaEventDisableTiming));
}

Event::~Event() {
  if (event_ != nullptr) cudaEventDestroy(event_);
}

void Event::record(cudaStream_t stream) {
  RG_CUDA_CHECK(cudaEventRecord(event_, stream));
}

void Event::wait(cudaStream_t stream) const {
  RG_CUDA_CHECK(cudaStreamWaitEvent(stream, event_, 0));
}

void Event::synchronize() const {
  RG_CUDA_CHECK(cudaEventSynchronize(event_));
}

float Event::elapsed_ms(const Event& start) const {
  float ms = 0.f;
  RG_CUDA_CHECK(cudaEventElapsedTime(&ms, start.event_, event_));
  return ms;
}

void set_device(int device) {
  check_device(device, "set_device");
  RG_CUDA_CHECK(cudaSetDevice(device));
}

DeviceGuard::DeviceGuard(int device) {
  RG_CUDA_CHECK(cudaGetDevice(&previous_));
  if (device != previous_) RG_CUDA_CHECK(cudaSetDevice(device));
}

DeviceGuard::~DeviceGuard() {
  int now = previous_;
  if (cudaGetDevice(&now) == cudaSuccess && now != previous_) cudaSetDevice(previous_);
}

void synchronize_current_stream(int device) {
  RG_CUDA_CHECK(cudaStreamSynchronize(current_stream(device)));
}

}  // namespace rg::cuda
