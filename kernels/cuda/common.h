// What every CUDA kernel file shares: the stream type, the bf16 type the engine's BFloat16 is
// bit-compatible with, and the launch check. Kernels never synchronize; errors of a launch
// (bad configuration) are reported at once, errors inside a kernel at the next synchronizing
// call of the engine.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <stdexcept>
#include <string>

namespace rg::kernels::cuda {

using bf16 = __nv_bfloat16;

[[noreturn]] inline void fail_cuda_call(const char* call, const char* file, int line,
                                        cudaError_t err) {
  throw std::runtime_error(std::string(call) + " failed at " + file + ":" + std::to_string(line) +
                           ": " + cudaGetErrorName(err) + ": " + cudaGetErrorString(err));
}

}  // namespace rg::kernels::cuda

// Checks a CUDA runtime call (kernels library side; the engine has RG_CUDA_CHECK with the same
// message format).
#define RG_KERNEL_CUDA_CHECK(call)                                                     \
  do {                                                                                 \
    const cudaError_t rg_kerr_ = (call);                                               \
    if (rg_kerr_ != cudaSuccess)                                                       \
      ::rg::kernels::cuda::fail_cuda_call(#call, __FILE__, __LINE__, rg_kerr_);        \
  } while (0)

// After a <<<...>>> launch: reports a bad launch configuration naming the kernel. It takes the
// error with cudaGetLastError, which also clears it: cudaPeekAtLastError would leave it in
// place, so every later check would throw again, blaming kernels that launched fine.
#define RG_KERNEL_LAUNCH_CHECK(kernel_name)                                                \
  do {                                                                                 \
    const cudaError_t rg_klerr_ = cudaGetLastError();                                  \
    if (rg_klerr_ != cudaSuccess)                                                      \
      ::rg::kernels::cuda::fail_cuda_call("launch of " kernel_name, __FILE__, __LINE__, \
                                          rg_klerr_);                                  \
  } while (0)
