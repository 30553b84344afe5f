// CPU emulation of CUDA: running a grid. Blocks run one after another; the threads of a block
// are fibers that run until they reach a barrier (__syncthreads), a warp collective (shuffles,
// __syncwarp, wmma) or the end of the kernel. Only then does the next thread run, so code that
// reads what another thread writes without a barrier in between reads stale or poisoned data,
// and the order in which threads run (forward, reverse, random) decides which.
//
// Settings (environment, read at the first launch):
//   RG_EMU_ORDER=forward|reverse|random  thread and block order (default forward)
//   RG_EMU_SEED=N                        seed of the random order (default 1)
//   RG_EMU_STACK_KB=N                    fiber stack size (default 256, 1024 under ASan)
#pragma once

#include <cstddef>
#include <cstdint>

#include "tests/emu/emu_device.h"

namespace rg_emu {

enum class Order { Forward, Reverse, Random };

struct SchedulerOptions {
  Order order = Order::Forward;
  uint64_t seed = 1;
  size_t stack_bytes = 256 * 1024;
};

// The options from the environment (parsed once), or as set by set_scheduler_options.
const SchedulerOptions& scheduler_options();
void set_scheduler_options(const SchedulerOptions& options);

// Runs body(ctx) as each thread of each block; throws rg_emu::Error (with the kernel's name and
// block) when a thread throws or the block deadlocks. One grid at a time per process.
void run_grid(const char* kernel, dim3 grid, dim3 block, void (*body)(void*), void* ctx);

}  // namespace rg_emu
