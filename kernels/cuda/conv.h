// CUDA convolution kernels of our own: implicit GEMM (no im2col buffer), same layouts and
// semantics as kernels/conv.h (activations NHWC, weights OHWI). A transposed convolution runs
// on the same three entry points, as on the CPU.
//
// T is float or bf16. Products are accumulated in fp32 whatever T is. `math` picks how float
// inputs are multiplied: exact fp32 FMA, or TF32 tensor cores (10-bit mantissa products);
// bf16 inputs always use bf16 tensor cores. Weight and bias gradients are written in fp32
// (they feed fp32 master weights), bias is read in fp32.
#pragma once

#include "kernels/conv.h"
#include "kernels/cuda/common.h"

namespace rg::kernels::cuda {

enum class ConvMath : uint8_t { Fp32, Tf32 };

// y = conv(x, w) + bias (bias may be null). y is overwritten.
template <typename T>
void conv2d_forward(const Conv2dShape& s, const T* x, const T* w, const float* bias, T* y,
                    ConvMath math, cudaStream_t stream);

// dx = gradient w.r.t. x given dy; dx is overwritten.
template <typename T>
void conv2d_backward_data(const Conv2dShape& s, const T* dy, const T* w, T* dx, ConvMath math,
                          cudaStream_t stream);

// dw (fp32, [c_out][kh][kw][c_in]) and dbias (fp32 [c_out], may be null), overwritten.
template <typename T>
void conv2d_backward_weight(const Conv2dShape& s, const T* x, const T* dy, float* dw,
                            float* dbias, ConvMath math, cudaStream_t stream);

}  // namespace rg::kernels::cuda
