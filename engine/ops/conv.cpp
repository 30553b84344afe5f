// conv2d and conv_transpose2d. A transposed convolution is the adjoint of a convolution, so
// both ops run on the same three kernels (forward, backward-data, backward-weight) with the
// roles of input and output swapped.
#include "engine/cuda/ops_cuda.h"
#include "engine/dispatch.h"
#include "engine/ops/op_utils.h"
#include "engine/ops/ops.h"
#include "engine/profile.h"
#include "kernels/conv.h"

namespace rg {

using namespace ops_detail;
namespace k = kernels;

namespace {

// Adds bias[c] over the channel (last) dimension of contiguous y.
template <typename T>
void add_channel_bias(const k::Conv2dShape& s, int64_t rows, const T* bias, T* y) {
#pragma omp parallel for schedule(static) if (rows * s.c_in > 1 << 15)
  for (int64_t r = 0; r < rows; ++r) {
    T* row = y + r * s.c_in;
    for (int64_t c = 0; c < s.c_in; ++c) row[c] += bias[c];
  }
}

void check_conv_args(const char* op, const Tensor& x, const Tensor& w, const Tensor& bias,
                     const Conv2dParams& p, int64_t w_in_dim, int64_t w_out_dim) {
  check_defined(x, op, "x");
  check_defined(w, op, "weight");
  require_floating(x, op, "x");
  require_floating(w, op, "weight");
  check_same_device(x, w, op);
  RG_CHECK(x.dim() == 4, op, ": input must be 4-D NHWC, got shape ", shape_str(x.shape()));
  RG_CHECK(w.dim() == 4, op, ": weight must be 4-D, got shape ", shape_str(w.shape()));
  RG_CHECK(w.size(w_in_dim) == x.size(3), op, ": input ", shape_str(x.shape()), " has ", x.size(3),
           " channels but weight ", shape_str(w.shape()), " expects ", w.size(w_in_dim));
  if (bias.defined()) {
    check_same_device(x, bias, op);
    RG_CHECK(bias.dim() == 1 && bias.size(0) == w.size(w_out_dim), op, ": bias shape ",
             shape_str(bias.shape()), " does not match ", w.size(w_out_dim), " output channels");
  }
  RG_CHECK(p.stride_h > 0 && p.stride_w > 0, op, ": stride must be positive");
  RG_CHECK(p.pad_h >= 0 && p.pad_w >= 0, op, ": padding must be non-negative");
}

k::Conv2dShape make_shape(int64_t n, int64_t h, int64_t w, int64_t c_in, const Tensor& weight,
                          const Conv2dParams& p) {
  k::Conv2dShape s;
  s.n = n;
  s.h = h;
  s.w = w;
  s.c_in = c_in;
  s.c_out = weight.size(0);
  s.kh = weight.size(1);
  s.kw = weight.size(2);
  s.stride_h = p.stride_h;
  s.stride_w = p.stride_w;
  s.pad_h = p.pad_h;
  s.pad_w = p.pad_w;
  return s;
}

// y = conv(x) on shape s (x is the conv input, y its output).
Tensor run_forward(const k::Conv2dShape& s, const Tensor& x, const Tensor& w, const Tensor& bias,
                   DType cdt) {
  Tensor y = Tensor::empty({s.n, s.out_h(), s.out_w(), s.c_out}, cdt, x.device());
  if (on_cuda(x)) {
    // The CUDA kernels read the bias in fp32 whatever the activations' dtype.
    Tensor b = bias.defined() ? kernel_input(bias, DType::F32) : Tensor();
    if constexpr (kCudaBuild) cuda_ops::conv2d_forward(s, x, w, b, y);
    return y;
  }
  Tensor b = bias.defined() ? kernel_input(bias, cdt) : Tensor();
  dispatch_compute(cdt, "conv2d", [&](auto tag) {
    using T = decltype(tag);
    k::cpu::conv2d_forward<T>(s, x.data<T>(), w.data<T>(), b.defined() ? b.data<T>() : nullptr,
                              y.data<T>());
  });
  return y;
}

// dx of conv on shape s, given dy.
Tensor run_backward_data(const k::Conv2dShape& s, const Tensor& dy, const Tensor& w, DType cdt) {
  Tensor dx = Tensor::empty({s.n, s.h, s.w, s.c_in}, cdt, dy.device());
  if (on_cuda(dy)) {
    if constexpr (kCudaBuild) cuda_ops::conv2d_backward_data(s, dy, w, dx);
    return dx;
  }
  dispatch_compute(cdt, "conv2d_backward_data", [&](auto tag) {
    using T = decltype(tag);
    k::cpu::conv2d_backward_data<T>(s, dy.data<T>(), w.data<T>(), dx.data<T>());
  });
  return dx;
}

// dw (and optionally dbias) of conv on shape s. On a GPU both are f32 whatever cdt is (they
// feed fp32 master weights).
void run_backward_weight(const k::Conv2dShape& s, const Tensor& x, const Tensor& dy, DType cdt,
                         Tensor* dw, Tensor* dbias) {
  if (on_cuda(x)) {
    *dw = Tensor::empty({s.c_out, s.kh, s.kw, s.c_in}, DType::F32, x.device());
    if (dbias) *dbias = Tensor::empty({s.c_out}, DType::F32, x.device());
    if constexpr (kCudaBuild) {
      cuda_ops::conv2d_backward_weight(s, x, dy, *dw, dbias ? *dbias : Tensor());
    }
    return;
  }
  *dw = Tensor::empty({s.c_out, s.kh, s.kw, s.c_in}, cdt);
  if (dbias) *dbias = Tensor::empty({s.c_out}, cdt);
  dispatch_compute(cdt, "conv2d_backward_weight", [&](auto tag) {
    using T = decltype(tag);
    k::cpu::conv2d_backward_weight<T>(s, x.data<T>(), dy.data<T>(), dw->data<T>(),
                                      dbias ? dbias->data<T>() : nullptr);
  });
}

// The transposed-conv parameters that map a conv's output back onto its input: same stride and
// padding, plus the output padding that restores the rows and columns the conv's floor division
// dropped (always in [0, stride)).
Conv2dParams adjoint_params(const k::Conv2dShape& s) {
  Conv2dParams p{s.stride_h, s.stride_w, s.pad_h, s.pad_w, 0, 0};
  p.output_pad_h = s.h + 2 * s.pad_h - s.kh - (s.out_h() - 1) * s.stride_h;
  p.output_pad_w = s.w + 2 * s.pad_w - s.kw - (s.out_w() - 1) * s.stride_w;
  return p;
}

Conv2dParams conv_params(const k::Conv2dShape& s) {
  return Conv2dParams{s.stride_h, s.stride_w, s.pad_h, s.pad_w, 0, 0};
}

Tensor conv2d_weight_grad(const k::Conv2dShape& s, const Tensor& x, const Tensor& dy,
                          DType out_dtype);

// The weight gradient of the conv on shape s, dw = conv2d_weight_grad(x, dy), as a recorded op
// (create_graph). dw is bilinear in (x, dy); for an upstream gradient G (shaped like the weight):
//   d<G, dw>/dx  = the conv's backward-data of dy with weight G = conv_transpose2d(dy, G)
//   d<G, dw>/ddy = the conv's forward of x with weight G         = conv2d(x, G)
// Both are ops again, so this backward can itself be recorded.
class ConvWeightGradBackward final : public Node {
 public:
  ConvWeightGradBackward(const k::Conv2dShape& s, const Tensor& x, const Tensor& dy)
      : Node("conv2d_weight_grad"), s_(s), x_(x), dy_(dy) {}
  std::vector<Tensor> backward(const Tensor& g) override {
    Tensor gx, gdy;
    if (needs_input_grad(0)) {
      gx = kernel_output(conv_transpose2d(dy_, g, Tensor(), adjoint_params(s_)), x_.dtype());
    }
    if (needs_input_grad(1)) {
      gdy = kernel_output(conv2d(x_, g, Tensor(), conv_params(s_)), dy_.dtype());
    }
    return {gx, gdy};
  }
  bool supports_double_backward() const override { return true; }
  void release_saved() override { x_ = dy_ = Tensor(); }

 private:
  k::Conv2dShape s_;
  Tensor x_, dy_;
};

Tensor conv2d_weight_grad(const k::Conv2dShape& s, const Tensor& x, const Tensor& dy,
                          DType out_dtype) {
  const DType cdt = compute_dtype(promote(x.dtype(), dy.dtype()), x.device(), "conv2d");
  Tensor dw;
  run_backward_weight(s, kernel_input(x, cdt), kernel_input(dy, cdt), cdt, &dw, nullptr);
  dw = kernel_output(dw, out_dtype);
  if (any_requires_grad({&x, &dy})) {
    record(dw, std::make_shared<ConvWeightGradBackward>(s, x, dy), {&x, &dy});
  }
  return dw;
}

// What both conv backward nodes keep: the geometry of the convolution the kernels run, the
// saved input and weight, and the dtypes to hand gradients back in. Input and weight are kept
// with their history (their grad_fn is their producer, never this node): a recorded backward
// differentiates through them.
class ConvBackwardBase : public Node {
 public:
  ConvBackwardBase(const char* name, const k::Conv2dShape& s, const Tensor& x, const Tensor& w,
                   const Tensor& bias)
      : Node(name), s_(s), x_(x), w_(w), x_dtype_(x.dtype()),
        w_dtype_(w.dtype()), bias_dtype_(bias.defined() ? bias.dtype() : x.dtype()) {}
  bool supports_double_backward() const override { return true; }
  void release_saved() override {
    x_ = Tensor();
    w_ = Tensor();
  }

 protected:
  // The bias gradient as an op: the sum of g over every dimension but the channels.
  Tensor recorded_bias_grad(const Tensor& g) const {
    return kernel_output(sum(g, {0, 1, 2}), bias_dtype_);
  }

  k::Conv2dShape s_;
  Tensor x_, w_;
  DType x_dtype_, w_dtype_, bias_dtype_;
};

class Conv2dBackward final : public ConvBackwardBase {
 public:
  Conv2dBackward(const k::Conv2dShape& s, const Tensor& x, const Tensor& w, const Tensor& bias)
      : ConvBackwardBase("conv2d", s, x, w, bias) {}
  std::vector<Tensor> backward(const Tensor& g) override {
    if (grad_mode_enabled()) return recorded_backward(g);
    const DType cdt = compute_dtype(x_dtype_, x_.device(), "conv2d");
    Tensor dy = kernel_input(g, cdt);
    Tensor dx, dw, db;
    if (needs_input_grad(0)) {
      dx = kernel_output(run_backward_data(s_, dy, kernel_input(w_, cdt), cdt), x_dtype_);
    }
    if (needs_input_grad(1) || needs_input_grad(2)) {
      Tensor dw_full, db_full;
      run_backward_weight(s_, kernel_input(x_, cdt), dy, cdt, &dw_full,
                          needs_input_grad(2) ? &db_full : nullptr);
      if (needs_input_grad(1)) dw = kernel_output(dw_full, w_dtype_);
      if (needs_input_grad(2)) db = kernel_output(db_full, bias_dtype_);
    }
    return {dx, dw, db};
  }

 private:
  // create_graph: the same three gradients as ops, on the same kernels. Backward-data is the
  // transposed conv with this conv's weight; backward-weight is conv2d_weight_grad.
  std::vector<Tensor> recorded_backward(const Tensor& g) {
    Tensor dx, dw, db;
    if (needs_input_grad(0)) {
      dx = kernel_output(conv_transpose2d(g, w_, Tensor(), adjoint_params(s_)), x_dtype_);
    }
    if (needs_input_grad(1)) dw = conv2d_weight_grad(s_, x_, g, w_dtype_);
    if (needs_input_grad(2)) db = recorded_bias_grad(g);
    return {dx, dw, db};
  }
};

// The adjoint conv of a transposed conv: its input is the transposed conv's output.
class ConvTranspose2dBackward final : public ConvBackwardBase {
 public:
  ConvTranspose2dBackward(const k::Conv2dShape& s, const Tensor& x, const Tensor& w,
                          const Tensor& bias)
      : ConvBackwardBase("conv_transpose2d", s, x, w, bias) {}
  std::vector<Tensor> backward(const Tensor& g) override {
    if (grad_mode_enabled()) return recorded_backward(g);
    const DType cdt = compute_dtype(x_dtype_, x_.device(), "conv_transpose2d");
    Tensor dy = kernel_input(g, cdt);  // [n, s.h, s.w, s.c_in]: the adjoint conv's input
    Tensor dx, dw, db;
    if (needs_input_grad(0)) {
      dx = kernel_output(run_forward(s_, dy, kernel_input(w_, cdt), Tensor(), cdt), x_dtype_);
    }
    if (needs_input_grad(1)) {
      Tensor dw_full;
      run_backward_weight(s_, dy, kernel_input(x_, cdt), cdt, &dw_full, nullptr);
      dw = kernel_output(dw_full, w_dtype_);
    }
    if (needs_input_grad(2)) {
      db = kernel_output(sum(dy.reshape({-1, s_.c_in}), {0}), bias_dtype_);
    }
    return {dx, dw, db};
  }

 private:
  // create_graph: the adjoint conv's forward for dx, its weight gradient (input g, output
  // gradient x) for dw.
  std::vector<Tensor> recorded_backward(const Tensor& g) {
    Tensor dx, dw, db;
    if (needs_input_grad(0)) {
      dx = kernel_output(conv2d(g, w_, Tensor(), conv_params(s_)), x_dtype_);
    }
    if (needs_input_grad(1)) dw = conv2d_weight_grad(s_, g, x_, w_dtype_);
    if (needs_input_grad(2)) db = recorded_bias_grad(g);
    return {dx, dw, db};
  }
};

}  // namespace

Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dParams& p) {
  check_conv_args("conv2d", x, weight, bias, p, 3, 0);
  RG_PROFILE_OP("conv2d", x.shape(), weight.shape());
  const k::Conv2dShape s = make_shape(x.size(0), x.size(1), x.size(2), x.size(3), weight, p);
  // Checked before out_h(): with h + 2*pad < kh its integer division rounds toward zero and
  // would report one output row for a kernel that does not fit.
  RG_CHECK(s.h + 2 * s.pad_h >= s.kh && s.w + 2 * s.pad_w >= s.kw && s.out_h() > 0 &&
               s.out_w() > 0,
           "conv2d: input ", shape_str(x.shape()), " with kernel ",
           s.kh, "x", s.kw, ", stride ", p.stride_h, ", padding ", p.pad_h,
           " gives an empty output");
  const DType cdt = compute_dtype(x.dtype(), x.device(), "conv2d");
  Tensor y = run_forward(s, kernel_input(x, cdt), kernel_input(weight, cdt), bias, cdt);
  y = kernel_output(y, x.dtype());
  if (any_requires_grad({&x, &weight, &bias})) {
    record(y, std::make_shared<Conv2dBackward>(s, x, weight, bias), {&x, &weight, &bias});
  }
  return y;
}

Tensor conv_transpose2d(const Tensor& x, const Tensor& weight, const Tensor& bias,
                        const Conv2dParams& p) {
  check_conv_args("conv_transpose2d", x, weight, bias, p, 0, 3);
  RG_PROFILE_OP("conv_transpose2d", x.shape(), weight.shape());
  RG_CHECK(p.output_pad_h >= 0 && p.output_pad_h < p.stride_h && p.output_pad_w >= 0 &&
               p.output_pad_w < p.stride_w,
           "conv_transpose2d: output padding must be in [0, stride)");
  // The adjoint conv maps [n, oh, ow, c_out] -> [n, h, w, c_in] with OHWI weight [c_in][kh][kw][c_out].
  const int64_t oh = (x.size(1) - 1) * p.stride_h - 2 * p.pad_h + weight.size(1) + p.output_pad_h;
  const int64_t ow = (x.size(2) - 1) * p.stride_w - 2 * p.pad_w + weight.size(2) + p.output_pad_w;
  RG_CHECK(oh > 0 && ow > 0, "conv_transpose2d: input ", shape_str(x.shape()), " with weight ",
           shape_str(weight.shape()), " gives an empty output");
  const k::Conv2dShape s = make_shape(x.size(0), oh, ow, weight.size(3), weight, p);
  RG_CHECK(s.out_h() == x.size(1) && s.out_w() == x.size(2),
           "conv_transpose2d: inconsistent geometry for input ", shape_str(x.shape()));
  const DType cdt = compute_dtype(x.dtype(), x.device(), "conv_transpose2d");
  Tensor y = run_backward_data(s, kernel_input(x, cdt), kernel_input(weight, cdt), cdt);
  if (bias.defined() && on_cuda(y)) {
    NoGradGuard no_grad;  // the bias gradient is recorded by ConvTranspose2dBackward
    y = add(y, kernel_input(bias, cdt));
  } else if (bias.defined()) {
    Tensor b = kernel_input(bias, cdt);
    dispatch_compute(cdt, "conv_transpose2d", [&](auto tag) {
      using T = decltype(tag);
      add_channel_bias<T>(s, s.n * s.h * s.w, b.data<T>(), y.data<T>());
    });
  }
  y = kernel_output(y, x.dtype());
  if (any_requires_grad({&x, &weight, &bias})) {
    record(y, std::make_shared<ConvTranspose2dBackward>(s, x, weight, bias), {&x, &weight, &bias});
  }
  return y;
}

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  check_defined(x, "linear", "x");
  check_defined(weight, "linear", "weight");
  RG_CHECK(x.dim() >= 1, "linear: input must have at least one dimension");
  RG_CHECK(weight.dim() == 2 && weight.size(1) == x.size(-1), "linear: weight ",
           shape_str(weight.shape()), " does not match input ", shape_str(x.shape()),
           " (expected [out, ", x.size(-1), "])");
  // Every row of x is a 1x1 "image" with `in` channels; the OHWI weight [out][1][1][in] is the
  // [out, in] matrix as it lies in memory.
  const int64_t in = x.size(-1), out = weight.size(0);
  Tensor y = conv2d(x.reshape({-1, 1, 1, in}), weight.reshape({out, 1, 1, in}), bias,
                    Conv2dParams{});
  Shape out_shape = x.shape();
  out_shape.back() = out;
  return y.reshape(out_shape);
}

}  // namespace rg
