// Learning-rate schedules, evaluated per epoch (or per step: the unit is the caller's).
#pragma once

#include <cstdint>

namespace rg::optim {

class LrSchedule {
 public:
  virtual ~LrSchedule() = default;
  // Learning rate to use during epoch t (0-based).
  virtual double lr_at(int64_t t) const = 0;
};

class ConstantLr final : public LrSchedule {
 public:
  explicit ConstantLr(double lr) : lr_(lr) {}
  double lr_at(int64_t) const override { return lr_; }

 private:
  double lr_;
};

// pix2pix "linear" policy: base_lr for n_constant epochs, then linear decay over n_decay epochs:
// lr(t) = base_lr * (1 - max(0, t + 1 - n_constant) / (n_decay + 1)), reaching base/(n_decay+1)
// in the last epoch and 0 after it.
class LinearDecayLr final : public LrSchedule {
 public:
  LinearDecayLr(double base_lr, int64_t n_constant, int64_t n_decay);
  double lr_at(int64_t t) const override;

 private:
  double base_lr_;
  int64_t n_constant_, n_decay_;
};

// Cosine annealing from base_lr to min_lr over `total` epochs (min_lr afterwards).
class CosineLr final : public LrSchedule {
 public:
  CosineLr(double base_lr, int64_t total, double min_lr = 0.0);
  double lr_at(int64_t t) const override;

 private:
  double base_lr_;
  int64_t total_;
  double min_lr_;
};

}  // namespace rg::optim
