// The caching logic of the CUDA allocator, driven by a fake raw backend on the host (no GPU):
// reuse, stream separation, splitting and merging, rounding, the steady state of a training
// loop, out-of-memory recovery and its message, and the statistics.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "engine/caching_allocator.h"
#include "engine/error.h"

namespace rg {
namespace {

constexpr size_t kKiB = size_t{1} << 10;
constexpr size_t kMiB = size_t{1} << 20;

// Host memory standing in for cudaMalloc: 256-byte aligned, with an optional byte limit, counting
// what it hands out.
struct FakeRawMemory {
  size_t limit = SIZE_MAX;
  size_t live_bytes = 0;
  size_t allocs = 0;
  size_t frees = 0;
  std::unordered_map<void*, size_t> live;

  RawMemory backend() {
    RawMemory raw;
    raw.alloc = [this](size_t bytes) -> void* {
      if (live_bytes + bytes > limit) return nullptr;
      void* p = std::aligned_alloc(256, bytes);
      if (p == nullptr) return nullptr;
      live.emplace(p, bytes);
      live_bytes += bytes;
      ++allocs;
      return p;
    };
    raw.free = [this](void* p) {
      const auto it = live.find(p);
      ASSERT_NE(it, live.end()) << "raw free of a pointer the fake backend did not hand out";
      live_bytes -= it->second;
      live.erase(it);
      ++frees;
      std::free(p);
    };
    raw.describe = [] { return std::string("fake device with a byte limit"); };
    return raw;
  }
};

void* const kStreamA = reinterpret_cast<void*>(0x1000);
void* const kStreamB = reinterpret_cast<void*>(0x2000);

char* as_bytes(void* p) {
  return static_cast<char*>(p);
}

TEST(CachingAllocator, ReusesAFreedBlockOnTheSameStream) {
  FakeRawMemory raw;
  CachingAllocator alloc(raw.backend(), "fake:0");
  void* p = alloc.allocate(1000, kStreamA);
  alloc.deallocate(p);
  void* q = alloc.allocate(1000, kStreamA);
  EXPECT_EQ(q, p);
  void* big = alloc.allocate(5 * kMiB, kStreamA);
  alloc.deallocate(big);
  EXPECT_EQ(alloc.allocate(5 * kMiB, kStreamA), big);
  EXPECT_EQ(raw.allocs, 2u);
  EXPECT_EQ(alloc.raw_allocations(), 2u);
}

TEST(CachingAllocator, DoesNotReuseBlocksAcrossStreams) {
  FakeRawMemory raw;
  CachingAllocator alloc(raw.backend(), "fake:0");
  void* p = alloc.allocate(1000, kStreamA);
  alloc.deallocate(p);
  // Stream B's kernels are not ordered after stream A's: A's block must not be handed to B.
  void* q = alloc.allocate(1000, kStreamB);
  EXPECT_NE(q, p);
  EXPECT_EQ(raw.allocs, 2u);
  // Both streams reuse their own blocks afterwards.
  alloc.deallocate(q);
  EXPECT_EQ(alloc.allocate(1000, kStreamA), p);
  EXPECT_EQ(alloc.allocate(1000, kStreamB), q);
  EXPECT_EQ(raw.allocs, 2u);
}

TEST(CachingAllocator, RoundsSizesTo512Bytes) {
  EXPECT_EQ(CachingAllocator::round_size(0), 512u);
  EXPECT_EQ(CachingAllocator::round_size(1), 512u);
  EXPECT_EQ(CachingAllocator::round_size(512), 512u);
  EXPECT_EQ(CachingAllocator::round_size(513), 1024u);
  FakeRawMemory raw;
  CachingAllocator alloc(raw.backend(), "fake:0");
  alloc.allocate(1, kStreamA);
  EXPECT_EQ(alloc.stats().in_use, 512u);
  alloc.allocate(513, kStreamA);
  EXPECT_EQ(alloc.stats().in_use, 512u + 1024u);
  alloc.allocate(0, kStreamA);
  EXPECT_EQ(alloc.stats().in_use, 2 * 512u + 1024u);
}

TEST(CachingAllocator, SegmentSizes) {
  FakeRawMemory raw;
  CachingAllocator alloc(raw.backend(), "fake:0");
  alloc.allocate(1000, kStreamA);  // small: one 2 MiB segment
  EXPECT_EQ(raw.live_bytes, 2 * kMiB);
  alloc.allocate(kMiB, kStreamA);  // still small, fits the same segment
  EXPECT_EQ(raw.live_bytes, 2 * kMiB);
  alloc.allocate(kMiB + 1, kStreamA);  // large: rounded up to 2 MiB
  EXPECT_EQ(raw.live_bytes, 4 * kMiB);
  alloc.allocate(11 * kMiB, kStreamA);  // large: 12 MiB
  EXPECT_EQ(raw.live_bytes, 16 * kMiB);
  EXPECT_EQ(raw.allocs, 3u);
}

TEST(CachingAllocator, PointersAre256ByteAligned) {
  FakeRawMemory raw;
  CachingAllocator alloc(raw.backend(), "fake:0");
  const size_t sizes[] = {1,    100,  255,   257,      511,      513,
                          1000, 4097, 70000, kMiB - 1, kMiB + 3, 3 * kMiB + 7};
  std::vector<void*> held;
  for (int round = 0; round < 3; ++round) {
    for (size_t s : sizes) {
      void* p = alloc.allocate(s, kStreamA);
      EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 256, 0u) << "size " << s;
      held.push_back(p);
    }
    // Free every other block so later rounds land in split and merged blocks.
    for (size_t i = 0; i < held.size(); i += 2) {
      if (held[i] != nullptr) alloc.deallocate(held[i]);
      held[i] = nullptr;
    }
  }
}

TEST(CachingAllocator, SplitsAndCoalesces) {
  FakeRawMemory raw;
  CachingAllocator alloc(raw.backend(), "fake:0");
  void* a = alloc.allocate(1000, kStreamA);
  void* b = alloc.allocate(1000, kStreamA);
  void* c = alloc.allocate(1000, kStreamA);
  // Carved one after another from one segment.
  EXPECT_EQ(as_bytes(b), as_bytes(a) + 1024);
  EXPECT_EQ(as_bytes(c), as_bytes(b) + 1024);
  EXPECT_EQ(raw.allocs, 1u);
  // Best fit: the 1 KiB hole left by b, not the big tail of the segment.
  alloc.deallocate(b);
  EXPECT_EQ(alloc.allocate(600, kStreamA), b);
  // Free the middle first, then its neighbours: all merge back into the whole segment, so two
  // 1 MiB blocks fit again, starting at the segment base.
  alloc.deallocate(b);
  alloc.deallocate(a);
  alloc.deallocate(c);
  EXPECT_EQ(alloc.stats().cached, 2 * kMiB);
  void* first = alloc.allocate(kMiB, kStreamA);
  void* second = alloc.allocate(kMiB, kStreamA);
  EXPECT_EQ(first, a);
  EXPECT_EQ(as_bytes(second), as_bytes(a) + kMiB);
  EXPECT_EQ(raw.allocs, 1u);
}

TEST(CachingAllocator, LargeBlocksSplitOnlyWhenTheRestIsLarge) {
  FakeRawMemory raw;
  CachingAllocator alloc(raw.backend(), "fake:0");
  // 3 MiB from a 4 MiB segment: the 1 MiB rest stays attached.
  void* p = alloc.allocate(3 * kMiB, kStreamA);
  EXPECT_EQ(alloc.stats().in_use, 4 * kMiB);
  EXPECT_EQ(alloc.stats().cached, 0u);
  alloc.deallocate(p);
  // 2.5 MiB from that cached segment: the 1.5 MiB rest is split off and serves the next one.
  void* q = alloc.allocate(2 * kMiB + 512 * kKiB, kStreamA);
  EXPECT_EQ(q, p);
  EXPECT_EQ(alloc.stats().in_use, 2 * kMiB + 512 * kKiB);
  void* r = alloc.allocate(kMiB + 256 * kKiB, kStreamA);
  EXPECT_EQ(as_bytes(r), as_bytes(q) + 2 * kMiB + 512 * kKiB);
  EXPECT_EQ(raw.allocs, 1u);
}

TEST(CachingAllocator, SmallAndLargePoolsDoNotMix) {
  FakeRawMemory raw;
  CachingAllocator alloc(raw.backend(), "fake:0");
  alloc.deallocate(alloc.allocate(4 * kMiB, kStreamA));
  alloc.allocate(1000, kStreamA);  // small: a 2 MiB segment of its own
  EXPECT_EQ(raw.allocs, 2u);
  alloc.deallocate(alloc.allocate(kMiB / 2, kStreamB));
  alloc.allocate(2 * kMiB, kStreamB);  // large: does not take the small segment of stream B
  EXPECT_EQ(raw.allocs, 4u);
}

TEST(CachingAllocator, SteadyStateMakesNoRawAllocations) {
  FakeRawMemory raw;
  CachingAllocator alloc(raw.backend(), "fake:0");
  // A training step in miniature: activations of several sizes kept for backward, temporaries
  // freed at once, gradients, then everything released in a different order.
  const size_t activations[] = {16 * kMiB, 700 * kKiB,    8 * kMiB, 3000,    4 * kMiB + 1,
                                96,        12 * kMiB + 5, kMiB,     2 * kMiB};
  size_t raw_after_first = 0;
  for (int step = 0; step < 10; ++step) {
    std::vector<void*> saved;
    for (size_t s : activations) {
      saved.push_back(alloc.allocate(s, kStreamA));
      void* temporary = alloc.allocate(s / 3 + 1, kStreamA);
      alloc.deallocate(temporary);
    }
    std::vector<void*> grads;
    for (size_t i = saved.size(); i-- > 0;) {
      grads.push_back(alloc.allocate(activations[i], kStreamA));
      alloc.deallocate(saved[i]);
      if (i % 2 == 0) {
        alloc.deallocate(grads.back());
        grads.pop_back();
      }
    }
    for (void* g : grads) alloc.deallocate(g);
    EXPECT_EQ(alloc.stats().in_use, 0u);
    if (step == 0) {
      raw_after_first = alloc.raw_allocations();
    } else {
      EXPECT_EQ(alloc.raw_allocations(), raw_after_first) << "step " << step;
    }
  }
  EXPECT_EQ(raw.frees, 0u);
}

TEST(CachingAllocator, OutOfMemoryReleasesTheCacheAndRetries) {
  FakeRawMemory raw;
  raw.limit = 8 * kMiB;
  CachingAllocator alloc(raw.backend(), "fake:0");
  // Stream A caches 4 MiB and part of a small segment.
  alloc.deallocate(alloc.allocate(4 * kMiB, kStreamA));
  void* kept = alloc.allocate(1000, kStreamA);
  EXPECT_EQ(alloc.stats().cached, 4 * kMiB + 2 * kMiB - 1024);
  // Stream B needs 6 MiB: only fits once A's wholly free segment is released.
  void* p = alloc.allocate(6 * kMiB, kStreamB);
  EXPECT_NE(p, nullptr);
  EXPECT_EQ(raw.frees, 1u);
  EXPECT_EQ(raw.live_bytes, 8 * kMiB);
  EXPECT_EQ(alloc.stats().in_use, 6 * kMiB + 1024);
  // The segment with a live block was kept.
  alloc.deallocate(kept);
  EXPECT_EQ(alloc.stats().cached, 2 * kMiB);
}

TEST(CachingAllocator, OutOfMemoryMessageSaysWhatWasAskedAndWhatIsHeld) {
  FakeRawMemory raw;
  raw.limit = 8 * kMiB;
  CachingAllocator alloc(raw.backend(), "fake:3");
  void* held = alloc.allocate(4 * kMiB, kStreamA);
  alloc.deallocate(alloc.allocate(1000, kStreamA));  // 2 MiB cached
  try {
    alloc.allocate(5 * kMiB, kStreamA);
    FAIL() << "expected an out-of-memory error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("out of memory on fake:3"), std::string::npos) << msg;
    EXPECT_NE(msg.find("asked for 5242880 bytes (5.00 MiB)"), std::string::npos) << msg;
    EXPECT_NE(msg.find("4194304 bytes (4.00 MiB) in use"), std::string::npos) << msg;
    // The retry released the cached small segment before giving up.
    EXPECT_NE(msg.find("0 bytes cached"), std::string::npos) << msg;
    EXPECT_NE(msg.find("peak 4195328 bytes"), std::string::npos) << msg;
    EXPECT_NE(msg.find("fake device with a byte limit"), std::string::npos) << msg;
  }
  // The allocator is still usable after the failure.
  EXPECT_EQ(alloc.stats().in_use, 4 * kMiB);
  alloc.deallocate(held);
  EXPECT_NE(alloc.allocate(5 * kMiB, kStreamA), nullptr);
}

TEST(CachingAllocator, Statistics) {
  FakeRawMemory raw;
  CachingAllocator alloc(raw.backend(), "fake:0");
  void* a = alloc.allocate(3 * kMiB, kStreamA);  // 4 MiB block (unsplit rest)
  void* b = alloc.allocate(1000, kStreamA);      // 1 KiB of a 2 MiB segment
  AllocatorStats s = alloc.stats();
  EXPECT_EQ(s.in_use, 4 * kMiB + 1024);
  EXPECT_EQ(s.peak, 4 * kMiB + 1024);
  EXPECT_EQ(s.cached, 2 * kMiB - 1024);
  EXPECT_EQ(s.raw_allocations, 2u);
  alloc.deallocate(a);
  s = alloc.stats();
  EXPECT_EQ(s.in_use, 1024u);
  EXPECT_EQ(s.peak, 4 * kMiB + 1024);
  EXPECT_EQ(s.cached, 6 * kMiB - 1024);
  alloc.reset_peak();
  EXPECT_EQ(alloc.stats().peak, 1024u);
  alloc.deallocate(b);
  EXPECT_EQ(alloc.stats().in_use, 0u);
  EXPECT_EQ(alloc.stats().peak, 1024u);
  EXPECT_EQ(alloc.stats().cached, 6 * kMiB);
}

TEST(CachingAllocator, EmptyCacheReleasesOnlyWhollyFreeSegments) {
  FakeRawMemory raw;
  CachingAllocator alloc(raw.backend(), "fake:0");
  void* a = alloc.allocate(1000, kStreamA);
  alloc.deallocate(alloc.allocate(1000, kStreamA));
  alloc.deallocate(alloc.allocate(6 * kMiB, kStreamA));
  alloc.deallocate(alloc.allocate(1000, kStreamB));
  EXPECT_EQ(raw.live_bytes, 10 * kMiB);
  alloc.empty_cache();
  // Stream A's small segment still holds a.
  EXPECT_EQ(raw.live_bytes, 2 * kMiB);
  EXPECT_EQ(raw.frees, 2u);
  EXPECT_EQ(alloc.stats().cached, 2 * kMiB - 1024);
  alloc.deallocate(a);
  alloc.empty_cache();
  EXPECT_EQ(raw.live_bytes, 0u);
  EXPECT_EQ(alloc.stats().cached, 0u);
  // New requests after emptying go to the raw backend again.
  alloc.allocate(1000, kStreamA);
  EXPECT_EQ(alloc.raw_allocations(), 4u);
}

TEST(CachingAllocator, RejectsForeignAndDoubleFrees) {
  FakeRawMemory raw;
  CachingAllocator alloc(raw.backend(), "fake:0");
  alloc.deallocate(nullptr);
  void* p = alloc.allocate(1000, kStreamA);
  int on_stack = 0;
  EXPECT_THROW(alloc.deallocate(&on_stack), Error);
  alloc.deallocate(p);
  EXPECT_THROW(alloc.deallocate(p), Error);
}

TEST(CachingAllocator, DestructionReturnsEverySegment) {
  FakeRawMemory raw;
  {
    CachingAllocator alloc(raw.backend(), "fake:0");
    alloc.allocate(1000, kStreamA);
    alloc.allocate(3000, kStreamA);
    alloc.deallocate(alloc.allocate(20 * kMiB, kStreamB));
    alloc.allocate(3 * kMiB, kStreamB);
  }
  EXPECT_EQ(raw.live_bytes, 0u);
  EXPECT_EQ(raw.frees, raw.allocs);
}

TEST(CachingAllocator, ConcurrentUseFromSeveralThreads) {
  FakeRawMemory raw;
  std::mutex raw_mutex;  // the fake backend itself is not thread-safe
  RawMemory backend = raw.backend();
  RawMemory locked;
  locked.alloc = [&](size_t bytes) {
    std::lock_guard<std::mutex> lock(raw_mutex);
    return backend.alloc(bytes);
  };
  locked.free = [&](void* p) {
    std::lock_guard<std::mutex> lock(raw_mutex);
    backend.free(p);
  };
  CachingAllocator alloc(locked, "fake:0");
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&alloc, t] {
      void* stream = reinterpret_cast<void*>(static_cast<uintptr_t>(0x100 * (t + 1)));
      std::vector<void*> held;
      for (int i = 0; i < 2000; ++i) {
        held.push_back(alloc.allocate(static_cast<size_t>((i * 7919 + t) % 300000), stream));
        if (held.size() > 8) {
          alloc.deallocate(held.front());
          held.erase(held.begin());
        }
      }
      for (void* p : held) alloc.deallocate(p);
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(alloc.stats().in_use, 0u);
  EXPECT_EQ(alloc.stats().cached, raw.live_bytes);
}

}  // namespace
}  // namespace rg
