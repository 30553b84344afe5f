#include "engine/optim/lr_schedule.h"

#include <algorithm>
#include <cmath>

#include "engine/error.h"

namespace rg::optim {

LinearDecayLr::LinearDecayLr(double base_lr, int64_t n_constant, int64_t n_decay)
    : base_lr_(base_lr), n_constant_(n_constant), n_decay_(n_decay) {
  RG_CHECK(n_constant >= 0 && n_decay >= 0, "LinearDecayLr: epoch counts must be >= 0, got ",
           n_constant, " and ", n_decay);
}

double LinearDecayLr::lr_at(int64_t t) const {
  const double decayed =
      static_cast<double>(std::max<int64_t>(0, t + 1 - n_constant_)) / (n_decay_ + 1.0);
  return base_lr_ * std::max(0.0, 1.0 - decayed);
}

CosineLr::CosineLr(double base_lr, int64_t total, double min_lr)
    : base_lr_(base_lr), total_(total), min_lr_(min_lr) {
  RG_CHECK(total > 0, "CosineLr: total must be > 0, got ", total);
}

double CosineLr::lr_at(int64_t t) const {
  if (t >= total_) return min_lr_;
  const double progress = static_cast<double>(std::max<int64_t>(t, 0)) / static_cast<double>(total_);
  return min_lr_ + (base_lr_ - min_lr_) * 0.5 * (1.0 + std::cos(M_PI * progress));
}

}  // namespace rg::optim
