// Losses with mean reduction: bce_with_logits, l1, mse, soft Dice.
#include "engine/cuda/ops_cuda.h"
#include "engine/dispatch.h"
#include "engine/ops/op_utils.h"
#include "engine/ops/ops.h"
#include "kernels/loss.h"

namespace rg {

using namespace ops_detail;
namespace k = kernels;

namespace {

const char* loss_name(k::PointwiseLoss loss) {
  switch (loss) {
    case k::PointwiseLoss::BceWithLogits: return "bce_with_logits";
    case k::PointwiseLoss::L1: return "l1_loss";
    case k::PointwiseLoss::Mse: return "mse_loss";
  }
  return "?";
}

void check_loss_args(const char* op, const Tensor& input, const Tensor& target) {
  check_defined(input, op, "input");
  check_defined(target, op, "target");
  require_floating(input, op, "input");
  require_floating(target, op, "target");
  check_same_device(input, target, op);
  RG_CHECK(input.shape() == target.shape(), op, ": input shape ", shape_str(input.shape()),
           " differs from target shape ", shape_str(target.shape()));
  RG_CHECK(input.numel() > 0, op, ": empty input of shape ", shape_str(input.shape()));
}

// The loss value's dtype: the promoted input dtype, but at least f32. A bf16 scalar would keep
// 3 significant digits of a sum accumulated in fp32 or double (autocast computes losses in
// fp32 for the same reason); the input gradients keep the inputs' dtypes.
DType loss_dtype(const Tensor& input, const Tensor& target) {
  const DType d = promote(input.dtype(), target.dtype());
  return d == DType::F64 ? DType::F64 : DType::F32;
}

class PointwiseLossBackward final : public Node {
 public:
  PointwiseLossBackward(k::PointwiseLoss loss, const Tensor& x, const Tensor& t)
      : Node(loss_name(loss)), loss_(loss), x_(x.detach()), t_(t.detach()) {}
  std::vector<Tensor> backward(const Tensor& g) override {
    const Device dev = x_.device();
    const DType cdt = compute_dtype(promote(x_.dtype(), t_.dtype()), dev, name().c_str());
    Tensor xc = kernel_input(x_, cdt), tc = kernel_input(t_, cdt);
    Tensor dx = needs_input_grad(0) ? Tensor::empty(x_.shape(), cdt, dev) : Tensor();
    Tensor dt = needs_input_grad(1) ? Tensor::empty(t_.shape(), cdt, dev) : Tensor();
    const double inv_count = 1.0 / static_cast<double>(x_.numel());
    if (on_cuda(x_)) {
      // The upstream gradient stays on the device (no host synchronization in a step).
      if constexpr (kCudaBuild) {
        cuda_ops::pointwise_loss_backward(loss_, xc, tc, kernel_input(g, DType::F32), inv_count,
                                          dx, dt);
      }
    } else {
      const double scale = cpu_scalar(g) * inv_count;
      dispatch_compute(cdt, name().c_str(), [&](auto tag) {
        using T = decltype(tag);
        k::cpu::pointwise_loss_backward<T>(loss_, x_.numel(), xc.data<T>(), tc.data<T>(), scale,
                                           dx.defined() ? dx.data<T>() : nullptr,
                                           dt.defined() ? dt.data<T>() : nullptr);
      });
    }
    return {dx.defined() ? kernel_output(dx, x_.dtype()) : Tensor(),
            dt.defined() ? kernel_output(dt, t_.dtype()) : Tensor()};
  }
  void release_saved() override { x_ = t_ = Tensor(); }

 private:
  k::PointwiseLoss loss_;
  Tensor x_, t_;
};

Tensor pointwise_loss(k::PointwiseLoss loss, const Tensor& input, const Tensor& target) {
  const char* op = loss_name(loss);
  check_loss_args(op, input, target);
  const DType out_dtype = loss_dtype(input, target);
  const DType cdt = compute_dtype(out_dtype, input.device(), op);
  Tensor xc = kernel_input(input, cdt), tc = kernel_input(target, cdt);
  const double inv_count = 1.0 / static_cast<double>(input.numel());
  Tensor out;
  if (on_cuda(input)) {
    Tensor total = Tensor::empty({}, DType::F32, input.device());
    if constexpr (kCudaBuild) cuda_ops::pointwise_loss_forward(loss, xc, tc, total);
    NoGradGuard no_grad;
    out = kernel_output(mul(total, inv_count), out_dtype);
  } else {
    const double total = dispatch_compute(cdt, op, [&](auto tag) {
      using T = decltype(tag);
      return k::cpu::pointwise_loss_forward<T>(loss, input.numel(), xc.data<T>(), tc.data<T>());
    });
    out = Tensor::scalar(total * inv_count, out_dtype);
  }
  if (any_requires_grad({&input, &target})) {
    record(out, std::make_shared<PointwiseLossBackward>(loss, input, target), {&input, &target});
  }
  return out;
}

class SoftDiceBackward final : public Node {
 public:
  // CPU: the per-sample sums on the host. GPU: `device_sums` [batch][3] f32 on the device.
  SoftDiceBackward(const Tensor& p, const Tensor& t, double smooth, std::vector<double> inter,
                   std::vector<double> psum, std::vector<double> tsum, Tensor device_sums)
      : Node("soft_dice_loss"), p_(p.detach()), t_(t.detach()), smooth_(smooth),
        inter_(std::move(inter)), psum_(std::move(psum)), tsum_(std::move(tsum)),
        device_sums_(std::move(device_sums)) {}
  std::vector<Tensor> backward(const Tensor& g) override {
    const Device dev = p_.device();
    const DType cdt = compute_dtype(promote(p_.dtype(), t_.dtype()), dev, "soft_dice_loss");
    Tensor pc = kernel_input(p_, cdt), tc = kernel_input(t_, cdt);
    const int64_t batch = p_.size(0), per = p_.numel() / batch;
    Tensor dp = needs_input_grad(0) ? Tensor::empty(p_.shape(), cdt, dev) : Tensor();
    Tensor dt = needs_input_grad(1) ? Tensor::empty(t_.shape(), cdt, dev) : Tensor();
    if (on_cuda(p_)) {
      if constexpr (kCudaBuild) {
        cuda_ops::dice_backward(batch, pc, tc, device_sums_, smooth_, kernel_input(g, DType::F32),
                                dp, dt);
      }
      return {dp.defined() ? kernel_output(dp, p_.dtype()) : Tensor(),
              dt.defined() ? kernel_output(dt, t_.dtype()) : Tensor()};
    }
    dispatch_compute(cdt, "soft_dice_loss", [&](auto tag) {
      using T = decltype(tag);
      k::cpu::dice_backward<T>(batch, per, pc.data<T>(), tc.data<T>(), inter_.data(),
                               psum_.data(), tsum_.data(), smooth_, cpu_scalar(g),
                               dp.defined() ? dp.data<T>() : nullptr,
                               dt.defined() ? dt.data<T>() : nullptr);
    });
    return {dp.defined() ? kernel_output(dp, p_.dtype()) : Tensor(),
            dt.defined() ? kernel_output(dt, t_.dtype()) : Tensor()};
  }
  void release_saved() override { p_ = t_ = device_sums_ = Tensor(); }

 private:
  Tensor p_, t_;
  double smooth_;
  std::vector<double> inter_, psum_, tsum_;
  Tensor device_sums_;
};

}  // namespace

Tensor bce_with_logits(const Tensor& logits, const Tensor& target) {
  return pointwise_loss(k::PointwiseLoss::BceWithLogits, logits, target);
}
Tensor l1_loss(const Tensor& input, const Tensor& target) {
  return pointwise_loss(k::PointwiseLoss::L1, input, target);
}
Tensor mse_loss(const Tensor& input, const Tensor& target) {
  return pointwise_loss(k::PointwiseLoss::Mse, input, target);
}

Tensor soft_dice_loss(const Tensor& probs, const Tensor& target, double smooth) {
  check_loss_args("soft_dice_loss", probs, target);
  RG_CHECK(smooth > 0.0, "soft_dice_loss: smooth must be > 0, got ", smooth);
  const DType out_dtype = loss_dtype(probs, target);
  const DType cdt = compute_dtype(out_dtype, probs.device(), "soft_dice_loss");
  Tensor pc = kernel_input(probs, cdt), tc = kernel_input(target, cdt);
  const int64_t batch = probs.size(0), per = probs.numel() / batch;
  if (on_cuda(probs)) {
    Tensor sums = Tensor::empty({batch, 3}, DType::F32, probs.device());
    Tensor loss = Tensor::empty({}, DType::F32, probs.device());
    if constexpr (kCudaBuild) {
      cuda_ops::dice_sums(batch, pc, tc, sums);
      cuda_ops::dice_loss_from_sums(batch, sums, smooth, loss);
    }
    Tensor out = kernel_output(loss, out_dtype);
    if (any_requires_grad({&probs, &target})) {
      record(out, std::make_shared<SoftDiceBackward>(probs, target, smooth, std::vector<double>{},
                                                     std::vector<double>{},
                                                     std::vector<double>{}, sums),
             {&probs, &target});
    }
    return out;
  }
  std::vector<double> inter(batch), psum(batch), tsum(batch);
  dispatch_compute(cdt, "soft_dice_loss", [&](auto tag) {
    using T = decltype(tag);
    k::cpu::dice_sums<T>(batch, per, pc.data<T>(), tc.data<T>(), inter.data(), psum.data(),
                         tsum.data());
  });
  double total = 0.0;
  for (int64_t b = 0; b < batch; ++b) {
    total += 1.0 - (2.0 * inter[b] + smooth) / (psum[b] + tsum[b] + smooth);
  }
  Tensor out = Tensor::scalar(total / static_cast<double>(batch), out_dtype);
  if (any_requires_grad({&probs, &target})) {
    record(out,
           std::make_shared<SoftDiceBackward>(probs, target, smooth, inter, psum, tsum, Tensor()),
           {&probs, &target});
  }
  return out;
}

}  // namespace rg
