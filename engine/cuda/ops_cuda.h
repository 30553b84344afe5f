// The CUDA side of the op layer: Tensor-level entry points over the kernels of kernels/cuda
// (and the library paths of engine/cuda/conv_dispatch.h), called from the single dispatch
// point of each op in engine/ops/*.cpp when its tensors live on a CUDA device. No autograd
// here: the op layer records the graph, these functions only launch work on the device's
// current stream (none of them synchronizes the host).
//
// Arguments are contiguous tensors on one CUDA device, in the compute dtype of the op (f32
// or bf16: ops_detail::compute_dtype); statistics, parameter gradients and loss sums are f32.
// Declared in every build so the op layer compiles unchanged; defined only in CUDA builds and
// only called for CUDA tensors.
#pragma once

#include <cstdint>

#include "engine/core_backend.h"
#include "engine/tensor.h"
#include "kernels/conv.h"
#include "kernels/elementwise.h"
#include "kernels/loss.h"
#include "kernels/norm.h"
#include "kernels/optim.h"

namespace rg::cuda_ops {

// ---- Tensor itself (any layout, any dtype)
void fill(const Tensor& t, double value);
// dst and src on the same CUDA device, same shape; converts dtypes, either may be strided.
void copy(const Tensor& dst, const Tensor& src);
using core_backend::RandomFill;
// Philox fill with the CPU's element mapping (engine/rng.h); t floating, any layout.
void random_fill(RandomFill kind, const Tensor& t, double a, double b, uint64_t seed,
                 uint64_t offset);

// ---- elementwise
void binary(kernels::BinaryOp op, const kernels::BroadcastShape& s, const Tensor& a,
            const Tensor& b, const Tensor& out);
void unary(kernels::UnaryOp op, double scalar, const Tensor& x, const Tensor& y);
void activation_forward(kernels::Activation act, double slope, const Tensor& x, const Tensor& y);
void activation_backward(kernels::Activation act, double slope, const Tensor& y, const Tensor& dy,
                         const Tensor& dx);
// out (f32, rows elements) = row sums of x viewed as [rows][cols].
void sum_rows(int64_t rows, int64_t cols, const Tensor& x, const Tensor& out);
// out (f32, cols elements) = column sums of x viewed as [rows][cols].
void sum_columns(int64_t rows, int64_t cols, const Tensor& x, const Tensor& out);
void accumulate(const Tensor& src, const Tensor& dst);  // dst += src, same dtype

// ---- convolution (the conv backend setting picks our kernels or cuDNN/cuBLAS)
// bias: f32 or undefined. y/dx in the dtype of x; dw/dbias f32.
void conv2d_forward(const kernels::Conv2dShape& s, const Tensor& x, const Tensor& w,
                    const Tensor& bias, const Tensor& y);
void conv2d_backward_data(const kernels::Conv2dShape& s, const Tensor& dy, const Tensor& w,
                          const Tensor& dx);
// dbias may be undefined.
void conv2d_backward_weight(const kernels::Conv2dShape& s, const Tensor& x, const Tensor& dy,
                            const Tensor& dw, const Tensor& dbias);

// ---- normalization (gamma/beta/statistics f32; gamma/beta/dgamma/dbeta may be undefined)
void batch_norm_forward_train(const kernels::NormShape& s, const Tensor& x, const Tensor& gamma,
                              const Tensor& beta, double eps, const Tensor& y,
                              const Tensor& save_mean, const Tensor& save_invstd);
void batch_norm_forward_eval(const kernels::NormShape& s, const Tensor& x, const Tensor& gamma,
                             const Tensor& beta, const Tensor& mean, const Tensor& var,
                             double eps, const Tensor& y);
void batch_norm_backward_train(const kernels::NormShape& s, const Tensor& x, const Tensor& dy,
                               const Tensor& gamma, const Tensor& save_mean,
                               const Tensor& save_invstd, const Tensor& dx, const Tensor& dgamma,
                               const Tensor& dbeta);
void batch_norm_backward_eval(const kernels::NormShape& s, const Tensor& x, const Tensor& dy,
                              const Tensor& gamma, const Tensor& mean, const Tensor& var,
                              double eps, const Tensor& dx, const Tensor& dgamma,
                              const Tensor& dbeta);
void batch_norm_update_running(int64_t count, double momentum, double eps,
                               const Tensor& save_mean, const Tensor& save_invstd,
                               const Tensor& running_mean, const Tensor& running_var);
void instance_norm_forward(const kernels::NormShape& s, const Tensor& x, const Tensor& gamma,
                           const Tensor& beta, double eps, const Tensor& y,
                           const Tensor& save_mean, const Tensor& save_invstd);
void instance_norm_backward(const kernels::NormShape& s, const Tensor& x, const Tensor& dy,
                            const Tensor& gamma, const Tensor& save_mean,
                            const Tensor& save_invstd, const Tensor& dx, const Tensor& dgamma,
                            const Tensor& dbeta);

// ---- losses (sums and upstream gradients stay on the device, f32 scalars)
void pointwise_loss_forward(kernels::PointwiseLoss loss, const Tensor& x, const Tensor& t,
                            const Tensor& sum_out);
void pointwise_loss_backward(kernels::PointwiseLoss loss, const Tensor& x, const Tensor& t,
                             const Tensor& grad_out, double scale, const Tensor& dx,
                             const Tensor& dt);
// sums: f32 [batch][3] = (sum p*t, sum p, sum t) per sample.
void dice_sums(int64_t batch, const Tensor& p, const Tensor& t, const Tensor& sums);
void dice_loss_from_sums(int64_t batch, const Tensor& sums, double smooth, const Tensor& loss_out);
void dice_backward(int64_t batch, const Tensor& p, const Tensor& t, const Tensor& sums,
                   double smooth, const Tensor& grad_out, const Tensor& dp, const Tensor& dt);

// ---- optimizers (f32 parameters, gradients and state)
void adam_step(const kernels::AdamConfig& c, const Tensor& param, const Tensor& grad,
               const Tensor& m, const Tensor& v);
void sgd_step(const kernels::SgdConfig& c, const Tensor& param, const Tensor& grad,
              const Tensor& buf);

}  // namespace rg::cuda_ops
