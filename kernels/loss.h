// Loss kernels over raw pointers. Forward kernels return the SUM of the per-element (or
// per-sample) losses in double; the op layer divides by the count for mean reduction.
// Backward kernels write d(scale * sum)/d(input): the op layer passes scale = grad / count.
#pragma once

#include <cstdint>

namespace rg::kernels {

enum class PointwiseLoss { BceWithLogits, L1, Mse };

namespace cpu {

// BceWithLogits: max(z,0) - z*t + log1p(exp(-|z|)); L1: |x - t|; Mse: (x - t)^2.
template <typename T>
double pointwise_loss_forward(PointwiseLoss loss, int64_t n, const T* x, const T* t);

// dx (may be null) and dt (may be null), overwritten.
template <typename T>
void pointwise_loss_backward(PointwiseLoss loss, int64_t n, const T* x, const T* t, double scale,
                             T* dx, T* dt);

// Per-sample sums for soft Dice over `batch` samples of `per_sample` values each:
// intersection[b] = sum p*t, p_sum[b] = sum p, t_sum[b] = sum t.
template <typename T>
void dice_sums(int64_t batch, int64_t per_sample, const T* p, const T* t, double* intersection,
               double* p_sum, double* t_sum);

// Backward of mean over samples of 1 - (2I + s)/(P + T + s), times scale (the upstream grad).
template <typename T>
void dice_backward(int64_t batch, int64_t per_sample, const T* p, const T* t,
                   const double* intersection, const double* p_sum, const double* t_sum,
                   double smooth, double scale, T* dp, T* dt);

}  // namespace cpu
}  // namespace rg::kernels
