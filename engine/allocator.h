// Memory allocators. Every Storage gets its bytes from the allocator of its device. The
// interface is stream-ordered (a CUDA allocator may hand a block to the next user on the same
// stream before the previous kernels finish); the CPU allocator ignores the stream.
#pragma once

#include <atomic>
#include <cstddef>

#include "engine/device.h"

namespace rg {

struct AllocatorStats {
  size_t in_use = 0;  // bytes handed out and not yet returned
  size_t peak = 0;    // maximum of in_use since start (or the last reset)
  size_t cached = 0;  // bytes held by the allocator for reuse, not handed out
  // Allocations made from the underlying memory (cudaMalloc for a CUDA device); a caching
  // allocator's count stays constant once a training loop is in its steady state.
  size_t raw_allocations = 0;
};

class Allocator {
 public:
  virtual ~Allocator() = default;
  virtual void* allocate(size_t bytes, void* stream = nullptr) = 0;
  virtual void deallocate(void* ptr, size_t bytes, void* stream = nullptr) = 0;
  virtual AllocatorStats stats() const = 0;
  virtual void reset_peak() = 0;
  // Gives cached, unused memory back to the system (no-op for allocators that cache nothing).
  virtual void empty_cache() {}
};

// Keeps the in-use and peak byte counts that every allocator reports.
class CountingAllocator : public Allocator {
 public:
  AllocatorStats stats() const override { return {in_use_.load(), peak_.load(), 0, 0}; }
  void reset_peak() override { peak_.store(in_use_.load()); }

 protected:
  size_t in_use() const { return in_use_.load(); }
  void count_allocation(size_t bytes) {
    const size_t now = in_use_.fetch_add(bytes) + bytes;
    size_t old_peak = peak_.load();
    while (now > old_peak && !peak_.compare_exchange_weak(old_peak, now)) {
    }
  }
  void count_free(size_t bytes) { in_use_.fetch_sub(bytes); }

 private:
  std::atomic<size_t> in_use_{0};
  std::atomic<size_t> peak_{0};
};

// 64-byte aligned host memory (cache line and AVX-512 friendly).
Allocator& cpu_allocator();
// The allocator of a CUDA device; throws in a build without CUDA or without that device.
Allocator& cuda_allocator(int device);
Allocator& allocator_for(Device device);
// Releases the cached, unused memory of a CUDA device's allocator (e.g. before handing the GPU to
// another process); throws like cuda_allocator() where there is no such device.
void cuda_empty_cache(int device);
// Page-locked host memory when a CUDA device is present (host<->device copies from it can run
// asynchronously and at full bus speed); ordinary host memory otherwise.
Allocator& pinned_host_allocator();

// Copies bytes between any two devices (host<->device, device<->device); synchronous: host memory
// involved is written or free to reuse when it returns. A copy within one CUDA device is ordered
// on that device's current stream (everything the engine does afterwards sees it) without a host
// wait.
void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes);

}  // namespace rg
