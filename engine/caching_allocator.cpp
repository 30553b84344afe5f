#include "engine/caching_allocator.h"

#include <algorithm>
#include <cstdio>
#include <utility>
#include <vector>

#include "engine/error.h"

namespace rg {

namespace {

size_t round_up(size_t value, size_t multiple) {
  return (value + multiple - 1) / multiple * multiple;
}

}  // namespace

std::string format_bytes(size_t bytes) {
  static const char* const kUnits[] = {"KiB", "MiB", "GiB", "TiB"};
  std::string out = std::to_string(bytes) + " bytes";
  if (bytes < 1024) return out;
  double scaled = static_cast<double>(bytes) / 1024.0;
  int unit = 0;
  while (scaled >= 1024.0 && unit < 3) {
    scaled /= 1024.0;
    ++unit;
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), " (%.2f %s)", scaled, kUnits[unit]);
  return out + buf;
}

bool CachingAllocator::BlockOrder::operator()(const Block* a, const Block* b) const {
  const auto sa = reinterpret_cast<uintptr_t>(a->stream);
  const auto sb = reinterpret_cast<uintptr_t>(b->stream);
  if (sa != sb) return sa < sb;
  if (a->size != b->size) return a->size < b->size;
  return reinterpret_cast<uintptr_t>(a->ptr) < reinterpret_cast<uintptr_t>(b->ptr);
}

CachingAllocator::CachingAllocator(RawMemory raw, std::string device_name)
    : raw_(std::move(raw)), device_name_(std::move(device_name)) {
  RG_CHECK(raw_.alloc && raw_.free, "CachingAllocator for ", device_name_,
           ": the raw backend needs both alloc and free");
}

CachingAllocator::~CachingAllocator() {
  std::vector<Block*> heads;
  for (Block* b : small_free_) {
    if (b->prev == nullptr) heads.push_back(b);
  }
  for (Block* b : large_free_) {
    if (b->prev == nullptr) heads.push_back(b);
  }
  for (const auto& [ptr, b] : handed_out_) {
    if (b->prev == nullptr) heads.push_back(b);
  }
  for (Block* head : heads) {
    raw_.free(head->ptr);
    for (Block* b = head; b != nullptr;) {
      Block* next = b->next;
      delete b;
      b = next;
    }
  }
}

size_t CachingAllocator::round_size(size_t bytes) {
  return bytes == 0 ? kRounding : round_up(bytes, kRounding);
}

CachingAllocator::Block* CachingAllocator::take_free_block(size_t size, bool small, void* stream) {
  FreeSet& free_set = pool(small);
  Block key{stream, nullptr, size, small};
  const auto it = free_set.lower_bound(&key);
  if (it == free_set.end() || (*it)->stream != stream) return nullptr;
  Block* block = *it;
  free_set.erase(it);
  return block;
}

void* CachingAllocator::raw_alloc_with_retry(size_t segment_bytes, size_t requested) {
  void* ptr = raw_.alloc(segment_bytes);
  if (ptr != nullptr) return ptr;
  // Cached segments of other streams (or too small for this request) may be what stands in the
  // way; give them all back and try once more.
  release_free_segments();
  ptr = raw_.alloc(segment_bytes);
  if (ptr != nullptr) return ptr;
  RG_FAIL("out of memory on ", device_name_, ": asked for ", format_bytes(requested),
          " (a segment of ", format_bytes(segment_bytes), ") after releasing the cache; ",
          describe_state());
}

std::string CachingAllocator::describe_state() const {
  std::string out = format_bytes(in_use_) + " in use by tensors, " +
                    format_bytes(reserved_ - in_use_) + " cached by the allocator, peak " +
                    format_bytes(peak_);
  if (raw_.describe) {
    const std::string extra = raw_.describe();
    if (!extra.empty()) out += "; " + extra;
  }
  return out;
}

void* CachingAllocator::allocate(size_t bytes, void* stream) {
  const size_t size = round_size(bytes);
  RG_CHECK(size >= bytes, "allocation of ", bytes, " bytes on ", device_name_, ": size overflows");
  const bool small = size <= kSmallRequest;
  std::lock_guard<std::mutex> lock(mutex_);
  Block* block = take_free_block(size, small, stream);
  if (block == nullptr) {
    const size_t segment = small ? kSmallSegment : round_up(size, kLargeSegmentRounding);
    RG_CHECK(segment >= size, "allocation of ", bytes, " bytes on ", device_name_,
             ": size overflows");
    char* base = static_cast<char*>(raw_alloc_with_retry(segment, bytes));
    ++raw_allocations_;
    reserved_ += segment;
    block = new Block{stream, base, segment, small};
  }
  // Split off the rest when it is worth keeping as a block of its own; a large-pool remainder
  // of 1 MiB or less stays attached (it could only serve small requests, which it must not).
  const size_t rest = block->size - size;
  const bool split = small ? rest >= kRounding : rest > kSmallRequest;
  if (split) {
    Block* remainder = new Block{stream, block->ptr + size, rest, small};
    remainder->prev = block;
    remainder->next = block->next;
    if (block->next != nullptr) block->next->prev = remainder;
    block->next = remainder;
    block->size = size;
    pool(small).insert(remainder);
  }
  block->allocated = true;
  handed_out_.emplace(block->ptr, block);
  in_use_ += block->size;
  peak_ = std::max(peak_, in_use_);
  return block->ptr;
}

void CachingAllocator::merge_into(Block* block, Block* neighbour) {
  // `neighbour` is free and adjacent to `block`; it leaves the free set and is absorbed.
  pool(neighbour->small).erase(neighbour);
  if (neighbour == block->prev) {
    block->ptr = neighbour->ptr;
    block->prev = neighbour->prev;
    if (block->prev != nullptr) block->prev->next = block;
  } else {
    block->next = neighbour->next;
    if (block->next != nullptr) block->next->prev = block;
  }
  block->size += neighbour->size;
  delete neighbour;
}

void CachingAllocator::deallocate(void* ptr) {
  if (ptr == nullptr) return;
  std::lock_guard<std::mutex> lock(mutex_);
  const auto it = handed_out_.find(ptr);
  RG_CHECK(it != handed_out_.end(), "CachingAllocator on ", device_name_, ": freeing ", ptr,
           ", which this allocator did not hand out or already got back");
  Block* block = it->second;
  handed_out_.erase(it);
  block->allocated = false;
  in_use_ -= block->size;
  if (block->prev != nullptr && !block->prev->allocated) merge_into(block, block->prev);
  if (block->next != nullptr && !block->next->allocated) merge_into(block, block->next);
  pool(block->small).insert(block);
}

void CachingAllocator::release_free_segments() {
  for (FreeSet* free_set : {&small_free_, &large_free_}) {
    for (auto it = free_set->begin(); it != free_set->end();) {
      Block* block = *it;
      if (block->prev == nullptr && block->next == nullptr) {
        raw_.free(block->ptr);
        reserved_ -= block->size;
        delete block;
        it = free_set->erase(it);
      } else {
        ++it;
      }
    }
  }
}

void CachingAllocator::empty_cache() {
  std::lock_guard<std::mutex> lock(mutex_);
  release_free_segments();
}

AllocatorStats CachingAllocator::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  AllocatorStats s;
  s.in_use = in_use_;
  s.peak = peak_;
  s.cached = reserved_ - in_use_;
  s.raw_allocations = raw_allocations_;
  return s;
}

void CachingAllocator::reset_peak() {
  std::lock_guard<std::mutex> lock(mutex_);
  peak_ = in_use_;
}

size_t CachingAllocator::raw_allocations() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return raw_allocations_;
}

}  // namespace rg
