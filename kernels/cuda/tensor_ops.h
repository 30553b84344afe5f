// CUDA kernels behind Tensor itself: fills, dtype conversion, strided (view) copies and the
// dropout mask. Element types are named by ElemType so the engine's dtypes map one to one.
#pragma once

#include "kernels/cuda/common.h"

namespace rg::kernels::cuda {

// Same order and meaning as rg::DType (engine/dtype.h): f32, f64, bf16, f16, i32, u8.
enum class ElemType : uint8_t { F32, F64, BF16, F16, I32, U8 };

// Up to 5 dimensions, outermost first; strides in elements.
struct StridedLayout {
  int ndim = 0;
  int64_t shape[5] = {1, 1, 1, 1, 1};
  int64_t strides[5] = {0, 0, 0, 0, 0};
};

// dst[i] = value (converted to the element type) for n contiguous elements.
void fill(ElemType type, int64_t n, double value, void* dst, cudaStream_t stream);

// Copies `src` laid out by `src_layout` into `dst` laid out by `dst_layout` (same shape),
// converting element types (round to nearest even for bf16/f16; floats to integers truncate
// toward zero as static_cast does). Either side may be strided; this is how contiguous(),
// permute().contiguous(), slices, concat and .to(dtype) run on the GPU.
void strided_copy(ElemType dst_type, const StridedLayout& dst_layout, void* dst,
                  ElemType src_type, const StridedLayout& src_layout, const void* src,
                  cudaStream_t stream);

// Philox4x32-10 fills with exactly the element-to-counter mapping and the value formulas of
// engine/rng.cpp, so a GPU tensor filled from (seed, offset) holds the same values as a CPU
// tensor filled from the same generator state (uniform and bernoulli bit for bit; normal within
// 1e-6 relative, as CUDA's logf/cosf and glibc's differ in the last bits). uniform_fill's span
// is (high - low) rounded from double, which equals the CPU's for float bounds and symmetric
// bounds. The caller advances its Generator's offset as the CPU fill would. T is float or bf16.
template <typename T>
void uniform_fill(int64_t n, float low, float high, uint64_t seed, uint64_t offset, T* out,
                  cudaStream_t stream);
template <typename T>
void normal_fill(int64_t n, float mean, float stddev, uint64_t seed, uint64_t offset, T* out,
                 cudaStream_t stream);
// out[i] = 1 with probability `prob`, else 0 (as engine/rng.cpp's bernoulli_).
template <typename T>
void bernoulli_fill(int64_t n, float prob, uint64_t seed, uint64_t offset, T* out,
                    cudaStream_t stream);

}  // namespace rg::kernels::cuda
