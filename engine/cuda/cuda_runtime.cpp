// CUDA runtime pieces the engine core needs: device count, the device allocator and copies.
// The stream-ordered caching allocator of the CUDA backend replaces the plain one below; the
// interface (engine/allocator.h) stays the same.
#include <cuda_runtime.h>

#include <atomic>
#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

#include "engine/allocator.h"
#include "engine/error.h"

#define RG_CUDA_CHECK(call)                                                                  \
  do {                                                                                       \
    cudaError_t rg_err_ = (call);                                                            \
    RG_CHECK(rg_err_ == cudaSuccess, #call, " failed at ", __FILE__, ":", __LINE__, ": ",    \
             cudaGetErrorString(rg_err_));                                                   \
  } while (0)

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

class CudaAllocator final : public CountingAllocator {
 public:
  explicit CudaAllocator(int device) : device_(device) {}
  void* allocate(size_t bytes, void*) override {
    RG_CUDA_CHECK(cudaSetDevice(device_));
    void* p = nullptr;
    const cudaError_t err = cudaMalloc(&p, bytes == 0 ? 1 : bytes);
    if (err != cudaSuccess) {
      cudaGetLastError();
      RG_FAIL("CUDA out of memory on cuda:", device_, ": asked for ", bytes, " bytes with ",
              in_use(), " bytes in use by tensors (", cudaGetErrorString(err), ")");
    }
    count_allocation(bytes);
    return p;
  }
  void deallocate(void* ptr, size_t bytes, void*) override {
    if (ptr == nullptr) return;
    count_free(bytes);
    cudaFree(ptr);
  }

 private:
  int device_;
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
  static std::vector<std::unique_ptr<CudaAllocator>> allocators;
  std::lock_guard<std::mutex> lock(mutex);
  const int count = cuda_device_count();
  RG_CHECK(device >= 0 && device < count, "CUDA device cuda:", device, " requested, but ", count,
           " CUDA device(s) are available");
  if (allocators.empty()) allocators.resize(count);
  if (!allocators[device]) allocators[device] = std::make_unique<CudaAllocator>(device);
  return *allocators[device];
}

void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes) {
  if (bytes == 0) return;
  if (dst_device.is_cpu() && src_device.is_cpu()) {
    std::memcpy(dst, src, bytes);
    return;
  }
  const cudaMemcpyKind kind = src_device.is_cpu()
                                  ? cudaMemcpyHostToDevice
                                  : (dst_device.is_cpu() ? cudaMemcpyDeviceToHost
                                                         : cudaMemcpyDeviceToDevice);
  RG_CUDA_CHECK(cudaMemcpy(dst, src, bytes, kind));
}

}  // namespace rg
