// CUDA runtime pieces the engine core needs: device count, the device allocator (the
// stream-ordered caching allocator of engine/caching_allocator.h over cudaMalloc/cudaFree, one
// per device), page-locked host memory and copies.
#include <cuda_runtime.h>

#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "engine/allocator.h"
#include "engine/caching_allocator.h"
#include "engine/cuda/runtime.h"
#include "engine/error.h"

namespace rg {

int cuda_device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no device" error
    return 0;
  }
  return count;
}

namespace {

RawMemory cuda_raw_memory(int device) {
  RawMemory raw;
  raw.alloc = [device](size_t bytes) -> void* {
    cuda::DeviceGuard guard(device);
    void* p = nullptr;
    cudaError_t err = cudaMalloc(&p, bytes);
    if (err == cudaErrorMemoryAllocation) {
      cudaGetLastError();  // not sticky, but keep it from surfacing at the next launch check
      // The kernels' scratch comes from the device's default stream-ordered pool
      // (cudaMallocAsync: legal inside graph capture, which this allocator is not), and the
      // engine keeps that pool from releasing memory (engine/cuda/runtime.cpp). Memory it
      // caches counts against ours: give back what no pending work uses, then try again.
      cudaMemPool_t pool = nullptr;
      if (cudaDeviceGetDefaultMemPool(&pool, device) == cudaSuccess &&
          cudaMemPoolTrimTo(pool, 0) == cudaSuccess) {
        err = cudaMalloc(&p, bytes);
      }
      if (err == cudaErrorMemoryAllocation) {
        cudaGetLastError();
        return nullptr;
      }
    }
    RG_CUDA_CHECK(err);
    return p;
  };
  raw.free = [device](void* p) {
    // Errors here can only be left over from an earlier failed kernel, which the engine
    // reports at its next checked call; the allocator's bookkeeping must go on regardless.
    cuda::DeviceGuard guard(device);
    cudaFree(p);
  };
  raw.describe = [device]() -> std::string {
    cuda::DeviceGuard guard(device);
    size_t free_bytes = 0, total_bytes = 0;
    if (cudaMemGetInfo(&free_bytes, &total_bytes) != cudaSuccess) {
      cudaGetLastError();
      return {};
    }
    return "the device has " + format_bytes(free_bytes) + " free of " + format_bytes(total_bytes) +
           " (other processes and CUDA libraries' workspaces count too)";
  };
  return raw;
}

class CudaCachingAllocator final : public Allocator {
 public:
  explicit CudaCachingAllocator(int device)
      : device_(device), cache_(cuda_raw_memory(device), "cuda:" + std::to_string(device)) {}

  // The block is ordered on `stream`, or on the device's current stream when none is given.
  void* allocate(size_t bytes, void* stream) override {
    void* key = stream != nullptr ? stream : static_cast<void*>(cuda::current_stream(device_));
    return cache_.allocate(bytes, key);
  }
  // The block returns to the stream it was allocated on, whatever `stream` says.
  void deallocate(void* ptr, size_t, void*) override { cache_.deallocate(ptr); }
  AllocatorStats stats() const override { return cache_.stats(); }
  void reset_peak() override { cache_.reset_peak(); }
  void empty_cache() override { cache_.empty_cache(); }

 private:
  int device_;
  CachingAllocator cache_;
};

class PinnedHostAllocator final : public CountingAllocator {
 public:
  void* allocate(size_t bytes, void*) override {
    void* p = nullptr;
    const cudaError_t err = cudaHostAlloc(&p, bytes == 0 ? 1 : bytes, cudaHostAllocDefault);
    if (err != cudaSuccess) {
      cudaGetLastError();
      RG_FAIL("cannot allocate ", bytes, " bytes of page-locked host memory (",
              cudaGetErrorString(err), ") with ", in_use(), " bytes in use");
    }
    count_allocation(bytes);
    return p;
  }
  void deallocate(void* ptr, size_t bytes, void*) override {
    if (ptr == nullptr) return;
    count_free(bytes);
    cudaFreeHost(ptr);
  }
};

}  // namespace

Allocator& pinned_host_allocator() {
  static PinnedHostAllocator pinned;
  static const bool have_device = cuda_device_count() > 0;
  return have_device ? static_cast<Allocator&>(pinned) : cpu_allocator();
}

Allocator& cuda_allocator(int device) {
  static std::mutex mutex;
  // Never destroyed: a tensor released during static destruction still returns its block, and
  // the driver may be shut down by then (freeing segments at exit gains nothing).
  static auto* allocators = new std::vector<CudaCachingAllocator*>();
  std::lock_guard<std::mutex> lock(mutex);
  const int count = cuda_device_count();
  RG_CHECK(device >= 0 && device < count, "CUDA device cuda:", device, " requested, but ", count,
           " CUDA device(s) are available");
  if (allocators->empty()) allocators->resize(count, nullptr);
  if ((*allocators)[device] == nullptr) (*allocators)[device] = new CudaCachingAllocator(device);
  return *(*allocators)[device];
}

void cuda_empty_cache(int device) {
  cuda_allocator(device).empty_cache();
}

// All copies run on the current stream of the device involved (never the legacy default
// stream, which the engine's non-blocking streams are not ordered with). A copy from or to host
// memory waits for that stream: the host may read the destination or reuse the source as soon as
// this returns, pinned or pageable. A copy within a device only joins that device's stream, which
// orders it before everything the engine does with the destination afterwards.
void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes) {
  if (bytes == 0) return;
  if (dst_device.is_cpu() && src_device.is_cpu()) {
    std::memcpy(dst, src, bytes);
    return;
  }
  if (src_device.is_cpu() || dst_device.is_cpu()) {
    const int device = src_device.is_cpu() ? dst_device.index : src_device.index;
    const cudaMemcpyKind kind =
        src_device.is_cpu() ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToHost;
    cudaStream_t stream = cuda::current_stream(device);
    cuda::DeviceGuard guard(device);
    RG_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, kind, stream));
    RG_CUDA_CHECK(cudaStreamSynchronize(stream));
    return;
  }
  if (src_device.index == dst_device.index) {
    cudaStream_t stream = cuda::current_stream(src_device.index);
    cuda::DeviceGuard guard(src_device.index);
    RG_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream));
    return;
  }
  // Between two devices: the copy runs on the source's stream after the work queued on the
  // destination's stream (which may still use the destination block), and the host waits for
  // it, so the destination device's later work is ordered after it too.
  cudaStream_t src_stream = cuda::current_stream(src_device.index);
  cudaStream_t dst_stream = cuda::current_stream(dst_device.index);
  {
    cuda::DeviceGuard guard(dst_device.index);
    cuda::Event dst_ready;
    dst_ready.record(dst_stream);
    dst_ready.wait(src_stream);
  }
  cuda::DeviceGuard guard(src_device.index);
  RG_CUDA_CHECK(
      cudaMemcpyPeerAsync(dst, dst_device.index, src, src_device.index, bytes, src_stream));
  RG_CUDA_CHECK(cudaStreamSynchronize(src_stream));
}

}  // namespace rg
