// Optimizer update kernels over raw pointers (parameters and state in f32 or f64).
#pragma once

#include <cstdint>

namespace rg::kernels {

struct AdamConfig {
  double lr = 1e-3;
  double beta1 = 0.9, beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  bool decoupled_weight_decay = false;  // AdamW when true; L2 added to the gradient when false
  int64_t step = 1;                     // 1-based step count after this update (bias correction)
};

struct SgdConfig {
  double lr = 1e-2;
  double momentum = 0.0;
  double dampening = 0.0;
  double weight_decay = 0.0;
  bool nesterov = false;
  bool first_step = true;  // the momentum buffer is initialized to the gradient on the first step
};

namespace cpu {

// m and v are the first/second moment buffers, updated in place.
template <typename T>
void adam_step(const AdamConfig& c, int64_t n, T* param, const T* grad, T* m, T* v);

// buf is the momentum buffer (unused when momentum == 0).
template <typename T>
void sgd_step(const SgdConfig& c, int64_t n, T* param, const T* grad, T* buf);

}  // namespace cpu
}  // namespace rg::kernels
