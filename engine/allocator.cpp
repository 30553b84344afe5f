#include "engine/allocator.h"

#include <cstdlib>
#include <cstring>
#include <new>

#include "engine/error.h"

namespace rg {

namespace {

class CpuAllocator final : public CountingAllocator {
 public:
  void* allocate(size_t bytes, void*) override {
    if (bytes == 0) bytes = 1;
    const size_t rounded = (bytes + 63) / 64 * 64;  // aligned_alloc needs a multiple of alignment
    void* p = std::aligned_alloc(64, rounded);
    if (p == nullptr) {
      RG_FAIL("out of host memory: asked for ", bytes, " bytes with ", in_use(),
              " bytes in use by tensors");
    }
    count_allocation(bytes);
    return p;
  }
  void deallocate(void* ptr, size_t bytes, void*) override {
    if (ptr == nullptr) return;
    count_free(bytes == 0 ? 1 : bytes);
    std::free(ptr);
  }
};

}  // namespace

Allocator& cpu_allocator() {
  static CpuAllocator allocator;
  return allocator;
}

Allocator& allocator_for(Device device) {
  return device.is_cpu() ? cpu_allocator() : cuda_allocator(device.index);
}

#ifndef RG_WITH_CUDA
Allocator& pinned_host_allocator() { return cpu_allocator(); }

Allocator& cuda_allocator(int device) {
  RG_FAIL("CUDA device cuda:", device, " requested, but this build has no CUDA backend (RG_CUDA=OFF)");
}

void cuda_empty_cache(int device) { cuda_allocator(device).empty_cache(); }

void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes) {
  RG_CHECK(dst_device.is_cpu() && src_device.is_cpu(), "copy from ", src_device.str(), " to ",
           dst_device.str(), ": this build has no CUDA backend");
  if (bytes > 0) std::memcpy(dst, src, bytes);
}
#endif

}  // namespace rg
