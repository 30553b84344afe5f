// CPU emulation of CUDA: fibers, i.e. stacks and the switch between them. The scheduler
// (emu_scheduler.cpp) runs every thread of a block as one fiber and switches at barriers and
// warp collectives: millions of switches per test run, so the switch is a handful of
// instructions that save the callee-saved registers (x86-64: hand-written below; elsewhere
// ucontext, correct but slower: swapcontext makes a signal-mask system call per switch).
#pragma once

#include <cstddef>

namespace rg_emu {

// A fiber's stack: mmap'd with a guard page below it, so an overflow faults at once instead of
// corrupting the neighbouring fiber's stack.
class FiberStack {
 public:
  explicit FiberStack(size_t bytes);
  ~FiberStack();
  FiberStack(const FiberStack&) = delete;
  FiberStack& operator=(const FiberStack&) = delete;
  void* bottom() const { return base_; }  // lowest usable address
  size_t size() const { return size_; }

 private:
  void* mapping_ = nullptr;
  size_t mapping_bytes_ = 0;
  void* base_ = nullptr;
  size_t size_ = 0;
};

// A suspended execution context: where to resume it.
struct FiberContext {
  void* sp = nullptr;  // x86-64: the saved stack pointer
  void* uc = nullptr;  // ucontext fallback: a ucontext_t
};

// Prepares `ctx` to start entry() on `stack` at the next switch to it. entry must never return
// (it switches away for good instead).
void fiber_init(FiberContext& ctx, FiberStack& stack, void (*entry)());
// Saves the running context in `from` and resumes `to`.
void fiber_switch(FiberContext& from, FiberContext& to);
// Frees what fiber_init allocated for `ctx` (the ucontext fallback's state).
void fiber_release(FiberContext& ctx);

}  // namespace rg_emu
