// The stream-ordered caching logic of the CUDA allocator, kept free of CUDA types so the CPU CI
// tests it with a fake raw backend. Device memory comes from the raw backend (cudaMalloc) in
// segments; a segment is split into blocks that are handed out, returned, coalesced and handed
// out again without touching the raw backend, so a training loop that allocates the same
// pattern every step makes no raw allocation after the first step.
//
// Stream ordering: every block belongs to the stream it was first carved for (an opaque key).
// A freed block goes back to that stream's pool and may be handed out again at once, before the
// kernels that used it have run: the next user is ordered after them on the same stream. The
// price is that a block used on a second stream must not be freed while that stream may still
// read or write it (synchronize or make the owning stream wait on an event first).
//
// Rules (a simplified version of PyTorch's allocator):
//  - sizes round up to 512 bytes, so every block is 512-byte aligned relative to its segment
//    base (raw device allocations are at least 256-byte aligned);
//  - requests of up to 1 MiB are carved from 2 MiB segments ("small" pool), larger ones from
//    segments of the request rounded up to 2 MiB ("large" pool); the pools never mix, so small
//    temporaries do not fragment the big activation blocks;
//  - a request takes the smallest free block of its pool and stream that fits; the rest is
//    split off when it is at least 512 bytes (small pool) or more than 1 MiB (large pool);
//  - a freed block merges with free neighbours of its segment;
//  - when the raw backend is out of memory, every wholly free segment (of every stream) is
//    released and the raw allocation retried once; then rg::Error says what was asked, the
//    bytes in use, cached and at peak, and the device.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>

#include "engine/allocator.h"

namespace rg {

// Where the segments come from.
struct RawMemory {
  // Returns nullptr when out of memory (other failures throw).
  std::function<void*(size_t bytes)> alloc;
  std::function<void(void* ptr)> free;
  // Optional: extra words for the out-of-memory message (e.g. the device's free/total memory).
  std::function<std::string()> describe;
};

class CachingAllocator {
 public:
  static constexpr size_t kRounding = 512;
  static constexpr size_t kSmallRequest = size_t{1} << 20;  // requests up to this are "small"
  static constexpr size_t kSmallSegment = size_t{2} << 20;
  static constexpr size_t kLargeSegmentRounding = size_t{2} << 20;

  // `device_name` ("cuda:0") appears in error messages.
  CachingAllocator(RawMemory raw, std::string device_name);
  // Releases every segment back to the raw backend (blocks still handed out become invalid).
  ~CachingAllocator();
  CachingAllocator(const CachingAllocator&) = delete;
  CachingAllocator& operator=(const CachingAllocator&) = delete;

  // A block of at least `bytes` usable in the order of `stream`.
  void* allocate(size_t bytes, void* stream);
  // Returns a block to the pool of the stream it was allocated on. Throws for a pointer this
  // allocator did not hand out (or already got back).
  void deallocate(void* ptr);
  // Gives every wholly free segment back to the raw backend.
  void empty_cache();

  // in_use counts whole blocks (requests rounded up, plus any unsplit remainder); in_use +
  // cached is the memory taken from the raw backend.
  AllocatorStats stats() const;
  void reset_peak();
  // Raw allocations made so far (a steady-state training step makes none).
  size_t raw_allocations() const;
  // The size a request of `bytes` is rounded up to.
  static size_t round_size(size_t bytes);

 private:
  struct Block {
    void* stream;
    char* ptr;
    size_t size;
    bool small;
    bool allocated = false;
    Block* prev = nullptr;  // neighbours within the segment (nullptr at the segment's ends)
    Block* next = nullptr;
  };
  // Ordered by stream, then size, then address: a lower_bound on (stream, size) is the best fit
  // on that stream.
  struct BlockOrder {
    bool operator()(const Block* a, const Block* b) const;
  };
  using FreeSet = std::set<Block*, BlockOrder>;

  FreeSet& pool(bool small) { return small ? small_free_ : large_free_; }
  Block* take_free_block(size_t size, bool small, void* stream);
  void* raw_alloc_with_retry(size_t segment_bytes, size_t requested);
  void release_free_segments();
  void merge_into(Block* block, Block* neighbour);
  std::string describe_state() const;

  RawMemory raw_;
  std::string device_name_;
  mutable std::mutex mutex_;
  FreeSet small_free_;
  FreeSet large_free_;
  std::unordered_map<void*, Block*> handed_out_;
  size_t in_use_ = 0;
  size_t peak_ = 0;
  size_t reserved_ = 0;  // bytes held from the raw backend
  size_t raw_allocations_ = 0;
};

// "1536 bytes (1.50 KiB)"; used by the allocator messages.
std::string format_bytes(size_t bytes);

}  // namespace rg
