#include "kernels/loss.h"

#include <array>
#include <cmath>

#include "kernels/cpu/fixed_chunks.h"

namespace rg::kernels::cpu {

namespace {
constexpr int64_t kParallelGrain = 1 << 15;
}

// Sums run in fixed chunks (kernels/cpu/fixed_chunks.h): the same value for any thread count.
template <typename T>
double pointwise_loss_forward(PointwiseLoss loss, int64_t n, const T* x, const T* t) {
  switch (loss) {
    case PointwiseLoss::BceWithLogits:
      return chunked_sums<1>(n, [&](int64_t b, int64_t e, double* acc) {
        for (int64_t i = b; i < e; ++i) {
          const double z = x[i];
          acc[0] += std::max(z, 0.0) - z * static_cast<double>(t[i]) + std::log1p(std::exp(-std::abs(z)));
        }
      })[0];
    case PointwiseLoss::L1:
      return chunked_sums<1>(n, [&](int64_t b, int64_t e, double* acc) {
        for (int64_t i = b; i < e; ++i) acc[0] += std::abs(static_cast<double>(x[i]) - t[i]);
      })[0];
    case PointwiseLoss::Mse:
      return chunked_sums<1>(n, [&](int64_t b, int64_t e, double* acc) {
        for (int64_t i = b; i < e; ++i) {
          const double d = static_cast<double>(x[i]) - t[i];
          acc[0] += d * d;
        }
      })[0];
  }
  return 0.0;
}

template <typename T>
void pointwise_loss_backward(PointwiseLoss loss, int64_t n, const T* x, const T* t, double scale,
                             T* dx, T* dt) {
#pragma omp parallel for schedule(static) if (n > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) {
    const double xv = x[i], tv = t[i];
    double gx = 0.0, gt = 0.0;
    switch (loss) {
      case PointwiseLoss::BceWithLogits: {
        // d/dz = sigmoid(z) - t, evaluated without overflow; d/dt = -z.
        const double e = std::exp(-std::abs(xv));
        const double sig = xv >= 0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
        gx = sig - tv;
        gt = -xv;
        break;
      }
      case PointwiseLoss::L1: {
        const double d = xv - tv;
        gx = d > 0 ? 1.0 : (d < 0 ? -1.0 : 0.0);
        gt = -gx;
        break;
      }
      case PointwiseLoss::Mse:
        gx = 2.0 * (xv - tv);
        gt = -gx;
        break;
    }
    if (dx) dx[i] = static_cast<T>(scale * gx);
    if (dt) dt[i] = static_cast<T>(scale * gt);
  }
}

template <typename T>
void dice_sums(int64_t batch, int64_t per_sample, const T* p, const T* t, double* intersection,
               double* p_sum, double* t_sum) {
  for (int64_t b = 0; b < batch; ++b) {
    const T* pb = p + b * per_sample;
    const T* tb = t + b * per_sample;
    const std::array<double, 3> sums = chunked_sums<3>(per_sample, [&](int64_t i0, int64_t i1, double* acc) {
      for (int64_t i = i0; i < i1; ++i) {
        acc[0] += static_cast<double>(pb[i]) * tb[i];
        acc[1] += pb[i];
        acc[2] += tb[i];
      }
    });
    intersection[b] = sums[0];
    p_sum[b] = sums[1];
    t_sum[b] = sums[2];
  }
}

template <typename T>
void dice_backward(int64_t batch, int64_t per_sample, const T* p, const T* t,
                   const double* intersection, const double* p_sum, const double* t_sum,
                   double smooth, double scale, T* dp, T* dt) {
  for (int64_t b = 0; b < batch; ++b) {
    // L_b = 1 - N/D with N = 2I + s, D = P + T + s:
    // dL_b/dp_i = -(2 t_i D - N) / D^2, dL_b/dt_i = -(2 p_i D - N) / D^2.
    const double num = 2.0 * intersection[b] + smooth;
    const double den = p_sum[b] + t_sum[b] + smooth;
    const double k = -scale / (static_cast<double>(batch) * den * den);
    const T* pb = p + b * per_sample;
    const T* tb = t + b * per_sample;
#pragma omp parallel for schedule(static) if (per_sample > kParallelGrain)
    for (int64_t i = 0; i < per_sample; ++i) {
      if (dp) dp[b * per_sample + i] = static_cast<T>(k * (2.0 * tb[i] * den - num));
      if (dt) dt[b * per_sample + i] = static_cast<T>(k * (2.0 * pb[i] * den - num));
    }
  }
}

#define RG_INSTANTIATE(T)                                                                        \
  template double pointwise_loss_forward<T>(PointwiseLoss, int64_t, const T*, const T*);         \
  template void pointwise_loss_backward<T>(PointwiseLoss, int64_t, const T*, const T*, double,   \
                                           T*, T*);                                              \
  template void dice_sums<T>(int64_t, int64_t, const T*, const T*, double*, double*, double*);   \
  template void dice_backward<T>(int64_t, int64_t, const T*, const T*, const double*,            \
                                 const double*, const double*, double, double, T*, T*);
RG_INSTANTIATE(float)
RG_INSTANTIATE(double)
#undef RG_INSTANTIATE

}  // namespace rg::kernels::cpu
