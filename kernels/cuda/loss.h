// CUDA loss kernels, same semantics as kernels/loss.h, but results stay on the device (no
// host synchronization inside a training step, so a step can be captured in a CUDA graph):
// forward kernels write the fp32 SUM into a device scalar; backward kernels read the upstream
// gradient from a device scalar and multiply it by a host constant (1/count for a mean).
#pragma once

#include "kernels/cuda/common.h"
#include "kernels/loss.h"

namespace rg::kernels::cuda {

// *sum_out = sum_i loss(x[i], t[i]) (overwritten; accumulated in fp32 per thread, then a tree).
template <typename T>
void pointwise_loss_forward(PointwiseLoss loss, int64_t n, const T* x, const T* t, float* sum_out,
                            cudaStream_t stream);

// dx/dt (either may be null) = d loss/d input * (*grad_out) * scale.
template <typename T>
void pointwise_loss_backward(PointwiseLoss loss, int64_t n, const T* x, const T* t,
                             const float* grad_out, float scale, T* dx, T* dt,
                             cudaStream_t stream);

// Per-sample sums for soft Dice: sums[3*b + 0] = sum p*t, [3*b + 1] = sum p, [3*b + 2] = sum t.
template <typename T>
void dice_sums(int64_t batch, int64_t per_sample, const T* p, const T* t, float* sums,
               cudaStream_t stream);

// *loss_out = mean over samples of 1 - (2I + smooth)/(P + T + smooth), from dice_sums' output.
void dice_loss_from_sums(int64_t batch, const float* sums, float smooth, float* loss_out,
                         cudaStream_t stream);

// Backward of the mean Dice loss times (*grad_out); dp/dt may be null.
template <typename T>
void dice_backward(int64_t batch, int64_t per_sample, const T* p, const T* t, const float* sums,
                   float smooth, const float* grad_out, T* dp, T* dt, cudaStream_t stream);

}  // namespace rg::kernels::cuda
