// The convolution entry points of the CUDA op layer: the three functions of kernels/cuda/conv.h
// (same arguments, layouts and precision contract) plus the device index, routed by the
// process-wide conv backend setting (engine/conv_backend.h):
//   Own   - our kernels (kernels/cuda/conv.h);
//   Cudnn - the library path (engine/cuda/cudnn_conv.h: cuBLAS for 1x1 GEMM convolutions, cuDNN
//           otherwise), our kernels where the library cannot run the case;
//   Auto  - per (device, direction, shape, dtype, math), whichever measured faster. The first
//           call of a case times both on the call's own buffers and stream (CUDA events, one
//           warm-up and 3 timed runs each; this synchronizes the stream once) and caches the
//           winner in conv_autotune_cache(); the timing runs write the outputs, and the
//           winner's final run writes them again. While the stream is captured into a CUDA
//           graph nothing can be timed: a case measured before runs its winner, a new one runs
//           our kernels (and is measured at its first call outside a capture).
// `device` must be the current CUDA device; everything runs on `stream`.
#pragma once

#include "kernels/conv.h"
#include "kernels/cuda/conv.h"

namespace rg::cuda {

template <typename T>
void conv2d_forward(int device, const kernels::Conv2dShape& s, const T* x, const T* w,
                    const float* bias, T* y, kernels::cuda::ConvMath math, cudaStream_t stream);

template <typename T>
void conv2d_backward_data(int device, const kernels::Conv2dShape& s, const T* dy, const T* w, T* dx,
                          kernels::cuda::ConvMath math, cudaStream_t stream);

template <typename T>
void conv2d_backward_weight(int device, const kernels::Conv2dShape& s, const T* x, const T* dy,
                            float* dw, float* dbias, kernels::cuda::ConvMath math,
                            cudaStream_t stream);

}  // namespace rg::cuda
