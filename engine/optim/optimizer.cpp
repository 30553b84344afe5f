#include "engine/optim/optimizer.h"

#include "engine/cuda/ops_cuda.h"
#include "engine/dispatch.h"
#include "engine/ops/op_utils.h"
#include "kernels/optim.h"

namespace rg::optim {

namespace k = kernels;

namespace {
void check_param(const Tensor& p, size_t i, const char* who) {
  RG_CHECK(p.defined() && p.is_leaf(), who, ": parameter ", i, " must be a defined leaf tensor");
  RG_CHECK(p.dtype() == DType::F32 || p.dtype() == DType::F64, who, ": parameter ", i,
           " has dtype ", dtype_name(p.dtype()), "; master weights must be f32 (or f64)");
  RG_CHECK(p.is_contiguous(), who, ": parameter ", i, " of shape ", shape_str(p.shape()),
           " must be contiguous");
}

// The gradient of p as a contiguous tensor of p's dtype, or undefined.
Tensor grad_of(const Tensor& p) {
  Tensor g = p.grad();
  if (!g.defined()) return g;
  return ops_detail::kernel_input(g, p.dtype());
}

// The CUDA optimizer kernels update f32 state only (f64 has no CUDA kernels).
void check_cuda_param(const Tensor& p, const Tensor& g, const char* who) {
  RG_CHECK(p.dtype() == DType::F32, who, ": parameters on ", p.device().str(),
           " must be f32, got ", dtype_name(p.dtype()));
  check_same_device(p, g, who);
}
}  // namespace

Optimizer::Optimizer(std::vector<Tensor> params, double lr) : params_(std::move(params)), lr_(lr) {
  RG_CHECK(lr >= 0.0, "optimizer: learning rate must be >= 0, got ", lr);
}

void Optimizer::zero_grad() {
  for (Tensor& p : params_) p.zero_grad();
}

Adam::Adam(std::vector<Tensor> params, AdamOptions options) : Adam(std::move(params), options, false) {}

Adam::Adam(std::vector<Tensor> params, AdamOptions options, bool decoupled)
    : Optimizer(std::move(params), options.lr), options_(options), decoupled_(decoupled) {
  const char* who = decoupled ? "AdamW" : "Adam";
  RG_CHECK(options.beta1 >= 0 && options.beta1 < 1 && options.beta2 >= 0 && options.beta2 < 1,
           who, ": betas must be in [0, 1), got (", options.beta1, ", ", options.beta2, ")");
  RG_CHECK(options.eps >= 0, who, ": eps must be >= 0");
  for (size_t i = 0; i < params_.size(); ++i) {
    check_param(params_[i], i, who);
    m_.push_back(Tensor::zeros(params_[i].shape(), params_[i].dtype(), params_[i].device()));
    v_.push_back(Tensor::zeros(params_[i].shape(), params_[i].dtype(), params_[i].device()));
  }
}

void Adam::step() {
  ++steps_;
  k::AdamConfig c;
  c.lr = lr_;
  c.beta1 = options_.beta1;
  c.beta2 = options_.beta2;
  c.eps = options_.eps;
  c.weight_decay = options_.weight_decay;
  c.decoupled_weight_decay = decoupled_;
  c.step = steps_;
  for (size_t i = 0; i < params_.size(); ++i) {
    Tensor g = grad_of(params_[i]);
    if (!g.defined()) continue;
    if (ops_detail::on_cuda(params_[i])) {
      if constexpr (ops_detail::kCudaBuild) {
        check_cuda_param(params_[i], g, "Adam::step");
        cuda_ops::adam_step(c, params_[i], g, m_[i], v_[i]);
      }
      continue;
    }
    dispatch_compute(params_[i].dtype(), "Adam::step", [&](auto tag) {
      using T = decltype(tag);
      k::cpu::adam_step<T>(c, params_[i].numel(), params_[i].data<T>(), g.data<T>(),
                           m_[i].data<T>(), v_[i].data<T>());
    });
  }
}

std::vector<std::pair<std::string, Tensor>> Adam::state() const {
  std::vector<std::pair<std::string, Tensor>> out;
  for (size_t i = 0; i < params_.size(); ++i) {
    out.emplace_back(std::to_string(i) + ".exp_avg", m_[i]);
    out.emplace_back(std::to_string(i) + ".exp_avg_sq", v_[i]);
  }
  return out;
}

SGD::SGD(std::vector<Tensor> params, SgdOptions options)
    : Optimizer(std::move(params), options.lr), options_(options) {
  RG_CHECK(!options.nesterov || (options.momentum > 0 && options.dampening == 0),
           "SGD: nesterov needs momentum > 0 and dampening 0");
  for (size_t i = 0; i < params_.size(); ++i) {
    check_param(params_[i], i, "SGD");
    momentum_.push_back(options.momentum != 0.0
                            ? Tensor::zeros(params_[i].shape(), params_[i].dtype(),
                                            params_[i].device())
                            : Tensor());
  }
  started_.assign(params_.size(), false);
}

void SGD::step() {
  ++steps_;
  for (size_t i = 0; i < params_.size(); ++i) {
    Tensor g = grad_of(params_[i]);
    if (!g.defined()) continue;
    k::SgdConfig c;
    c.lr = lr_;
    c.momentum = options_.momentum;
    c.dampening = options_.dampening;
    c.weight_decay = options_.weight_decay;
    c.nesterov = options_.nesterov;
    c.first_step = !started_[i];
    started_[i] = true;
    if (ops_detail::on_cuda(params_[i])) {
      if constexpr (ops_detail::kCudaBuild) {
        check_cuda_param(params_[i], g, "SGD::step");
        cuda_ops::sgd_step(c, params_[i], g, momentum_[i]);
      }
      continue;
    }
    dispatch_compute(params_[i].dtype(), "SGD::step", [&](auto tag) {
      using T = decltype(tag);
      k::cpu::sgd_step<T>(c, params_[i].numel(), params_[i].data<T>(), g.data<T>(),
                          momentum_[i].defined() ? momentum_[i].data<T>() : nullptr);
    });
  }
}

std::vector<std::pair<std::string, Tensor>> SGD::state() const {
  std::vector<std::pair<std::string, Tensor>> out;
  for (size_t i = 0; i < params_.size(); ++i) {
    if (momentum_[i].defined()) out.emplace_back(std::to_string(i) + ".momentum_buffer", momentum_[i]);
  }
  return out;
}

}  // namespace rg::optim
