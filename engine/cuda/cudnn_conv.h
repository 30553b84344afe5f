// The library path of the CUDA convolutions: cuDNN (legacy API, NHWC activations and KRSC =
// OHWI filters, cross-correlation), and cuBLAS for the convolutions that are a plain GEMM
// (engine/cuda/cublas_conv.h). Same layouts, semantics and precision contract as our own
// kernels (kernels/cuda/conv.h): T is float or bf16, products accumulate in fp32, `math` picks
// exact fp32 (CUDNN_FMA_MATH: no TF32) or TF32 tensor cores for float, bf16 always uses bf16
// tensor cores; dw and dbias are written in fp32, bias is read in fp32.
//
// Each function returns false when the library cannot run the case (a shape cuDNN's 32-bit
// descriptors cannot describe, no algorithm for the data type, layout or math); the caller then
// runs our own kernels. After false the outputs may hold partial results of the algorithm
// search: the fallback overwrites them. Errors other than "not supported" throw rg::Error.
//
// Algorithms are chosen once per (device, direction, shape, dtype, math): by measurement
// (cudnnFind*AlgorithmEx on the call's own buffers; it synchronizes the stream) on the first
// call, or by cuDNN's heuristics (cudnnGet*_v7) when the stream is being captured into a CUDA
// graph, since nothing may synchronize then. Workspaces come from the caching allocator on the
// call's stream. `device` must be the current CUDA device.
//
// bf16 weight gradient: cuDNN's legacy API writes dw in the input data type (x, dy and dw
// descriptors share one type; PSEUDO_BFLOAT16 config: bf16 in and out, fp32 compute). We run
// it into a bf16 temporary and widen that to fp32, so dw is the fp32-accumulated sum rounded
// once to bf16 (relative error <= 2^-9) -- the precision PyTorch's autocast gets for the same
// layer. The alternative that keeps all fp32 bits (widen x and dy, then a TF32 convolution,
// exact for bf16 values) doubles the bytes moved and halves the tensor-core rate, while dw's
// gradient noise is far above 2^-9. The 1x1 GEMM path (cuBLAS) writes fp32 dw directly.
// dbias is a column sum of dy by our own kernel (fp32 accumulation, fp32 result).
#pragma once

#include <string>

#include "engine/conv_backend.h"
#include "kernels/conv.h"
#include "kernels/cuda/conv.h"

namespace rg::cuda {

// ---- cuDNN only

template <typename T>
bool cudnn_conv2d_forward(int device, const kernels::Conv2dShape& s, const T* x, const T* w,
                          const float* bias, T* y, kernels::cuda::ConvMath math,
                          cudaStream_t stream);

template <typename T>
bool cudnn_conv2d_backward_data(int device, const kernels::Conv2dShape& s, const T* dy, const T* w,
                                T* dx, kernels::cuda::ConvMath math, cudaStream_t stream);

template <typename T>
bool cudnn_conv2d_backward_weight(int device, const kernels::Conv2dShape& s, const T* x,
                                  const T* dy, float* dw, float* dbias,
                                  kernels::cuda::ConvMath math, cudaStream_t stream);

// The algorithm cuDNN uses for a case ("IMPLICIT_PRECOMP_GEMM, tensor-op math, 2.0 MiB
// workspace, measured 0.081 ms"), "unsupported", or "" when the case has not run yet. For
// logs and the benchmark.
std::string cudnn_conv_plan_description(const ConvTuneKey& key);

// ---- the library path: cuBLAS when the convolution is a GEMM (1x1, stride 1, no padding),
// cuDNN otherwise (or when cuBLAS declines).

template <typename T>
bool library_conv2d_forward(int device, const kernels::Conv2dShape& s, const T* x, const T* w,
                            const float* bias, T* y, kernels::cuda::ConvMath math,
                            cudaStream_t stream);

template <typename T>
bool library_conv2d_backward_data(int device, const kernels::Conv2dShape& s, const T* dy,
                                  const T* w, T* dx, kernels::cuda::ConvMath math,
                                  cudaStream_t stream);

template <typename T>
bool library_conv2d_backward_weight(int device, const kernels::Conv2dShape& s, const T* x,
                                    const T* dy, float* dw, float* dbias,
                                    kernels::cuda::ConvMath math, cudaStream_t stream);

}  // namespace rg::cuda
