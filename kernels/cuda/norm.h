// CUDA normalization kernels, same semantics as kernels/norm.h (NHWC, biased statistics,
// gamma/beta may be null). x, y, dy, dx are T (float or bf16); gamma, beta, statistics and
// parameter gradients are fp32; every reduction accumulates in fp32 (per-thread partial sums,
// then a tree), never in T.
//
// `act` fuses an activation after the normalization (forward) and its derivative before the
// normalization's backward: with act != None the forward writes act(norm(x)) and the backward
// takes dy of that output and the saved forward output y. Meant for the norm -> (leaky) ReLU
// pairs of the U-Net and PatchGAN, but the op layer does not fuse yet: engine/cuda/ops_cuda.cpp
// calls these kernels with act None and runs the activation as its own op (tests cover the
// fused variants at the kernel level only).
#pragma once

#include "kernels/norm.h"
#include "kernels/cuda/common.h"

namespace rg::kernels::cuda {

enum class NormActivation : uint8_t { None, ReLU, LeakyReLU };

struct NormFusion {
  NormActivation act = NormActivation::None;
  float negative_slope = 0.2f;  // LeakyReLU only
};

// save_mean[c], save_invstd[c] (fp32) for the backward pass.
template <typename T>
void batch_norm_forward_train(const NormShape& s, const T* x, const float* gamma,
                              const float* beta, float eps, NormFusion fusion, T* y,
                              float* save_mean, float* save_invstd, cudaStream_t stream);

// With running statistics (mean, var fp32).
template <typename T>
void batch_norm_forward_eval(const NormShape& s, const T* x, const float* gamma, const float* beta,
                             const float* mean, const float* var, float eps, NormFusion fusion,
                             T* y, cudaStream_t stream);

// Backward of the training-mode forward. y is the forward output (read only when fusion.act !=
// None). dx overwritten; dgamma/dbeta (fp32) overwritten when non-null.
template <typename T>
void batch_norm_backward_train(const NormShape& s, const T* x, const T* y, const T* dy,
                               const float* gamma, const float* save_mean,
                               const float* save_invstd, NormFusion fusion, T* dx, float* dgamma,
                               float* dbeta, cudaStream_t stream);

// Backward of the eval-mode forward (statistics constant).
template <typename T>
void batch_norm_backward_eval(const NormShape& s, const T* x, const T* y, const T* dy,
                              const float* gamma, const float* mean, const float* var, float eps,
                              NormFusion fusion, T* dx, float* dgamma, float* dbeta,
                              cudaStream_t stream);

// Running statistics update, on the device: running = (1-m)*running + m*batch, with the
// unbiased batch variance var * count/(count-1) derived from save_invstd.
void batch_norm_update_running(int64_t c, int64_t count, float momentum, float eps,
                               const float* save_mean, const float* save_invstd,
                               float* running_mean, float* running_var, cudaStream_t stream);

// Instance norm: statistics per (n, c) over hw; save_mean/save_invstd are [n][c].
template <typename T>
void instance_norm_forward(const NormShape& s, const T* x, const float* gamma, const float* beta,
                           float eps, NormFusion fusion, T* y, float* save_mean,
                           float* save_invstd, cudaStream_t stream);

template <typename T>
void instance_norm_backward(const NormShape& s, const T* x, const T* y, const T* dy,
                            const float* gamma, const float* save_mean, const float* save_invstd,
                            NormFusion fusion, T* dx, float* dgamma, float* dbeta,
                            cudaStream_t stream);

}  // namespace rg::kernels::cuda
