// Batch normalization by cuDNN (CUDNN_BATCHNORM_SPATIAL on NHWC tensors), with the contract of
// kernels/cuda/norm.h's batch_norm functions for fusion None: T is float or bf16 (x, y, dy,
// dx), gamma, beta, statistics and parameter gradients are fp32, statistics are biased, and
// save_invstd = 1/sqrt(var + eps) -- exactly what cuDNN saves as its "inverse variance". Running
// statistics are not touched (kernels::cuda::batch_norm_update_running does that, as for our own
// kernels).
//
// cuDNN insists on a scale and bias (and on both parameter gradients): when gamma/beta or
// dgamma/dbeta are null, ones, zeros or scratch from the caching allocator stand in. Each
// function returns true when cuDNN ran; when cuDNN declines the case (a status of the
// NOT_SUPPORTED family, sizes beyond its int descriptors, fewer than 2 values per channel in
// training) it runs our kernel instead and returns false. `device` must be the current CUDA
// device; everything runs on `stream`.
//
// The legacy batch-norm API is deprecated in cuDNN 9 but present (cudnn_ops_v9.h); there is no
// cuDNN backward of the eval-mode forward, so that one stays with kernels/cuda/norm.h.
#pragma once

#include "kernels/cuda/norm.h"
#include "kernels/norm.h"

namespace rg::cuda {

template <typename T>
bool cudnn_batch_norm_forward_train(int device, const kernels::NormShape& s, const T* x,
                                    const float* gamma, const float* beta, float eps, T* y,
                                    float* save_mean, float* save_invstd, cudaStream_t stream);

template <typename T>
bool cudnn_batch_norm_forward_eval(int device, const kernels::NormShape& s, const T* x,
                                   const float* gamma, const float* beta, const float* mean,
                                   const float* var, float eps, T* y, cudaStream_t stream);

// eps: the forward's (cuDNN asks for it alongside the saved statistics).
template <typename T>
bool cudnn_batch_norm_backward_train(int device, const kernels::NormShape& s, const T* x,
                                     const T* dy, const float* gamma, const float* save_mean,
                                     const float* save_invstd, float eps, T* dx, float* dgamma,
                                     float* dbeta, cudaStream_t stream);

}  // namespace rg::cuda
