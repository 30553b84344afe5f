// Elementwise ops: broadcasting arithmetic, scalar ops, unary math and activations.
#include <cmath>

#include "engine/cuda/ops_cuda.h"
#include "engine/dispatch.h"
#include "engine/ops/op_utils.h"
#include "engine/ops/ops.h"
#include "engine/rng.h"
#include "kernels/elementwise.h"

namespace rg {

using namespace ops_detail;
namespace k = kernels;

namespace {

const char* binary_name(k::BinaryOp op) {
  switch (op) {
    case k::BinaryOp::Add: return "add";
    case k::BinaryOp::Sub: return "sub";
    case k::BinaryOp::Mul: return "mul";
    case k::BinaryOp::Div: return "div";
  }
  return "?";
}

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  const size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    const int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    const int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    RG_CHECK(da == db || da == 1 || db == 1, op, ": shapes ", shape_str(a), " and ", shape_str(b),
             " cannot be broadcast together (dimension ", i, ": ", da, " vs ", db, ")");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

// Strides of contiguous `t` read as `out_shape` (0 where t is broadcast), padded to 5-D.
void padded_broadcast_strides(const Shape& t_shape, const Shape& out_shape, int64_t* strides) {
  const Shape contiguous = contiguous_strides(t_shape);
  const int pad = 5 - static_cast<int>(out_shape.size());
  const size_t lead = out_shape.size() - t_shape.size();
  for (int i = 0; i < 5; ++i) {
    strides[i] = 0;
    if (i < pad) continue;
    const size_t od = i - pad;
    if (od < lead) continue;
    const size_t td = od - lead;
    strides[i] = t_shape[td] == 1 ? 0 : contiguous[td];
  }
}

Tensor binary_raw(k::BinaryOp op, const Tensor& a, const Tensor& b) {
  const char* name = binary_name(op);
  check_defined(a, name, "a");
  check_defined(b, name, "b");
  require_floating(a, name, "a");
  require_floating(b, name, "b");
  check_same_device(a, b, name);
  const Shape out_shape = broadcast_shapes(a.shape(), b.shape(), name);
  RG_CHECK(static_cast<int>(out_shape.size()) <= 5, name, ": result has more than 5 dims");
  const DType out_dtype = promote(a.dtype(), b.dtype());
  const DType cdt = compute_dtype(out_dtype, a.device(), name);
  Tensor ac = kernel_input(a, cdt), bc = kernel_input(b, cdt);
  Tensor out = Tensor::empty(out_shape, cdt, a.device());
  k::BroadcastShape s;
  const int pad = 5 - static_cast<int>(out_shape.size());
  for (int i = 0; i < 5; ++i) s.shape[i] = i < pad ? 1 : out_shape[i - pad];
  padded_broadcast_strides(a.shape(), out_shape, s.a_strides);
  padded_broadcast_strides(b.shape(), out_shape, s.b_strides);
  if (on_cuda(out)) {
    if constexpr (kCudaBuild) cuda_ops::binary(op, s, ac, bc, out);
  } else {
    dispatch_compute(cdt, name, [&](auto tag) {
      using T = decltype(tag);
      k::cpu::binary_forward<T>(op, s, ac.data<T>(), bc.data<T>(), out.data<T>());
    });
  }
  return kernel_output(out, out_dtype);
}

class BinaryBackward final : public Node {
 public:
  BinaryBackward(k::BinaryOp op, const Tensor& a, const Tensor& b)
      : Node(binary_name(op)), op_(op), a_shape_(a.shape()), b_shape_(b.shape()),
        a_dtype_(a.dtype()), b_dtype_(b.dtype()) {
    // Only multiplication and division need the operand values. They are kept with their
    // history (an input's grad_fn is its producer, never this node, so no cycle): a recorded
    // backward (create_graph) then differentiates mul(g, b) w.r.t. b as well.
    if (op == k::BinaryOp::Mul || op == k::BinaryOp::Div) {
      a_ = a;
      b_ = b;
    }
  }
  std::vector<Tensor> backward(const Tensor& g) override {
    Tensor ga, gb;
    switch (op_) {
      case k::BinaryOp::Add:
        if (needs_input_grad(0)) ga = g;
        if (needs_input_grad(1)) gb = g;
        break;
      case k::BinaryOp::Sub:
        if (needs_input_grad(0)) ga = g;
        if (needs_input_grad(1)) gb = neg(g);
        break;
      case k::BinaryOp::Mul:
        if (needs_input_grad(0)) ga = mul(g, b_);
        if (needs_input_grad(1)) gb = mul(g, a_);
        break;
      case k::BinaryOp::Div:
        if (needs_input_grad(0)) ga = div(g, b_);
        if (needs_input_grad(1)) gb = neg(div(mul(g, a_), mul(b_, b_)));
        break;
    }
    if (ga.defined()) ga = kernel_output(sum_to_shape(ga, a_shape_), a_dtype_);
    if (gb.defined()) gb = kernel_output(sum_to_shape(gb, b_shape_), b_dtype_);
    return {ga, gb};
  }
  // Made of ops (mul, div, neg, sum_to_shape) only.
  bool supports_double_backward() const override { return true; }
  void release_saved() override {
    a_ = Tensor();
    b_ = Tensor();
  }

 private:
  k::BinaryOp op_;
  Shape a_shape_, b_shape_;
  DType a_dtype_, b_dtype_;
  Tensor a_, b_;
};

Tensor binary(k::BinaryOp op, const Tensor& a, const Tensor& b) {
  Tensor out = binary_raw(op, a, b);
  if (any_requires_grad({&a, &b})) record(out, std::make_shared<BinaryBackward>(op, a, b), {&a, &b});
  return out;
}

const char* unary_name(k::UnaryOp op) {
  switch (op) {
    case k::UnaryOp::Neg: return "neg";
    case k::UnaryOp::Exp: return "exp";
    case k::UnaryOp::Log: return "log";
    case k::UnaryOp::Sqrt: return "sqrt";
    case k::UnaryOp::Square: return "square";
    case k::UnaryOp::AddScalar: return "add_scalar";
    case k::UnaryOp::MulScalar: return "mul_scalar";
  }
  return "?";
}

// Checks x, runs cpu_kernel(n, in, out) or cuda_kernel(in, out) in x's compute dtype and
// returns the result in x's dtype.
template <typename CpuKernel, typename CudaKernel>
Tensor pointwise(const char* name, const Tensor& x, CpuKernel&& cpu_kernel,
                 CudaKernel&& cuda_kernel) {
  check_defined(x, name, "x");
  require_floating(x, name, "x");
  const DType cdt = compute_dtype(x.dtype(), x.device(), name);
  Tensor xc = kernel_input(x, cdt);
  Tensor out = Tensor::empty(x.shape(), cdt, x.device());
  if (on_cuda(x)) {
    cuda_kernel(xc, out);
  } else {
    dispatch_compute(cdt, name, [&](auto tag) {
      using T = decltype(tag);
      cpu_kernel(x.numel(), xc.data<T>(), out.data<T>());
    });
  }
  return kernel_output(out, x.dtype());
}

Tensor unary_raw(k::UnaryOp op, double scalar, const Tensor& x) {
  return pointwise(
      unary_name(op), x,
      [&](int64_t n, const auto* in, auto* out) { k::cpu::unary_forward(op, scalar, n, in, out); },
      [&](const Tensor& in, const Tensor& out) {
        if constexpr (kCudaBuild) cuda_ops::unary(op, scalar, in, out);
      });
}

class UnaryBackward final : public Node {
 public:
  UnaryBackward(k::UnaryOp op, double scalar, const Tensor& x, const Tensor& y)
      : Node(unary_name(op)), op_(op), scalar_(scalar) {
    // The input with its history; the output detached (saved_output reconnects it).
    if (op == k::UnaryOp::Log || op == k::UnaryOp::Square) x_ = x;
    if (op == k::UnaryOp::Exp || op == k::UnaryOp::Sqrt) y_ = y.detach();
  }
  std::vector<Tensor> backward(const Tensor& g) override {
    switch (op_) {
      case k::UnaryOp::Neg: return {neg(g)};
      case k::UnaryOp::Exp: return {mul(g, saved_output(y_))};
      case k::UnaryOp::Log: return {div(g, x_)};
      case k::UnaryOp::Sqrt: return {div(g, mul(saved_output(y_), 2.0))};
      case k::UnaryOp::Square: return {mul(g, mul(x_, 2.0))};
      case k::UnaryOp::AddScalar: return {g};
      case k::UnaryOp::MulScalar: return {mul(g, scalar_)};
    }
    return {Tensor()};
  }
  bool supports_double_backward() const override { return true; }
  void release_saved() override {
    x_ = Tensor();
    y_ = Tensor();
  }

 private:
  k::UnaryOp op_;
  double scalar_;
  Tensor x_, y_;
};

Tensor unary(k::UnaryOp op, double scalar, const Tensor& x) {
  Tensor out = unary_raw(op, scalar, x);
  if (any_requires_grad({&x})) record(out, std::make_shared<UnaryBackward>(op, scalar, x, out), {&x});
  return out;
}

const char* activation_name(k::Activation a) {
  switch (a) {
    case k::Activation::ReLU: return "relu";
    case k::Activation::LeakyReLU: return "leaky_relu";
    case k::Activation::Sigmoid: return "sigmoid";
    case k::Activation::Tanh: return "tanh";
  }
  return "?";
}

class ActivationBackward final : public Node {
 public:
  ActivationBackward(k::Activation act, double slope, const Tensor& y)
      : Node(activation_name(act)), act_(act), slope_(slope), y_(y.detach()) {}
  std::vector<Tensor> backward(const Tensor& g) override {
    if (grad_mode_enabled()) return {recorded_backward(g)};
    return {kernel_backward(g)};
  }
  bool supports_double_backward() const override { return true; }
  void release_saved() override { y_ = Tensor(); }

 private:
  // The fused kernel: dx = g * f'(x), computed from the saved output.
  Tensor kernel_backward(const Tensor& g) {
    const DType cdt = compute_dtype(y_.dtype(), y_.device(), name().c_str());
    Tensor yc = kernel_input(y_, cdt), gc = kernel_input(g, cdt);
    Tensor dx = Tensor::empty(y_.shape(), cdt, y_.device());
    if (on_cuda(dx)) {
      if constexpr (kCudaBuild) cuda_ops::activation_backward(act_, slope_, yc, gc, dx);
    } else {
      dispatch_compute(cdt, name().c_str(), [&](auto tag) {
        using T = decltype(tag);
        k::cpu::activation_backward<T>(act_, slope_, dx.numel(), yc.data<T>(), gc.data<T>(),
                                       dx.data<T>());
      });
    }
    return kernel_output(dx, y_.dtype());
  }

  // The same gradient recorded with ops (create_graph). relu and leaky_relu are piecewise
  // linear: f'(x) is a constant mask (1 or the slope; what the kernel returns for g = 1), so
  // their second derivative is zero and only the path through g remains. sigmoid and tanh write
  // f' through the output, which saved_output reconnects to this node so the recorded
  // backward differentiates into x.
  Tensor recorded_backward(const Tensor& g) {
    switch (act_) {
      case k::Activation::ReLU:
      case k::Activation::LeakyReLU: {
        Tensor slope_mask;
        {
          NoGradGuard no_grad;
          slope_mask = kernel_backward(Tensor::ones(y_.shape(), y_.dtype(), y_.device()));
        }
        return mul(g, slope_mask);
      }
      case k::Activation::Sigmoid: {
        Tensor y = saved_output(y_);
        return mul(g, mul(y, add(neg(y), 1.0)));  // s' = s (1 - s)
      }
      case k::Activation::Tanh: {
        Tensor y = saved_output(y_);
        return mul(g, add(neg(square(y)), 1.0));  // tanh' = 1 - tanh^2
      }
    }
    RG_FAIL("activation backward: unknown activation");
  }

  k::Activation act_;
  double slope_;
  Tensor y_;
};

Tensor activation(k::Activation act, double slope, const Tensor& x) {
  Tensor out = pointwise(
      activation_name(act), x,
      [&](int64_t n, const auto* in, auto* y) { k::cpu::activation_forward(act, slope, n, in, y); },
      [&](const Tensor& in, const Tensor& y) {
        if constexpr (kCudaBuild) cuda_ops::activation_forward(act, slope, in, y);
      });
  if (any_requires_grad({&x})) record(out, std::make_shared<ActivationBackward>(act, slope, out), {&x});
  return out;
}

}  // namespace

Tensor add(const Tensor& a, const Tensor& b) { return binary(k::BinaryOp::Add, a, b); }
Tensor sub(const Tensor& a, const Tensor& b) { return binary(k::BinaryOp::Sub, a, b); }
Tensor mul(const Tensor& a, const Tensor& b) { return binary(k::BinaryOp::Mul, a, b); }
Tensor div(const Tensor& a, const Tensor& b) { return binary(k::BinaryOp::Div, a, b); }
Tensor add(const Tensor& a, double s) { return unary(k::UnaryOp::AddScalar, s, a); }
Tensor mul(const Tensor& a, double s) { return unary(k::UnaryOp::MulScalar, s, a); }
Tensor neg(const Tensor& a) { return unary(k::UnaryOp::Neg, 0.0, a); }
Tensor exp(const Tensor& a) { return unary(k::UnaryOp::Exp, 0.0, a); }
Tensor log(const Tensor& a) { return unary(k::UnaryOp::Log, 0.0, a); }
Tensor sqrt(const Tensor& a) { return unary(k::UnaryOp::Sqrt, 0.0, a); }
Tensor square(const Tensor& a) { return unary(k::UnaryOp::Square, 0.0, a); }

Tensor relu(const Tensor& x) { return activation(k::Activation::ReLU, 0.0, x); }
Tensor leaky_relu(const Tensor& x, double negative_slope) {
  RG_CHECK(negative_slope >= 0.0, "leaky_relu: negative_slope must be >= 0, got ", negative_slope);
  return activation(k::Activation::LeakyReLU, negative_slope, x);
}
Tensor sigmoid(const Tensor& x) { return activation(k::Activation::Sigmoid, 0.0, x); }
Tensor tanh(const Tensor& x) { return activation(k::Activation::Tanh, 0.0, x); }

Tensor dropout(const Tensor& x, double p, bool training, Generator& gen) {
  check_defined(x, "dropout", "x");
  RG_CHECK(p >= 0.0 && p < 1.0, "dropout: p must be in [0, 1), got ", p);
  if (!training || p == 0.0) return x;
  // keep ~ Bernoulli(1-p), scaled so the expectation is unchanged; mul records the backward.
  Tensor keep = Tensor::empty(x.shape(), compute_dtype(x.dtype(), x.device(), "dropout"),
                              x.device());
  bernoulli_(keep, 1.0 - p, gen);
  return mul(x, mul(keep, 1.0 / (1.0 - p)));
}

void add_(Tensor& dst, const Tensor& src) {
  check_defined(dst, "add_", "dst");
  check_defined(src, "add_", "src");
  RG_CHECK(dst.shape() == src.shape(), "add_: shapes ", shape_str(dst.shape()), " and ",
           shape_str(src.shape()), " differ");
  check_same_device(dst, src, "add_");
  if (on_cuda(dst) && dst.is_contiguous() &&
      (dst.dtype() == DType::F32 || dst.dtype() == DType::BF16)) {
    if constexpr (kCudaBuild) cuda_ops::accumulate(kernel_input(src, dst.dtype()), dst);
    return;
  }
  if (!on_cuda(dst) && dst.is_contiguous() &&
      (dst.dtype() == DType::F32 || dst.dtype() == DType::F64)) {
    Tensor s = kernel_input(src, dst.dtype());
    dispatch_compute(dst.dtype(), "add_", [&](auto tag) {
      using T = decltype(tag);
      k::cpu::accumulate<T>(dst.numel(), s.data<T>(), dst.data<T>());
    });
    return;
  }
  NoGradGuard no_grad;
  dst.copy_(add(dst.detach(), src.detach()));
}

void mul_(Tensor& dst, double s) {
  check_defined(dst, "mul_", "dst");
  NoGradGuard no_grad;
  dst.copy_(mul(dst.detach(), s));
}

// Autograd's accumulation of gradients (engine/core_backend.h).
Tensor core_backend::add_gradients(const Tensor& a, const Tensor& b) { return add(a, b); }
void core_backend::accumulate_into(Tensor& grad, const Tensor& g) { add_(grad, g); }

}  // namespace rg
