// Normalization kernels over raw pointers, NHWC. Batch norm reduces each channel over
// (n, h, w); instance norm reduces each (n, channel) over (h, w). Statistics are biased
// (divide by the count), as in the forward pass of PyTorch; the op layer derives the unbiased
// variance for running statistics. gamma/beta may be null (no affine transform).
#pragma once

#include <cstdint>

namespace rg::kernels {

struct NormShape {
  int64_t n = 1;   // batch
  int64_t hw = 1;  // spatial positions per image (h * w)
  int64_t c = 1;   // channels (innermost)
};

namespace cpu {

// Training-mode batch norm: per channel c, mean/var over n*hw values.
// y = (x - mean) * invstd * gamma + beta, invstd = 1/sqrt(var + eps).
// Writes save_mean[c], save_invstd[c] for the backward pass (and the op layer's running stats).
template <typename T>
void batch_norm_forward_train(const NormShape& s, const T* x, const T* gamma, const T* beta,
                              double eps, T* y, T* save_mean, T* save_invstd);

// Eval-mode batch norm with given statistics: y = (x - mean[c]) / sqrt(var[c] + eps) * gamma + beta.
template <typename T>
void batch_norm_forward_eval(const NormShape& s, const T* x, const T* gamma, const T* beta,
                             const T* mean, const T* var, double eps, T* y);

// Backward of the training-mode forward (statistics depend on x).
// dx overwritten; dgamma/dbeta overwritten when non-null.
template <typename T>
void batch_norm_backward_train(const NormShape& s, const T* x, const T* dy, const T* gamma,
                               const T* save_mean, const T* save_invstd, T* dx, T* dgamma,
                               T* dbeta);

// Backward of the eval-mode forward (statistics are constants): dx = dy * gamma * invstd.
template <typename T>
void batch_norm_backward_eval(const NormShape& s, const T* x, const T* dy, const T* gamma,
                              const T* mean, const T* var, double eps, T* dx, T* dgamma,
                              T* dbeta);

// Instance norm (statistics per (n, c) over hw; always computed from the input).
// save_mean / save_invstd are [n][c].
template <typename T>
void instance_norm_forward(const NormShape& s, const T* x, const T* gamma, const T* beta,
                           double eps, T* y, T* save_mean, T* save_invstd);

template <typename T>
void instance_norm_backward(const NormShape& s, const T* x, const T* dy, const T* gamma,
                            const T* save_mean, const T* save_invstd, T* dx, T* dgamma, T* dbeta);

}  // namespace cpu
}  // namespace rg::kernels
