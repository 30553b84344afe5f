// The functional op layer: every differentiable operation of the engine. Each op checks its
// arguments (errors name the op and the shapes), dispatches to the kernel backend of the
// tensors' device, and records an autograd node when an input requires grad.
//
// Conventions: activations NHWC, conv weights OHWI, transposed-conv weights [c_in][kh][kw][c_out].
// CPU kernels compute in f32 (inputs stored as f32, bf16 or f16) or f64; results keep the
// input's dtype. Binary ops between different floating dtypes promote (f64 > f32 > bf16/f16).
#pragma once

#include <cstdint>
#include <vector>

#include "engine/tensor.h"

namespace rg {

class Generator;

// ---- elementwise (numpy broadcasting, e.g. [N,H,W,C] with [C])
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor add(const Tensor& a, double s);
Tensor mul(const Tensor& a, double s);
Tensor neg(const Tensor& a);
Tensor exp(const Tensor& a);
Tensor log(const Tensor& a);  // natural log; log of non-positive values gives -inf / NaN
Tensor sqrt(const Tensor& a);
Tensor square(const Tensor& a);

inline Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
inline Tensor operator+(const Tensor& a, double s) { return add(a, s); }
inline Tensor operator+(double s, const Tensor& a) { return add(a, s); }
inline Tensor operator-(const Tensor& a, double s) { return add(a, -s); }
inline Tensor operator-(double s, const Tensor& a) { return add(neg(a), s); }
inline Tensor operator*(const Tensor& a, double s) { return mul(a, s); }
inline Tensor operator*(double s, const Tensor& a) { return mul(a, s); }
inline Tensor operator/(const Tensor& a, double s) { return mul(a, 1.0 / s); }
inline Tensor operator-(const Tensor& a) { return neg(a); }

// ---- activations
Tensor relu(const Tensor& x);
Tensor leaky_relu(const Tensor& x, double negative_slope = 0.01);
Tensor sigmoid(const Tensor& x);
Tensor tanh(const Tensor& x);
// Zeroes each element with probability p and scales the rest by 1/(1-p) when training; the
// identity otherwise. The mask comes from `gen` (Philox), so it is reproducible per seed.
Tensor dropout(const Tensor& x, double p, bool training, Generator& gen);

// ---- reductions (accumulate in double)
Tensor sum(const Tensor& x);  // all elements -> scalar
Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim = false);
Tensor mean(const Tensor& x);
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim = false);
// Sums `x` down to `shape` (the inverse of broadcasting `shape` up to x's shape).
Tensor sum_to_shape(const Tensor& x, const Shape& shape);

// ---- shape
// Joins tensors along `dim` (all other dimensions equal). In NHWC, channels are dim -1.
Tensor concat(const std::vector<Tensor>& tensors, int64_t dim);
// Reflection padding of an NHWC tensor by `pad` pixels on each side of H and W (PyTorch's
// ReflectionPad2d(pad): the edge row is not repeated, so row -k reads row k). Needs pad < H
// and pad < W. Built from slices and concat, so it runs on every device and differentiates
// (the gradient of a mirrored row adds into the row it copies).
Tensor reflection_pad2d(const Tensor& x, int64_t pad);

// ---- convolution
struct Conv2dParams {
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_h = 0, pad_w = 0;
  int64_t output_pad_h = 0, output_pad_w = 0;  // transposed conv only
  static Conv2dParams make(int64_t stride, int64_t pad, int64_t output_pad = 0) {
    return {stride, stride, pad, pad, output_pad, output_pad};
  }
};
// x [N,H,W,Cin], weight [Cout,kh,kw,Cin] (OHWI), bias [Cout] or undefined.
Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dParams& p);
// x [N,H,W,Cin], weight [Cin,kh,kw,Cout] (the OHWI weight of the adjoint convolution), bias
// [Cout] or undefined. Output size (H-1)*stride - 2*pad + kh + output_pad.
Tensor conv_transpose2d(const Tensor& x, const Tensor& weight, const Tensor& bias,
                        const Conv2dParams& p);

// ---- fully connected
// x [..., in], weight [out, in] (PyTorch's Linear layout), bias [out] or undefined -> [..., out].
// Runs as a 1x1 convolution, so it shares conv2d's kernels and its double backward.
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias);

// ---- normalization (NHWC; statistics per channel, accumulated in double on the CPU)
// Training: normalizes with batch statistics and updates running_mean/running_var (if
// defined) as running = (1-momentum)*running + momentum*batch (unbiased variance), in place.
// Eval: normalizes with the running statistics. gamma/beta may be undefined.
Tensor batch_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, Tensor running_mean,
                  Tensor running_var, bool training, double momentum = 0.1, double eps = 1e-5);
// Statistics per (image, channel) over H*W.
Tensor instance_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, double eps = 1e-5);
// Statistics per sample over every dimension but the first (N): (x - mean) / sqrt(var + eps),
// biased variance. gamma and beta (each may be undefined) are a trailing part of the per-sample
// shape, e.g. [C] (one scale per channel) or [H, W, C] (elementwise), and broadcast. Uses no
// batch statistics, so each sample's output depends on that sample only (what a WGAN-GP critic
// needs: its per-sample input gradients must not mix samples).
Tensor layer_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, double eps = 1e-5);

// ---- losses (mean reduction -> scalar; f32 for bf16/f16 inputs, f64 for f64)
// mean(max(z,0) - z*t + log(1 + exp(-|z|))): stable for any logit z.
Tensor bce_with_logits(const Tensor& logits, const Tensor& target);
Tensor l1_loss(const Tensor& input, const Tensor& target);
Tensor mse_loss(const Tensor& input, const Tensor& target);
// 1 - (2*sum(p*t) + smooth) / (sum(p) + sum(t) + smooth) per sample (dim 0), averaged.
Tensor soft_dice_loss(const Tensor& probs, const Tensor& target, double smooth = 1.0);

// ---- in place, never recorded by autograd (optimizers, gradient accumulation)
void add_(Tensor& dst, const Tensor& src);  // dst += src (same shape)
void mul_(Tensor& dst, double s);           // dst *= s

}  // namespace rg
