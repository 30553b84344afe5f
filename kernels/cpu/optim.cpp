#include "kernels/optim.h"

#include <cmath>

namespace rg::kernels::cpu {

template <typename T>
void adam_step(const AdamConfig& c, int64_t n, T* param, const T* grad, T* m, T* v) {
  const double bc1 = 1.0 - std::pow(c.beta1, static_cast<double>(c.step));
  const double bc2 = 1.0 - std::pow(c.beta2, static_cast<double>(c.step));
  const double step_size = c.lr / bc1;
  const double sqrt_bc2 = std::sqrt(bc2);
#pragma omp parallel for schedule(static) if (n > 1 << 15)
  for (int64_t i = 0; i < n; ++i) {
    double g = grad[i];
    double p = param[i];
    if (c.weight_decay != 0.0) {
      if (c.decoupled_weight_decay) {
        p *= 1.0 - c.lr * c.weight_decay;
      } else {
        g += c.weight_decay * p;
      }
    }
    const double mi = c.beta1 * m[i] + (1.0 - c.beta1) * g;
    const double vi = c.beta2 * v[i] + (1.0 - c.beta2) * g * g;
    m[i] = static_cast<T>(mi);
    v[i] = static_cast<T>(vi);
    p -= step_size * mi / (std::sqrt(vi) / sqrt_bc2 + c.eps);
    param[i] = static_cast<T>(p);
  }
}

template <typename T>
void sgd_step(const SgdConfig& c, int64_t n, T* param, const T* grad, T* buf) {
#pragma omp parallel for schedule(static) if (n > 1 << 15)
  for (int64_t i = 0; i < n; ++i) {
    double g = grad[i];
    if (c.weight_decay != 0.0) g += c.weight_decay * param[i];
    if (c.momentum != 0.0) {
      const double b = c.first_step ? g : c.momentum * buf[i] + (1.0 - c.dampening) * g;
      buf[i] = static_cast<T>(b);
      g = c.nesterov ? g + c.momentum * b : b;
    }
    param[i] = static_cast<T>(param[i] - c.lr * g);
  }
}

template void adam_step<float>(const AdamConfig&, int64_t, float*, const float*, float*, float*);
template void adam_step<double>(const AdamConfig&, int64_t, double*, const double*, double*,
                                double*);
template void sgd_step<float>(const SgdConfig&, int64_t, float*, const float*, float*);
template void sgd_step<double>(const SgdConfig&, int64_t, double*, const double*, double*);

}  // namespace rg::kernels::cpu
