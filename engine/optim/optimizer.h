// Optimizers over a list of parameter tensors (f32 master weights, or f64 in tests).
// Parameters whose gradient is undefined (frozen, or not reached by backward) are skipped.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "engine/tensor.h"

namespace rg::optim {

class Optimizer {
 public:
  Optimizer(std::vector<Tensor> params, double lr);
  virtual ~Optimizer() = default;
  virtual void step() = 0;
  void zero_grad();
  double lr() const { return lr_; }
  void set_lr(double lr) { lr_ = lr; }
  const std::vector<Tensor>& params() const { return params_; }
  // Per-parameter state tensors ("<index>.<name>") and scalars, for checkpoints; loading
  // replaces the values in place (shapes must match).
  virtual std::vector<std::pair<std::string, Tensor>> state() const = 0;
  virtual int64_t step_count() const = 0;
  virtual void set_step_count(int64_t steps) = 0;

 protected:
  std::vector<Tensor> params_;
  double lr_;
};

struct AdamOptions {
  double lr = 1e-3;
  double beta1 = 0.9, beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
};

// Adam (Kingma & Ba) with bias correction; weight decay as L2 added to the gradient.
class Adam : public Optimizer {
 public:
  Adam(std::vector<Tensor> params, AdamOptions options);
  void step() override;
  std::vector<std::pair<std::string, Tensor>> state() const override;
  int64_t step_count() const override { return steps_; }
  void set_step_count(int64_t steps) override { steps_ = steps; }
  const AdamOptions& options() const { return options_; }

 protected:
  Adam(std::vector<Tensor> params, AdamOptions options, bool decoupled);

 private:
  AdamOptions options_;
  bool decoupled_;
  int64_t steps_ = 0;
  std::vector<Tensor> m_, v_;
};

// AdamW (Loshchilov & Hutter): weight decay applied to the weights, decoupled from the moments.
class AdamW final : public Adam {
 public:
  AdamW(std::vector<Tensor> params, AdamOptions options) : Adam(std::move(params), options, true) {}
};

struct SgdOptions {
  double lr = 1e-2;
  double momentum = 0.0;
  double dampening = 0.0;
  double weight_decay = 0.0;
  bool nesterov = false;
};

class SGD final : public Optimizer {
 public:
  SGD(std::vector<Tensor> params, SgdOptions options);
  void step() override;
  std::vector<std::pair<std::string, Tensor>> state() const override;
  int64_t step_count() const override { return steps_; }
  void set_step_count(int64_t steps) override { steps_ = steps; }

 private:
  SgdOptions options_;
  int64_t steps_ = 0;
  std::vector<Tensor> momentum_;
  std::vector<bool> started_;
};

}  // namespace rg::optim
