// Tensor-level CUDA entry points (engine/cuda/ops_cuda.h): checks what the kernels assume
// (device, contiguity, dtypes), picks the element type and launches on the current stream.
#include "engine/cuda/ops_cuda.h"

#include "engine/cuda/conv_dispatch.h"
#include "engine/cuda/runtime.h"
#include "engine/math_mode.h"
#include "kernels/cuda/conv.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/loss.h"
#include "kernels/cuda/norm.h"
#include "kernels/cuda/optim.h"
#include "kernels/cuda/tensor_ops.h"

namespace rg::cuda_ops {

namespace k = kernels;
namespace kc = kernels::cuda;

namespace {

template <typename T>
struct TypeTag {
  using type = T;
};

// Runs f(TypeTag<T>) with T = float or bf16: the element types of the CUDA compute kernels.
template <typename F>
void dispatch_float(DType t, const char* op, F&& f) {
  switch (t) {
    case DType::F32: f(TypeTag<float>{}); return;
    case DType::BF16: f(TypeTag<kc::bf16>{}); return;
    default: RG_FAIL(op, ": no CUDA kernel computes in ", dtype_name(t), " (f32 or bf16 only)");
  }
}

template <typename T>
T* ptr(const Tensor& t) {
  return static_cast<T*>(t.raw_data());
}
// Null for an undefined optional argument.
template <typename T>
T* opt(const Tensor& t) {
  return t.defined() ? ptr<T>(t) : nullptr;
}

cudaStream_t stream_of(const Tensor& t) { return rg::cuda::current_stream(t.device().index); }

// Every tensor argument of a kernel: defined ones on t0's CUDA device and contiguous.
void check_args(const char* op, std::initializer_list<const Tensor*> tensors) {
  const Tensor* first = nullptr;
  for (const Tensor* t : tensors) {
    if (!t->defined()) continue;
    if (first == nullptr) first = t;
    RG_CHECK(t->device().is_cuda(), op, ": tensor of shape ", shape_str(t->shape()), " is on ",
             t->device().str(), ", expected a CUDA device");
    RG_CHECK(t->device() == first->device(), op, ": tensors on ", first->device().str(), " and ",
             t->device().str());
    RG_CHECK(t->is_contiguous(), op, ": CUDA kernels take contiguous tensors, got shape ",
             shape_str(t->shape()), " with strides ", shape_str(t->strides()));
  }
}

void check_f32(const char* op, std::initializer_list<const Tensor*> tensors) {
  for (const Tensor* t : tensors) {
    if (!t->defined()) continue;
    RG_CHECK(t->dtype() == DType::F32, op, ": expected an f32 tensor, got ",
             dtype_name(t->dtype()), " of shape ", shape_str(t->shape()));
  }
}

kc::ElemType elem_type(DType t) { return static_cast<kc::ElemType>(static_cast<int>(t)); }

kc::StridedLayout layout_of(const Tensor& t) {
  kc::StridedLayout l;
  RG_CHECK(t.dim() <= 5, "CUDA copy: tensors have at most 5 dimensions, got shape ",
           shape_str(t.shape()));
  l.ndim = static_cast<int>(t.dim());
  for (int i = 0; i < l.ndim; ++i) {
    l.shape[i] = t.shape()[i];
    l.strides[i] = t.strides()[i];
  }
  if (l.ndim == 0) {  // a scalar: one element
    l.ndim = 1;
    l.shape[0] = 1;
    l.strides[0] = 1;
  }
  return l;
}

kc::ConvMath conv_math() {
  return float32_math() == Float32Math::Tf32 ? kc::ConvMath::Tf32 : kc::ConvMath::Fp32;
}

}  // namespace

// ---------------------------------------------------------------- Tensor itself

void fill(const Tensor& t, double value) {
  if (t.numel() == 0) return;
  if (t.is_contiguous()) {
    kc::fill(elem_type(t.dtype()), t.numel(), value, t.raw_data(), stream_of(t));
    return;
  }
  Tensor tmp = Tensor::empty(t.shape(), t.dtype(), t.device());
  fill(tmp, value);
  copy(t, tmp);
}

void copy(const Tensor& dst, const Tensor& src) {
  RG_CHECK(dst.device() == src.device() && dst.device().is_cuda(), "CUDA copy: from ",
           src.device().str(), " to ", dst.device().str());
  RG_CHECK(dst.shape() == src.shape(), "CUDA copy: shapes ", shape_str(src.shape()), " and ",
           shape_str(dst.shape()), " differ");
  if (dst.numel() == 0) return;
  kc::strided_copy(elem_type(dst.dtype()), layout_of(dst), dst.raw_data(), elem_type(src.dtype()),
                   layout_of(src), src.raw_data(), stream_of(dst));
}

void random_fill(RandomFill kind, const Tensor& t, double a, double b, uint64_t seed,
                 uint64_t offset) {
  if (t.numel() == 0) return;
  const bool direct =
      t.is_contiguous() && (t.dtype() == DType::F32 || t.dtype() == DType::BF16);
  // Other layouts and dtypes: fill an f32 temporary, then convert into place.
  Tensor out = direct ? t : Tensor::empty(t.shape(), DType::F32, t.device());
  dispatch_float(out.dtype(), "random fill", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const float fa = static_cast<float>(a), fb = static_cast<float>(b);
    switch (kind) {
      case RandomFill::Uniform:
        kc::uniform_fill<T>(out.numel(), fa, fb, seed, offset, ptr<T>(out), stream_of(out));
        break;
      case RandomFill::Normal:
        kc::normal_fill<T>(out.numel(), fa, fb, seed, offset, ptr<T>(out), stream_of(out));
        break;
      case RandomFill::Bernoulli:
        kc::bernoulli_fill<T>(out.numel(), fa, seed, offset, ptr<T>(out), stream_of(out));
        break;
    }
  });
  if (!direct) copy(t, out);
}

// ---------------------------------------------------------------- elementwise

void binary(k::BinaryOp op, const k::BroadcastShape& s, const Tensor& a, const Tensor& b,
            const Tensor& out) {
  check_args("binary op", {&a, &b, &out});
  if (out.numel() == 0) return;
  dispatch_float(out.dtype(), "binary op", [&](auto tag) {
    using T = typename decltype(tag)::type;
    kc::binary_forward<T>(op, s, ptr<T>(a), ptr<T>(b), ptr<T>(out), stream_of(out));
  });
}

void unary(k::UnaryOp op, double scalar, const Tensor& x, const Tensor& y) {
  check_args("unary op", {&x, &y});
  if (x.numel() == 0) return;
  dispatch_float(x.dtype(), "unary op", [&](auto tag) {
    using T = typename decltype(tag)::type;
    kc::unary_forward<T>(op, static_cast<float>(scalar), x.numel(), ptr<T>(x), ptr<T>(y),
                         stream_of(x));
  });
}

void activation_forward(k::Activation act, double slope, const Tensor& x, const Tensor& y) {
  check_args("activation", {&x, &y});
  if (x.numel() == 0) return;
  dispatch_float(x.dtype(), "activation", [&](auto tag) {
    using T = typename decltype(tag)::type;
    kc::activation_forward<T>(act, static_cast<float>(slope), x.numel(), ptr<T>(x), ptr<T>(y),
                              stream_of(x));
  });
}

void activation_backward(k::Activation act, double slope, const Tensor& y, const Tensor& dy,
                         const Tensor& dx) {
  check_args("activation backward", {&y, &dy, &dx});
  if (y.numel() == 0) return;
  dispatch_float(y.dtype(), "activation backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    kc::activation_backward<T>(act, static_cast<float>(slope), y.numel(), ptr<T>(y), ptr<T>(dy),
                               ptr<T>(dx), stream_of(y));
  });
}

void sum_rows(int64_t rows, int64_t cols, const Tensor& x, const Tensor& out) {
  check_args("sum", {&x, &out});
  check_f32("sum", {&out});
  dispatch_float(x.dtype(), "sum", [&](auto tag) {
    using T = typename decltype(tag)::type;
    kc::sum_rows<T>(rows, cols, ptr<T>(x), ptr<float>(out), stream_of(x));
  });
}

void sum_columns(int64_t rows, int64_t cols, const Tensor& x, const Tensor& out) {
  check_args("sum", {&x, &out});
  check_f32("sum", {&out});
  dispatch_float(x.dtype(), "sum", [&](auto tag) {
    using T = typename decltype(tag)::type;
    kc::sum_columns<T>(rows, cols, ptr<T>(x), ptr<float>(out), stream_of(x));
  });
}

void accumulate(const Tensor& src, const Tensor& dst) {
  check_args("add_", {&src, &dst});
  RG_CHECK(src.dtype() == dst.dtype(), "add_: dtypes ", dtype_name(src.dtype()), " and ",
           dtype_name(dst.dtype()), " differ");
  if (dst.numel() == 0) return;
  dispatch_float(dst.dtype(), "add_", [&](auto tag) {
    using T = typename decltype(tag)::type;
    kc::accumulate<T>(dst.numel(), ptr<T>(src), ptr<T>(dst), stream_of(dst));
  });
}

// ---------------------------------------------------------------- convolution

void conv2d_forward(const k::Conv2dShape& s, const Tensor& x, const Tensor& w, const Tensor& bias,
                    const Tensor& y) {
  check_args("conv2d", {&x, &w, &bias, &y});
  check_f32("conv2d bias", {&bias});
  dispatch_float(x.dtype(), "conv2d", [&](auto tag) {
    using T = typename decltype(tag)::type;
    rg::cuda::conv2d_forward<T>(x.device().index, s, ptr<T>(x), ptr<T>(w), opt<float>(bias),
                                ptr<T>(y), conv_math(), stream_of(x));
  });
}

void conv2d_backward_data(const k::Conv2dShape& s, const Tensor& dy, const Tensor& w,
                          const Tensor& dx) {
  check_args("conv2d backward (data)", {&dy, &w, &dx});
  dispatch_float(dy.dtype(), "conv2d backward (data)", [&](auto tag) {
    using T = typename decltype(tag)::type;
    rg::cuda::conv2d_backward_data<T>(dy.device().index, s, ptr<T>(dy), ptr<T>(w), ptr<T>(dx),
                                      conv_math(), stream_of(dy));
  });
}

void conv2d_backward_weight(const k::Conv2dShape& s, const Tensor& x, const Tensor& dy,
                            const Tensor& dw, const Tensor& dbias) {
  check_args("conv2d backward (weight)", {&x, &dy, &dw, &dbias});
  check_f32("conv2d backward (weight)", {&dw, &dbias});
  dispatch_float(x.dtype(), "conv2d backward (weight)", [&](auto tag) {
    using T = typename decltype(tag)::type;
    rg::cuda::conv2d_backward_weight<T>(x.device().index, s, ptr<T>(x), ptr<T>(dy),
                                        ptr<float>(dw), opt<float>(dbias), conv_math(),
                                        stream_of(x));
  });
}

// ---------------------------------------------------------------- normalization

namespace {
const kc::NormFusion kNoFusion{};
}

void batch_norm_forward_train(const k::NormShape& s, const Tensor& x, const Tensor& gamma,
                              const Tensor& beta, double eps, const Tensor& y,
                              const Tensor& save_mean, const Tensor& save_invstd) {
  check_args("batch_norm", {&x, &gamma, &beta, &y, &save_mean, &save_invstd});
  check_f32("batch_norm", {&gamma, &beta, &save_mean, &save_invstd});
  dispatch_float(x.dtype(), "batch_norm", [&](auto tag) {
    using T = typename decltype(tag)::type;
    kc::batch_norm_forward_train<T>(s, ptr<T>(x), opt<float>(gamma), opt<float>(beta),
                                    static_cast<float>(eps), kNoFusion, ptr<T>(y),
                                    ptr<float>(save_mean), ptr<float>(save_invstd), stream_of(x));
  });
}

void batch_norm_forward_eval(const k::NormShape& s, const Tensor& x, const Tensor& gamma,
                             const Tensor& beta, const Tensor& mean, const Tensor& var,
                             double eps, const Tensor& y) {
  check_args("batch_norm", {&x, &gamma, &beta, &mean, &var, &y});
  check_f32("batch_norm", {&gamma, &beta, &mean, &var});
  dispatch_float(x.dtype(), "batch_norm", [&](auto tag) {
    using T = typename decltype(tag)::type;
    kc::batch_norm_forward_eval<T>(s, ptr<T>(x), opt<float>(gamma), opt<float>(beta),
                                   ptr<float>(mean), ptr<float>(var), static_cast<float>(eps),
                                   kNoFusion, ptr<T>(y), stream_of(x));
  });
}

void batch_norm_backward_train(const k::NormShape& s, const Tensor& x, const Tensor& dy,
                               const Tensor& gamma, const Tensor& save_mean,
                               const Tensor& save_invstd, const Tensor& dx, const Tensor& dgamma,
                               const Tensor& dbeta) {
  check_args("batch_norm backward", {&x, &dy, &gamma, &save_mean, &save_invstd, &dx, &dgamma,
                                     &dbeta});
  check_f32("batch_norm backward", {&gamma, &save_mean, &save_invstd, &dgamma, &dbeta});
  dispatch_float(x.dtype(), "batch_norm backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    kc::batch_norm_backward_train<T>(s, ptr<T>(x), nullptr, ptr<T>(dy), opt<float>(gamma),
                                     ptr<float>(save_mean), ptr<float>(save_invstd), kNoFusion,
                                     ptr<T>(dx), opt<float>(dgamma), opt<float>(dbeta),
                                     stream_of(x));
  });
}

void batch_norm_backward_eval(const k::NormShape& s, const Tensor& x, const Tensor& dy,
                              const Tensor& gamma, const Tensor& mean, const Tensor& var,
                              double eps, const Tensor& dx, const Tensor& dgamma,
                              const Tensor& dbeta) {
  check_args("batch_norm backward", {&x, &dy, &gamma, &mean, &var, &dx, &dgamma, &dbeta});
  check_f32("batch_norm backward", {&gamma, &mean, &var, &dgamma, &dbeta});
  dispatch_float(x.dtype(), "batch_norm backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    kc::batch_norm_backward_eval<T>(s, ptr<T>(x), nullptr, ptr<T>(dy), opt<float>(gamma),
                                    ptr<float>(mean), ptr<float>(var), static_cast<float>(eps),
                                    kNoFusion, ptr<T>(dx), opt<float>(dgamma), opt<float>(dbeta),
                                    stream_of(x));
  });
}

void batch_norm_update_running(int64_t count, double momentum, double eps,
                               const Tensor& save_mean, const Tensor& save_invstd,
                               const Tensor& running_mean, const Tensor& running_var) {
  check_args("batch_norm running statistics",
             {&save_mean, &save_invstd, &running_mean, &running_var});
  check_f32("batch_norm running statistics",
            {&save_mean, &save_invstd, &running_mean, &running_var});
  kc::batch_norm_update_running(save_mean.numel(), count, static_cast<float>(momentum),
                                static_cast<float>(eps), ptr<float>(save_mean),
                                ptr<float>(save_invstd), ptr<float>(running_mean),
                                ptr<float>(running_var), stream_of(save_mean));
}

void instance_norm_forward(const k::NormShape& s, const Tensor& x, const Tensor& gamma,
                           const Tensor& beta, double eps, const Tensor& y,
                           const Tensor& save_mean, const Tensor& save_invstd) {
  check_args("instance_norm", {&x, &gamma, &beta, &y, &save_mean, &save_invstd});
  check_f32("instance_norm", {&gamma, &beta, &save_mean, &save_invstd});
  dispatch_float(x.dtype(), "instance_norm", [&](auto tag) {
    using T = typename decltype(tag)::type;
    kc::instance_norm_forward<T>(s, ptr<T>(x), opt<float>(gamma), opt<float>(beta),
                                 static_cast<float>(eps), kNoFusion, ptr<T>(y),
                                 ptr<float>(save_mean), ptr<float>(save_invstd), stream_of(x));
  });
}

void instance_norm_backward(const k::NormShape& s, const Tensor& x, const Tensor& dy,
                            const Tensor& gamma, const Tensor& save_mean,
                            const Tensor& save_invstd, const Tensor& dx, const Tensor& dgamma,
                            const Tensor& dbeta) {
  check_args("instance_norm backward",
             {&x, &dy, &gamma, &save_mean, &save_invstd, &dx, &dgamma, &dbeta});
  check_f32("instance_norm backward", {&gamma, &save_mean, &save_invstd, &dgamma, &dbeta});
  dispatch_float(x.dtype(), "instance_norm backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    kc::instance_norm_backward<T>(s, ptr<T>(x), nullptr, ptr<T>(dy), opt<float>(gamma),
                                  ptr<float>(save_mean), ptr<float>(save_invstd), kNoFusion,
                                  ptr<T>(dx), opt<float>(dgamma), opt<float>(dbeta),
                                  stream_of(x));
  });
}

// ---------------------------------------------------------------- losses

void pointwise_loss_forward(k::PointwiseLoss loss, const Tensor& x, const Tensor& t,
                            const Tensor& sum_out) {
  check_args("loss", {&x, &t, &sum_out});
  check_f32("loss", {&sum_out});
  dispatch_float(x.dtype(), "loss", [&](auto tag) {
    using T = typename decltype(tag)::type;
    kc::pointwise_loss_forward<T>(loss, x.numel(), ptr<T>(x), ptr<T>(t), ptr<float>(sum_out),
                                  stream_of(x));
  });
}

void pointwise_loss_backward(k::PointwiseLoss loss, const Tensor& x, const Tensor& t,
                             const Tensor& grad_out, double scale, const Tensor& dx,
                             const Tensor& dt) {
  check_args("loss backward", {&x, &t, &grad_out, &dx, &dt});
  check_f32("loss backward", {&grad_out});
  dispatch_float(x.dtype(), "loss backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    kc::pointwise_loss_backward<T>(loss, x.numel(), ptr<T>(x), ptr<T>(t), ptr<float>(grad_out),
                                   static_cast<float>(scale), opt<T>(dx), opt<T>(dt),
                                   stream_of(x));
  });
}

void dice_sums(int64_t batch, const Tensor& p, const Tensor& t, const Tensor& sums) {
  check_args("soft_dice_loss", {&p, &t, &sums});
  check_f32("soft_dice_loss", {&sums});
  dispatch_float(p.dtype(), "soft_dice_loss", [&](auto tag) {
    using T = typename decltype(tag)::type;
    kc::dice_sums<T>(batch, p.numel() / batch, ptr<T>(p), ptr<T>(t), ptr<float>(sums),
                     stream_of(p));
  });
}

void dice_loss_from_sums(int64_t batch, const Tensor& sums, double smooth,
                         const Tensor& loss_out) {
  check_args("soft_dice_loss", {&sums, &loss_out});
  check_f32("soft_dice_loss", {&sums, &loss_out});
  kc::dice_loss_from_sums(batch, ptr<float>(sums), static_cast<float>(smooth),
                          ptr<float>(loss_out), stream_of(sums));
}

void dice_backward(int64_t batch, const Tensor& p, const Tensor& t, const Tensor& sums,
                   double smooth, const Tensor& grad_out, const Tensor& dp, const Tensor& dt) {
  check_args("soft_dice_loss backward", {&p, &t, &sums, &grad_out, &dp, &dt});
  check_f32("soft_dice_loss backward", {&sums, &grad_out});
  dispatch_float(p.dtype(), "soft_dice_loss backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    kc::dice_backward<T>(batch, p.numel() / batch, ptr<T>(p), ptr<T>(t), ptr<float>(sums),
                         static_cast<float>(smooth), ptr<float>(grad_out), opt<T>(dp),
                         opt<T>(dt), stream_of(p));
  });
}

// ---------------------------------------------------------------- optimizers

void adam_step(const k::AdamConfig& c, const Tensor& param, const Tensor& grad, const Tensor& m,
               const Tensor& v) {
  check_args("Adam::step", {&param, &grad, &m, &v});
  check_f32("Adam::step", {&param, &grad, &m, &v});
  kc::adam_step(c, param.numel(), ptr<float>(param), ptr<float>(grad), ptr<float>(m),
                ptr<float>(v), stream_of(param));
}

void sgd_step(const k::SgdConfig& c, const Tensor& param, const Tensor& grad, const Tensor& buf) {
  check_args("SGD::step", {&param, &grad, &buf});
  check_f32("SGD::step", {&param, &grad, &buf});
  kc::sgd_step(c, param.numel(), ptr<float>(param), ptr<float>(grad), opt<float>(buf),
               stream_of(param));
}

}  // namespace rg::cuda_ops

// The core's entry points into this backend (engine/core_backend.h).
namespace rg::core_backend {

void cuda_fill(const Tensor& t, double value) { cuda_ops::fill(t, value); }
void cuda_copy(const Tensor& dst, const Tensor& src) { cuda_ops::copy(dst, src); }
void cuda_random_fill(RandomFill kind, const Tensor& t, double a, double b, uint64_t seed,
                      uint64_t offset) {
  cuda_ops::random_fill(kind, t, a, b, seed, offset);
}

}  // namespace rg::core_backend
