// Small pieces every CUDA kernel file uses: fp32 <-> element conversions, grid sizing for
// grid-stride loops, thread indices and the 16-byte alignment test of the vector paths.
// Private to kernels/cuda (included by .cu files only).
#pragma once

#include <algorithm>
#include <cstdint>

#include "kernels/cuda/common.h"

namespace rg::kernels::cuda {

__device__ __forceinline__ float to_f32(float v) { return v; }
__device__ __forceinline__ float to_f32(bf16 v) { return __bfloat162float(v); }

template <typename T>
__device__ __forceinline__ T from_f32(float v);
template <>
__device__ __forceinline__ float from_f32<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ bf16 from_f32<bf16>(float v) {
  return __float2bfloat16_rn(v);
}

// The most blocks a grid-stride loop launches: enough to fill any current GPU many times over
// (the loop covers the rest).
inline constexpr int64_t kMaxBlocks = 1 << 16;

// Blocks for a grid-stride loop over `work_items`, one item per thread.
inline int grid_for(int64_t work_items, int threads = 256) {
  const int64_t blocks = (work_items + threads - 1) / threads;
  return static_cast<int>(std::clamp<int64_t>(blocks, 1, kMaxBlocks));
}

__device__ __forceinline__ int64_t global_thread() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t grid_threads() {
  return static_cast<int64_t>(gridDim.x) * blockDim.x;
}

__host__ __device__ __forceinline__ bool aligned16(const void* p) {
  return (reinterpret_cast<uintptr_t>(p) & 15) == 0;
}

}  // namespace rg::kernels::cuda
