// Fiber stacks and switches (emu_fiber.h).
#include "tests/emu/emu_fiber.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

namespace rg_emu {

FiberStack::FiberStack(size_t bytes) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  size_ = (bytes + page - 1) / page * page;
  mapping_bytes_ = size_ + page;
  mapping_ = mmap(nullptr, mapping_bytes_, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (mapping_ == MAP_FAILED) {
    mapping_ = nullptr;
    throw std::runtime_error("CUDA emulation: cannot map a fiber stack of " +
                             std::to_string(mapping_bytes_) + " bytes");
  }
  // Stacks grow down: the guard page sits at the low end.
  if (mprotect(mapping_, page, PROT_NONE) != 0) {
    munmap(mapping_, mapping_bytes_);
    throw std::runtime_error("CUDA emulation: cannot protect a fiber stack's guard page");
  }
  base_ = static_cast<unsigned char*>(mapping_) + page;
}

FiberStack::~FiberStack() {
  if (mapping_ != nullptr) munmap(mapping_, mapping_bytes_);
}

#if defined(__x86_64__)

// rg_emu_fiber_switch(void** save_sp, void* load_sp): pushes the callee-saved registers and the
// SSE/x87 control words on the current stack, stores the stack pointer in *save_sp, switches to
// load_sp and pops the same frame from there. Everything else is caller-saved in the System V
// ABI, so the compiler has already spilled it around this call.
extern "C" void rg_emu_fiber_switch(void** save_sp, void* load_sp);
asm(R"(
  .text
  .p2align 4
  .globl rg_emu_fiber_switch
  .hidden rg_emu_fiber_switch
  .type rg_emu_fiber_switch, @function
rg_emu_fiber_switch:
  .cfi_startproc
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .cfi_endproc
  .size rg_emu_fiber_switch, .-rg_emu_fiber_switch
  .section .note.GNU-stack,"",@progbits
  .text
)");

void fiber_init(FiberContext& ctx, FiberStack& stack, void (*entry)()) {
  // The frame rg_emu_fiber_switch pops, from the lowest address: control words, r15, r14, r13,
  // r12, rbx, rbp, then the return address (entry), then a zero "return address" of entry
  // itself, which ends stack walks. `ret` leaves rsp = 8 mod 16, as after a call.
  auto top = reinterpret_cast<uintptr_t>(stack.bottom()) + stack.size();
  top &= ~uintptr_t{15};
  auto* slot = reinterpret_cast<uint64_t*>(top - 16);  // 16-byte aligned: entry's return slot
  slot[1] = 0;
  slot[0] = reinterpret_cast<uint64_t>(entry);
  uint64_t* frame = slot - 7;
  uint32_t mxcsr = 0;
  uint16_t fpcw = 0;
  asm volatile("stmxcsr %0" : "=m"(mxcsr));
  asm volatile("fnstcw %0" : "=m"(fpcw));
  std::memset(frame, 0, 7 * sizeof(uint64_t));
  std::memcpy(reinterpret_cast<unsigned char*>(frame), &mxcsr, 4);
  std::memcpy(reinterpret_cast<unsigned char*>(frame) + 4, &fpcw, 2);
  ctx.sp = frame;
}

void fiber_switch(FiberContext& from, FiberContext& to) {
  rg_emu_fiber_switch(&from.sp, to.sp);
}

void fiber_release(FiberContext&) {}

#else  // portable fallback

void fiber_init(FiberContext& ctx, FiberStack& stack, void (*entry)()) {
  if (ctx.uc == nullptr) ctx.uc = new ucontext_t;
  auto* uc = static_cast<ucontext_t*>(ctx.uc);
  getcontext(uc);
  uc->uc_stack.ss_sp = stack.bottom();
  uc->uc_stack.ss_size = stack.size();
  uc->uc_link = nullptr;
  makecontext(uc, entry, 0);
}

void fiber_switch(FiberContext& from, FiberContext& to) {
  if (from.uc == nullptr) from.uc = new ucontext_t;
  swapcontext(static_cast<ucontext_t*>(from.uc), static_cast<ucontext_t*>(to.uc));
}

void fiber_release(FiberContext& ctx) {
  delete static_cast<ucontext_t*>(ctx.uc);
  ctx.uc = nullptr;
}

#endif

}  // namespace rg_emu
