// Convolutions that are a plain matrix product, run by cuBLAS: a 1x1 kernel with stride 1 and
// no padding maps each of the M = n*h*w pixels independently, so with NHWC activations and
// OHWI weights
//   forward          y[M][c_out]  = x[M][c_in]   * w[c_out][c_in]^T  (+ bias)
//   backward data    dx[M][c_in]  = dy[M][c_out] * w[c_out][c_in]
//   backward weight  dw[c_out][c_in] = dy[M][c_out]^T * x[M][c_in]
// (cublasGemmEx on the row-major matrices read as their column-major transposes). Part of the
// library path (engine/cuda/cudnn_conv.h), with its contract: float with exact fp32
// (CUBLAS_COMPUTE_32F) or TF32 (CUBLAS_COMPUTE_32F_FAST_TF32) products, bf16 inputs with fp32
// accumulation (CUBLAS_COMPUTE_32F); dw is written in fp32 directly for both (cuBLAS takes bf16
// A/B with an fp32 C), dbias by our column-sum kernel.
//
// Each function returns false when the case is not such a GEMM or its sizes exceed cuBLAS's
// 32-bit arguments (nothing runs then), or when cuBLAS reports CUBLAS_STATUS_NOT_SUPPORTED (y
// may then hold the broadcast bias; the caller's fallback overwrites it).
// `device` must be the current CUDA device. One cuBLAS handle per device, bound to the call's
// stream; cuBLAS's own default workspace is used.
#pragma once

#include "kernels/conv.h"
#include "kernels/cuda/conv.h"

namespace rg::cuda {

// 1x1 kernel, stride 1, no padding, non-empty, and M, c_in, c_out within int range.
bool cublas_conv_is_gemm(const kernels::Conv2dShape& s);

template <typename T>
bool cublas_conv2d_forward(int device, const kernels::Conv2dShape& s, const T* x, const T* w,
                           const float* bias, T* y, kernels::cuda::ConvMath math,
                           cudaStream_t stream);

template <typename T>
bool cublas_conv2d_backward_data(int device, const kernels::Conv2dShape& s, const T* dy, const T* w,
                                 T* dx, kernels::cuda::ConvMath math, cudaStream_t stream);

template <typename T>
bool cublas_conv2d_backward_weight(int device, const kernels::Conv2dShape& s, const T* x,
                                   const T* dy, float* dw, float* dbias,
                                   kernels::cuda::ConvMath math, cudaStream_t stream);

}  // namespace rg::cuda
