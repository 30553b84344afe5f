// Block scheduler of the CUDA emulation (emu_scheduler.h): fibers, the block barrier, warp
// collectives, deadlock reports.
#include "tests/emu/emu_scheduler.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "tests/emu/emu_error.h"
#include "tests/emu/emu_fiber.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define RG_EMU_ASAN 1
#endif

// The coordinates the device code reads (emu_device.h).
uint3 threadIdx{0, 0, 0};
uint3 blockIdx{0, 0, 0};
dim3 blockDim{1, 1, 1};
dim3 gridDim{1, 1, 1};

// Bounds of the static __shared__ variables' section (emu_device.h); weak: a program without
// any has no such section.
extern "C" __attribute__((weak)) unsigned char __start_rg_emu_shared[];
extern "C" __attribute__((weak)) unsigned char __stop_rg_emu_shared[];

namespace rg_emu {

namespace {

enum class State { Ready, AtBarrier, AtWarp, Exited };

struct Fiber {
  FiberContext ctx;
  std::unique_ptr<FiberStack> stack;
  uint3 idx{0, 0, 0};
  unsigned linear = 0;
  State state = State::Ready;
  const char* waits_at = nullptr;  // the collective a waiting thread is in
  void* asan_fake_stack = nullptr;
};

// One warp collective in progress: the lanes of `mask` that have arrived so far.
struct Collective {
  const char* kind = nullptr;
  unsigned mask = 0, arrived = 0;
  WarpRecord records[32];
  WarpCompletion complete = nullptr;
  const void* context = nullptr;
};

struct Scheduler {
  SchedulerOptions options;
  std::vector<Fiber> fibers;  // grows to the largest block; stacks are kept
  unsigned threads = 0;       // of the current block
  unsigned live = 0;          // threads not yet exited
  unsigned at_barrier = 0;
  std::vector<unsigned> ready;
  std::vector<std::vector<Collective>> warps;  // [warp] collectives in progress
  std::vector<unsigned> exited_lanes;           // [warp] lanes that have exited
  FiberContext scheduler_ctx;
  Fiber* current = nullptr;
  std::exception_ptr error;
  bool stacks_dirty = false;  // a block was abandoned (ASan: its stacks keep poisoned frames)
  void (*body)(void*) = nullptr;
  void* body_ctx = nullptr;
  const void* sched_stack_bottom = nullptr;
  size_t sched_stack_size = 0;
  std::mt19937_64 rng;
  uint64_t launches = 0;
};

Scheduler& sched() {
  static Scheduler* s = new Scheduler();  // never destroyed: fibers may outlive static dtors
  return *s;
}

bool options_from_env_done = false;

SchedulerOptions options_from_env() {
  SchedulerOptions o;
#if defined(RG_EMU_ASAN)
  o.stack_bytes = 1024 * 1024;  // ASan's redzones make frames several times larger
#endif
  if (const char* v = std::getenv("RG_EMU_ORDER")) {
    const std::string s(v);
    if (s == "forward") {
      o.order = Order::Forward;
    } else if (s == "reverse") {
      o.order = Order::Reverse;
    } else if (s == "random") {
      o.order = Order::Random;
    } else {
      throw std::invalid_argument("RG_EMU_ORDER=" + s + ": expected forward, reverse or random");
    }
  }
  if (const char* v = std::getenv("RG_EMU_SEED")) o.seed = std::strtoull(v, nullptr, 10);
  if (const char* v = std::getenv("RG_EMU_STACK_KB")) {
    o.stack_bytes = static_cast<size_t>(std::strtoull(v, nullptr, 10)) * 1024;
    if (o.stack_bytes < 16 * 1024) throw std::invalid_argument("RG_EMU_STACK_KB: at least 16");
  }
  return o;
}

// ---- Switching --------------------------------------------------------------------------

// From the scheduler into fiber f; returns when f blocks or exits.
void resume(Scheduler& s, Fiber& f) {
  s.current = &f;
  threadIdx = f.idx;
#if defined(RG_EMU_ASAN)
  void* fake = nullptr;
  __sanitizer_start_switch_fiber(&fake, f.stack->bottom(), f.stack->size());
#endif
  fiber_switch(s.scheduler_ctx, f.ctx);
#if defined(RG_EMU_ASAN)
  __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#endif
  s.current = nullptr;
}

// From the running fiber back to the scheduler; returns when the scheduler resumes it.
void yield(Scheduler& s) {
  Fiber& f = *s.current;
#if defined(RG_EMU_ASAN)
  __sanitizer_start_switch_fiber(&f.asan_fake_stack, s.sched_stack_bottom, s.sched_stack_size);
#endif
  fiber_switch(f.ctx, s.scheduler_ctx);
#if defined(RG_EMU_ASAN)
  __sanitizer_finish_switch_fiber(f.asan_fake_stack, &s.sched_stack_bottom, &s.sched_stack_size);
#endif
}

void release_barrier(Scheduler& s) {
  for (unsigned i = 0; i < s.threads; ++i) {
    if (s.fibers[i].state == State::AtBarrier) {
      s.fibers[i].state = State::Ready;
      s.fibers[i].waits_at = nullptr;
      s.ready.push_back(i);
    }
  }
  s.at_barrier = 0;
}

[[noreturn]] void thread_exit(Scheduler& s) {
  Fiber& f = *s.current;
  f.state = State::Exited;
  s.exited_lanes[f.linear / 32] |= 1u << (f.linear % 32);
  --s.live;
  // Threads that have exited no longer hold up a barrier.
  if (s.at_barrier > 0 && s.at_barrier == s.live) release_barrier(s);
#if defined(RG_EMU_ASAN)
  // The frames of this fiber never return (it is left for good), so their redzones would stay
  // poisoned in the shadow of the stack, for the next fiber that runs on it. The frames still
  // live are at the top of the stack: unpoison from a little below this one up to the top.
  auto* top = static_cast<char*>(f.stack->bottom()) + f.stack->size();
  auto* low = std::max(static_cast<char*>(__builtin_frame_address(0)) - 16384,
                       static_cast<char*>(f.stack->bottom()));
  __asan_unpoison_memory_region(low, static_cast<size_t>(top - low));
  __sanitizer_start_switch_fiber(nullptr, s.sched_stack_bottom, s.sched_stack_size);
#endif
  fiber_switch(f.ctx, s.scheduler_ctx);
  std::abort();  // never resumed
}

void fiber_entry() {
  Scheduler& s = sched();
#if defined(RG_EMU_ASAN)
  __sanitizer_finish_switch_fiber(nullptr, &s.sched_stack_bottom, &s.sched_stack_size);
#endif
  try {
    s.body(s.body_ctx);
  } catch (...) {
    if (!s.error) s.error = std::current_exception();
  }
  thread_exit(s);
}

// ---- Errors -----------------------------------------------------------------------------

std::string coords(const uint3& v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "(%u,%u,%u)", v.x, v.y, v.z);
  return buf;
}

std::string hex(unsigned v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

std::string deadlock_report(const Scheduler& s) {
  std::string msg = "deadlock in block " + coords(blockIdx) + ": " + std::to_string(s.live) +
                    " of " + std::to_string(s.threads) + " threads wait and none can go on";
  if (s.at_barrier > 0) {
    msg += "; " + std::to_string(s.at_barrier) + " at __syncthreads";
  }
  for (size_t w = 0; w < s.warps.size(); ++w) {
    for (const Collective& c : s.warps[w]) {
      msg += "; warp " + std::to_string(w) + " at " + c.kind + " with mask " + hex(c.mask) +
             ", lanes arrived " + hex(c.arrived);
      unsigned exited = 0;
      for (int lane = 0; lane < 32; ++lane) {
        const unsigned t = static_cast<unsigned>(w) * 32 + lane;
        if ((c.mask & (1u << lane)) && t < s.threads && s.fibers[t].state == State::Exited) {
          exited |= 1u << lane;
        }
      }
      if (exited) msg += " (lanes " + hex(exited) + " have exited)";
    }
  }
  return msg;
}

}  // namespace

// ---- Device-side entry points (emu_device.h) --------------------------------------------

void fail(const char* what) { throw Error(what); }

unsigned lane_id() {
  Scheduler& s = sched();
  if (s.current == nullptr) fail("a device function was called outside a kernel");
  return s.current->linear % 32;
}

void syncthreads(const char* what) {
  Scheduler& s = sched();
  if (s.current == nullptr) fail("__syncthreads outside a kernel");
  Fiber& f = *s.current;
  f.state = State::AtBarrier;
  f.waits_at = what;
  if (++s.at_barrier == s.live) release_barrier(s);
  yield(s);
}

void warp_collective(const char* kind, unsigned mask, const WarpRecord& mine,
                     WarpCompletion complete, const void* context) {
  Scheduler& s = sched();
  if (s.current == nullptr) fail("a warp collective outside a kernel");
  Fiber& f = *s.current;
  const unsigned warp = f.linear / 32, lane = f.linear % 32;
  const unsigned first = warp * 32;
  const unsigned lanes = std::min(32u, s.threads - first);
  const unsigned existing = lanes == 32 ? 0xffffffffu : ((1u << lanes) - 1u);
  auto where = [&] {
    return std::string(kind) + " in block " + coords(blockIdx) + ", thread " + coords(f.idx) +
           " (warp " + std::to_string(warp) + ", lane " + std::to_string(lane) + ")";
  };
  if (!(mask & (1u << lane))) {
    throw Error(where() + ": the calling lane is not in the mask " + hex(mask));
  }
  if (mask & ~existing) {
    throw Error(where() + ": the mask " + hex(mask) + " names lanes the block does not have (" +
                std::to_string(s.threads) + " threads)");
  }
  std::vector<Collective>& pending = s.warps[warp];
  Collective* c = nullptr;
  for (Collective& p : pending) {
    if (p.mask == mask) {
      c = &p;
    } else if (p.mask & mask) {
      throw Error(where() + " with mask " + hex(mask) + " while lanes " + hex(p.arrived) +
                  " wait in " + p.kind + " with the overlapping mask " + hex(p.mask));
    }
  }
  if (c == nullptr) {
    pending.emplace_back();
    c = &pending.back();
    c->kind = kind;
    c->mask = mask;
    c->complete = complete;
    c->context = context;
  } else if (c->kind != kind && std::strcmp(c->kind, kind) != 0) {
    throw Error(where() + ": lanes " + hex(c->arrived) + " of the same mask wait in " + c->kind);
  }
  if (const unsigned gone = mask & s.exited_lanes[warp]) {
    throw Error(where() + ": lanes " + hex(gone) + " of the mask " + hex(mask) +
                " have already exited");
  }
  c->records[lane] = mine;
  c->arrived |= 1u << lane;
  f.state = State::AtWarp;
  f.waits_at = kind;
  if (c->arrived == c->mask) {
    for (int l = 0; l < 32; ++l) {
      if (mask & (1u << l)) {
        Fiber& lf = s.fibers[first + l];
        lf.state = State::Ready;
        lf.waits_at = nullptr;
        s.ready.push_back(first + l);
      }
    }
    // The completion reads every lane's arguments and writes every lane's result while all of
    // them are suspended (an error in it ends the block like any other).
    if (c->complete != nullptr) c->complete(c->records, mask, c->context);
    pending.erase(pending.begin() + (c - pending.data()));
  }
  yield(s);
}

void syncwarp(unsigned mask) { warp_collective("__syncwarp", mask, WarpRecord{}, nullptr, nullptr); }

// ---- Options ----------------------------------------------------------------------------

const SchedulerOptions& scheduler_options() {
  Scheduler& s = sched();
  if (!options_from_env_done) {
    s.options = options_from_env();
    options_from_env_done = true;
  }
  return s.options;
}

void set_scheduler_options(const SchedulerOptions& options) {
  sched().options = options;
  options_from_env_done = true;
}

// ---- Grids ------------------------------------------------------------------------------

namespace {

// Fills every static __shared__ variable with 0xFF bytes. Not instrumented: should ASan ever
// put redzones between the section's variables, writing them is harmless.
__attribute__((no_sanitize_address)) void poison_shared_memory() {
  if (__start_rg_emu_shared == nullptr || __stop_rg_emu_shared == nullptr) return;
  volatile unsigned char* p = __start_rg_emu_shared;
  for (; p < __stop_rg_emu_shared; ++p) *p = 0xFF;
}

void order_round(Scheduler& s, std::vector<unsigned>& round) {
  switch (s.options.order) {
    case Order::Forward:
      if (!std::is_sorted(round.begin(), round.end())) std::sort(round.begin(), round.end());
      break;
    case Order::Reverse:
      std::sort(round.begin(), round.end(), std::greater<unsigned>());
      break;
    case Order::Random:
      std::shuffle(round.begin(), round.end(), s.rng);
      break;
  }
}

void run_block(Scheduler& s, const char* kernel) {
  for (unsigned i = 0; i < s.threads; ++i) {
    Fiber& f = s.fibers[i];
    if (!f.stack) f.stack = std::make_unique<FiberStack>(s.options.stack_bytes);
#if defined(RG_EMU_ASAN)
    if (s.stacks_dirty) __asan_unpoison_memory_region(f.stack->bottom(), f.stack->size());
#endif
    fiber_init(f.ctx, *f.stack, &fiber_entry);
    f.linear = i;
    f.idx = uint3{i % blockDim.x, (i / blockDim.x) % blockDim.y, i / (blockDim.x * blockDim.y)};
    f.state = State::Ready;
    f.waits_at = nullptr;
    f.asan_fake_stack = nullptr;
  }
  s.stacks_dirty = false;
  s.live = s.threads;
  s.at_barrier = 0;
  s.warps.assign((s.threads + 31) / 32, {});
  s.exited_lanes.assign((s.threads + 31) / 32, 0u);
  s.ready.clear();
  for (unsigned i = 0; i < s.threads; ++i) s.ready.push_back(i);
  std::vector<unsigned> round;
  while (s.live > 0) {
    if (s.ready.empty()) {
      s.stacks_dirty = true;
      throw Error(std::string(kernel) + ": " + deadlock_report(s));
    }
    round.swap(s.ready);
    s.ready.clear();
    order_round(s, round);
    for (unsigned i : round) {
      resume(s, s.fibers[i]);
      if (s.error) {
        s.stacks_dirty = true;
        std::exception_ptr e = s.error;
        s.error = nullptr;
        try {
          std::rethrow_exception(e);
        } catch (const std::exception& ex) {
          throw Error(std::string(kernel) + ", block " + coords(blockIdx) + ", thread " +
                      coords(s.fibers[i].idx) + ": " + ex.what());
        }
      }
    }
  }
}

}  // namespace

void run_grid(const char* kernel, dim3 grid, dim3 block, void (*body)(void*), void* ctx) {
  Scheduler& s = sched();
  scheduler_options();
  if (s.current != nullptr) fail("a kernel launch from device code (not emulated)");
  gridDim = grid;
  blockDim = block;
  s.threads = block.x * block.y * block.z;
  if (s.fibers.size() < s.threads) s.fibers.resize(s.threads);
  s.body = body;
  s.body_ctx = ctx;
  // A different permutation for every launch, the same ones in every run of the same seed.
  s.rng.seed(s.options.seed * 0x9E3779B97F4A7C15ull + s.launches++);
  const uint64_t blocks = uint64_t{grid.x} * grid.y * grid.z;
  std::vector<uint64_t> order;
  if (s.options.order != Order::Forward) {
    order.resize(blocks);
    for (uint64_t b = 0; b < blocks; ++b) order[b] = b;
    if (s.options.order == Order::Reverse) {
      std::reverse(order.begin(), order.end());
    } else {
      std::shuffle(order.begin(), order.end(), s.rng);
    }
  }
  poison_shared_memory();
  for (uint64_t n = 0; n < blocks; ++n) {
    const uint64_t b = order.empty() ? n : order[n];
    blockIdx = uint3{static_cast<unsigned>(b % grid.x), static_cast<unsigned>(b / grid.x % grid.y),
                     static_cast<unsigned>(b / (uint64_t{grid.x} * grid.y))};
    run_block(s, kernel);
  }
  threadIdx = uint3{0, 0, 0};
}

}  // namespace rg_emu
