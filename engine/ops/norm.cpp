// batch_norm and instance_norm over NHWC tensors.
#include "engine/cuda/ops_cuda.h"
#include "engine/dispatch.h"
#include "engine/ops/op_utils.h"
#include "engine/ops/ops.h"
#include "engine/profile.h"
#include "kernels/norm.h"

namespace rg {

using namespace ops_detail;
namespace k = kernels;

namespace {

void check_norm_args(const char* op, const Tensor& x, const Tensor& gamma, const Tensor& beta) {
  check_defined(x, op, "x");
  require_floating(x, op, "x");
  RG_CHECK(x.dim() >= 2, op, ": input must be [N, ..., C], got shape ", shape_str(x.shape()));
  const int64_t c = x.size(-1);
  for (const Tensor* t : {&gamma, &beta}) {
    if (!t->defined()) continue;
    check_same_device(x, *t, op);
    RG_CHECK(t->dim() == 1 && t->size(0) == c, op, ": affine parameter of shape ",
             shape_str(t->shape()), " does not match ", c, " channels of input ",
             shape_str(x.shape()));
  }
}

k::NormShape norm_shape(const Tensor& x) {
  k::NormShape s;
  s.n = x.size(0);
  s.c = x.size(-1);
  s.hw = s.c == 0 || s.n == 0 ? 0 : x.numel() / (s.n * s.c);
  return s;
}

// A kernel argument: the compute-dtype copy of an optional tensor, or null.
template <typename T>
const T* opt_ptr(const Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}

enum class NormKind { BatchTrain, BatchEval, Instance };

// The dtype of gamma, beta and the statistics the kernels take: f32 on a GPU (also for bf16
// activations: norms accumulate in fp32), the compute dtype on the CPU.
DType param_dtype(DType cdt, const Tensor& x) { return on_cuda(x) ? DType::F32 : cdt; }

// The CUDA backward of each norm kind; arguments as NormBackward::backward prepares them.
void cuda_norm_backward(NormKind kind, const k::NormShape& s, double eps, const Tensor& x,
                        const Tensor& dy, const Tensor& gamma, const Tensor& a, const Tensor& b,
                        const Tensor& dx, const Tensor& dgamma, const Tensor& dbeta) {
  if constexpr (kCudaBuild) {
    switch (kind) {
      case NormKind::BatchTrain:
        cuda_ops::batch_norm_backward_train(s, x, dy, gamma, a, b, dx, dgamma, dbeta);
        break;
      case NormKind::BatchEval:
        cuda_ops::batch_norm_backward_eval(s, x, dy, gamma, a, b, eps, dx, dgamma, dbeta);
        break;
      case NormKind::Instance:
        cuda_ops::instance_norm_backward(s, x, dy, gamma, a, b, dx, dgamma, dbeta);
        break;
    }
  }
}

class NormBackward final : public Node {
 public:
  NormBackward(NormKind kind, const k::NormShape& s, double eps, const Tensor& x,
               const Tensor& gamma, const Tensor& beta, Tensor stat_a, Tensor stat_b)
      : Node(kind == NormKind::Instance ? "instance_norm" : "batch_norm"), kind_(kind), s_(s),
        eps_(eps), x_(x), gamma_(gamma),
        x_dtype_(x.dtype()), gamma_dtype_(gamma.defined() ? gamma.dtype() : x.dtype()),
        beta_dtype_(beta.defined() ? beta.dtype() : x.dtype()), stat_a_(std::move(stat_a)),
        stat_b_(std::move(stat_b)) {}

  std::vector<Tensor> backward(const Tensor& g) override {
    if (grad_mode_enabled()) return recorded_backward(g);
    const DType cdt = compute_dtype(x_dtype_, x_.device(), name().c_str());
    const DType pdt = param_dtype(cdt, x_);
    const Device dev = x_.device();
    Tensor xc = kernel_input(x_, cdt), dy = kernel_input(g, cdt);
    Tensor gc = gamma_.defined() ? kernel_input(gamma_, pdt) : Tensor();
    Tensor a = kernel_input(stat_a_, pdt), b = kernel_input(stat_b_, pdt);
    Tensor dx = Tensor::empty(x_.shape(), cdt, dev);
    Tensor dgamma = needs_input_grad(1) ? Tensor::empty({s_.c}, pdt, dev) : Tensor();
    Tensor dbeta = needs_input_grad(2) ? Tensor::empty({s_.c}, pdt, dev) : Tensor();
    if (on_cuda(x_)) {
      cuda_norm_backward(kind_, s_, eps_, xc, dy, gc, a, b, dx, dgamma, dbeta);
    } else {
      cpu_backward(cdt, xc, dy, gc, a, b, dx, dgamma, dbeta);
    }
    return {needs_input_grad(0) ? kernel_output(dx, x_dtype_) : Tensor(),
            dgamma.defined() ? kernel_output(dgamma, gamma_dtype_) : Tensor(),
            dbeta.defined() ? kernel_output(dbeta, beta_dtype_) : Tensor()};
  }
  bool supports_double_backward() const override { return true; }
  void release_saved() override {
    x_ = gamma_ = stat_a_ = stat_b_ = Tensor();
  }

 private:
  // create_graph: the gradients written with ops, statistics recomputed from x with history so
  // that they are differentiated too. With R the dimensions a statistic runs over (all but C
  // for batch norm, H and W for instance norm), x^ = (x - mean_R x) * invstd and gy = g * gamma:
  //   dx = invstd * (gy - mean_R(gy) - x^ * mean_R(gy * x^)),  dgamma = sum(g * x^),  dbeta = sum(g)
  // (gamma and beta sums over every dimension but C). Eval batch norm normalizes with the
  // running statistics, constants: dx = gy * invstd.
  std::vector<Tensor> recorded_backward(const Tensor& g) {
    const int64_t nd = x_.dim();
    std::vector<int64_t> stat_dims, param_dims;
    for (int64_t d = 0; d + 1 < nd; ++d) {
      param_dims.push_back(d);
      if (kind_ != NormKind::Instance || d > 0) stat_dims.push_back(d);
    }
    Tensor gy = gamma_.defined() ? mul(g, gamma_) : g;
    Tensor xhat, dx;
    if (kind_ == NormKind::BatchEval) {
      Tensor invstd;
      {
        NoGradGuard no_grad;
        invstd = div(Tensor::ones({}, stat_b_.dtype(), stat_b_.device()),
                     sqrt(add(stat_b_, eps_)));
      }
      xhat = mul(sub(x_, stat_a_), invstd);
      if (needs_input_grad(0)) dx = mul(gy, invstd);
    } else {
      Tensor centered = sub(x_, mean(x_, stat_dims, true));
      Tensor var = mean(square(centered), stat_dims, true);
      Tensor invstd = div(Tensor::ones({}, var.dtype(), var.device()), sqrt(add(var, eps_)));
      xhat = mul(centered, invstd);
      if (needs_input_grad(0)) {
        Tensor inner = sub(sub(gy, mean(gy, stat_dims, true)),
                           mul(xhat, mean(mul(gy, xhat), stat_dims, true)));
        dx = mul(invstd, inner);
      }
    }
    return {dx.defined() ? kernel_output(dx, x_dtype_) : Tensor(),
            needs_input_grad(1) ? kernel_output(sum(mul(g, xhat), param_dims), gamma_dtype_)
                                : Tensor(),
            needs_input_grad(2) ? kernel_output(sum(g, param_dims), beta_dtype_) : Tensor()};
  }

  void cpu_backward(DType cdt, const Tensor& xc, const Tensor& dy, const Tensor& gc,
                    const Tensor& a, const Tensor& b, const Tensor& dx, const Tensor& dgamma,
                    const Tensor& dbeta) {
    dispatch_compute(cdt, name().c_str(), [&](auto tag) {
      using T = decltype(tag);
      T* dg = dgamma.defined() ? dgamma.data<T>() : nullptr;
      T* db = dbeta.defined() ? dbeta.data<T>() : nullptr;
      switch (kind_) {
        case NormKind::BatchTrain:
          k::cpu::batch_norm_backward_train<T>(s_, xc.data<T>(), dy.data<T>(), opt_ptr<T>(gc),
                                               a.data<T>(), b.data<T>(), dx.data<T>(), dg, db);
          break;
        case NormKind::BatchEval:
          k::cpu::batch_norm_backward_eval<T>(s_, xc.data<T>(), dy.data<T>(), opt_ptr<T>(gc),
                                              a.data<T>(), b.data<T>(), eps_, dx.data<T>(), dg, db);
          break;
        case NormKind::Instance:
          k::cpu::instance_norm_backward<T>(s_, xc.data<T>(), dy.data<T>(), opt_ptr<T>(gc),
                                            a.data<T>(), b.data<T>(), dx.data<T>(), dg, db);
          break;
      }
    });
  }

  NormKind kind_;
  k::NormShape s_;
  double eps_;
  Tensor x_, gamma_;
  DType x_dtype_, gamma_dtype_, beta_dtype_;
  // Train/instance: saved mean and invstd. Eval: running mean and var (copies).
  Tensor stat_a_, stat_b_;
};

void batch_norm_cpu(const k::NormShape& s, bool training, double momentum, double eps,
                    const Tensor& xc, const Tensor& gc, const Tensor& bc, const Tensor& y,
                    const Tensor& stat_a, const Tensor& stat_b, Tensor& running_mean,
                    Tensor& running_var) {
  const DType cdt = xc.dtype();
  const int64_t count = s.n * s.hw;
  dispatch_compute(cdt, "batch_norm", [&](auto tag) {
    using T = decltype(tag);
    if (training) {
      k::cpu::batch_norm_forward_train<T>(s, xc.data<T>(), opt_ptr<T>(gc), opt_ptr<T>(bc), eps,
                                          y.data<T>(), stat_a.data<T>(), stat_b.data<T>());
    } else {
      k::cpu::batch_norm_forward_eval<T>(s, xc.data<T>(), opt_ptr<T>(gc), opt_ptr<T>(bc),
                                         stat_a.data<T>(), stat_b.data<T>(), eps, y.data<T>());
    }
  });
  if (training && running_mean.defined()) {
    // running = (1 - m) * running + m * batch, with the unbiased batch variance (count / (count-1)).
    NoGradGuard no_grad;
    const std::vector<double> mean_v = cpu_values(stat_a);
    const std::vector<double> invstd_v = cpu_values(stat_b);
    std::vector<double> rm = cpu_values(running_mean), rv = cpu_values(running_var);
    const double unbias = static_cast<double>(count) / static_cast<double>(count - 1);
    for (int64_t c = 0; c < s.c; ++c) {
      const double var = 1.0 / (invstd_v[c] * invstd_v[c]) - eps;
      rm[c] = (1.0 - momentum) * rm[c] + momentum * mean_v[c];
      rv[c] = (1.0 - momentum) * rv[c] + momentum * var * unbias;
    }
    running_mean.copy_(Tensor::from_vector(rm, {s.c}));
    running_var.copy_(Tensor::from_vector(rv, {s.c}));
  }
}

}  // namespace

Tensor batch_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, Tensor running_mean,
                  Tensor running_var, bool training, double momentum, double eps) {
  check_norm_args("batch_norm", x, gamma, beta);
  RG_PROFILE_OP("batch_norm", x.shape());
  const k::NormShape s = norm_shape(x);
  RG_CHECK(running_mean.defined() == running_var.defined(),
           "batch_norm: running_mean and running_var must be given together");
  for (const Tensor* t : {&running_mean, &running_var}) {
    if (!t->defined()) continue;
    RG_CHECK(t->dim() == 1 && t->size(0) == s.c, "batch_norm: running statistic of shape ",
             shape_str(t->shape()), " does not match ", s.c, " channels of input ",
             shape_str(x.shape()));
  }
  RG_CHECK(training || running_mean.defined(),
           "batch_norm: eval mode needs running_mean and running_var");
  const int64_t count = s.n * s.hw;
  RG_CHECK(!training || count > 1, "batch_norm: training needs more than one value per channel, "
           "got input shape ", shape_str(x.shape()));

  const DType cdt = compute_dtype(x.dtype(), x.device(), "batch_norm");
  const DType pdt = param_dtype(cdt, x);
  const Device dev = x.device();
  Tensor xc = kernel_input(x, cdt);
  Tensor gc = gamma.defined() ? kernel_input(gamma, pdt) : Tensor();
  Tensor bc = beta.defined() ? kernel_input(beta, pdt) : Tensor();
  Tensor y = Tensor::empty(x.shape(), cdt, dev);
  Tensor stat_a, stat_b;
  if (training) {
    stat_a = Tensor::empty({s.c}, pdt, dev);  // batch mean
    stat_b = Tensor::empty({s.c}, pdt, dev);  // batch invstd
  } else {
    stat_a = kernel_input(running_mean, pdt).clone();
    stat_b = kernel_input(running_var, pdt).clone();
  }
  if (on_cuda(x)) {
    if constexpr (kCudaBuild) {
      if (training) {
        cuda_ops::batch_norm_forward_train(s, xc, gc, bc, eps, y, stat_a, stat_b);
        if (running_mean.defined()) {
          // In place on the device when the running statistics are f32 and contiguous (the
          // BatchNorm2d module's are); otherwise through f32 copies.
          const bool direct = running_mean.dtype() == DType::F32 &&
                              running_var.dtype() == DType::F32 &&
                              running_mean.is_contiguous() && running_var.is_contiguous();
          Tensor rm = direct ? running_mean : kernel_input(running_mean, DType::F32).clone();
          Tensor rv = direct ? running_var : kernel_input(running_var, DType::F32).clone();
          cuda_ops::batch_norm_update_running(count, momentum, eps, stat_a, stat_b, rm, rv);
          if (!direct) {
            running_mean.copy_(rm);
            running_var.copy_(rv);
          }
        }
      } else {
        cuda_ops::batch_norm_forward_eval(s, xc, gc, bc, stat_a, stat_b, eps, y);
      }
    }
  } else {
    batch_norm_cpu(s, training, momentum, eps, xc, gc, bc, y, stat_a, stat_b, running_mean,
                   running_var);
  }
  y = kernel_output(y, x.dtype());
  if (any_requires_grad({&x, &gamma, &beta})) {
    record(y,
           std::make_shared<NormBackward>(training ? NormKind::BatchTrain : NormKind::BatchEval, s,
                                          eps, x, gamma, beta, stat_a, stat_b),
           {&x, &gamma, &beta});
  }
  return y;
}

Tensor layer_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, double eps) {
  check_defined(x, "layer_norm", "x");
  require_floating(x, "layer_norm", "x");
  RG_CHECK(x.dim() >= 2, "layer_norm: input must be [N, ...], got shape ", shape_str(x.shape()));
  RG_CHECK(eps >= 0.0, "layer_norm: eps must be >= 0, got ", eps);
  for (const Tensor* t : {&gamma, &beta}) {
    if (!t->defined()) continue;
    check_same_device(x, *t, "layer_norm");
    // A trailing part of the per-sample shape: [C] (per channel) up to [H, W, C].
    bool ok = t->dim() >= 1 && t->dim() < x.dim();
    for (int64_t i = 1; ok && i <= t->dim(); ++i) ok = t->size(-i) == x.size(-i);
    RG_CHECK(ok, "layer_norm: affine parameter of shape ", shape_str(t->shape()),
             " is not a trailing part of the per-sample shape of input ", shape_str(x.shape()));
  }
  RG_PROFILE_OP("layer_norm", x.shape());
  // Composed of recorded ops (no dedicated kernel): it is used by small critics, where the
  // extra passes are cheap, and it differentiates twice for free. The variance is the biased
  // one, as in batch and instance norm.
  std::vector<int64_t> dims;
  for (int64_t d = 1; d < x.dim(); ++d) dims.push_back(d);
  Tensor centered = sub(x, mean(x, dims, true));
  Tensor var = mean(square(centered), dims, true);
  Tensor y = div(centered, sqrt(add(var, eps)));
  if (gamma.defined()) y = mul(y, gamma);
  if (beta.defined()) y = add(y, beta);
  return y;
}

Tensor instance_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, double eps) {
  check_norm_args("instance_norm", x, gamma, beta);
  RG_PROFILE_OP("instance_norm", x.shape());
  const k::NormShape s = norm_shape(x);
  const DType cdt = compute_dtype(x.dtype(), x.device(), "instance_norm");
  const DType pdt = param_dtype(cdt, x);
  const Device dev = x.device();
  Tensor xc = kernel_input(x, cdt);
  Tensor gc = gamma.defined() ? kernel_input(gamma, pdt) : Tensor();
  Tensor bc = beta.defined() ? kernel_input(beta, pdt) : Tensor();
  Tensor y = Tensor::empty(x.shape(), cdt, dev);
  Tensor mean_t = Tensor::empty({s.n, s.c}, pdt, dev);
  Tensor invstd_t = Tensor::empty({s.n, s.c}, pdt, dev);
  if (on_cuda(x)) {
    if constexpr (kCudaBuild) {
      cuda_ops::instance_norm_forward(s, xc, gc, bc, eps, y, mean_t, invstd_t);
    }
  } else {
    dispatch_compute(cdt, "instance_norm", [&](auto tag) {
      using T = decltype(tag);
      k::cpu::instance_norm_forward<T>(s, xc.data<T>(), opt_ptr<T>(gc), opt_ptr<T>(bc), eps,
                                       y.data<T>(), mean_t.data<T>(), invstd_t.data<T>());
    });
  }
  y = kernel_output(y, x.dtype());
  if (any_requires_grad({&x, &gamma, &beta})) {
    record(y,
           std::make_shared<NormBackward>(NormKind::Instance, s, eps, x, gamma, beta, mean_t,
                                          invstd_t),
           {&x, &gamma, &beta});
  }
  return y;
}

}  // namespace rg
