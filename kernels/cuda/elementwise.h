// CUDA elementwise arithmetic, activations and reductions; same semantics as
// kernels/elementwise.h. T is float or bf16; arithmetic happens in fp32 registers and is
// rounded once on the store. Contiguous operands are read with 16-byte vector loads when the
// pointers are 16-byte aligned (the caching allocator aligns every block to 256 bytes).
#pragma once

#include "kernels/cuda/common.h"
#include "kernels/elementwise.h"

namespace rg::kernels::cuda {

template <typename T>
void binary_forward(BinaryOp op, const BroadcastShape& s, const T* a, const T* b, T* out,
                    cudaStream_t stream);

template <typename T>
void unary_forward(UnaryOp op, float scalar, int64_t n, const T* x, T* y, cudaStream_t stream);

template <typename T>
void activation_forward(Activation act, float negative_slope, int64_t n, const T* x, T* y,
                        cudaStream_t stream);
// dx = dy * act'(x), computed from the forward output y.
template <typename T>
void activation_backward(Activation act, float negative_slope, int64_t n, const T* y, const T* dy,
                         T* dx, cudaStream_t stream);

// out[r] = sum_c x[r*cols + c], accumulated in fp32, written as fp32.
template <typename T>
void sum_rows(int64_t rows, int64_t cols, const T* x, float* out, cudaStream_t stream);
// out[c] = sum_r x[r*cols + c], accumulated in fp32, written as fp32.
template <typename T>
void sum_columns(int64_t rows, int64_t cols, const T* x, float* out, cudaStream_t stream);

// dst[i] += src[i]
template <typename T>
void accumulate(int64_t n, const T* src, T* dst, cudaStream_t stream);

}  // namespace rg::kernels::cuda
