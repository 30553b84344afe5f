#include "train/weight_average.h"

#include <algorithm>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/nn/module.h"
#include "engine/ops/ops.h"

namespace rg::train {

namespace {

// The slots of `m` by name: parameters, then buffers.
std::vector<std::pair<std::string, Tensor*>> named_slots(nn::Module& m) {
  auto slots = m.named_parameter_slots();
  for (auto& b : m.named_buffer_slots()) slots.push_back(b);
  return slots;
}

}  // namespace

WeightAverage::WeightAverage(nn::Module& live, nn::Module& average, double decay) : decay_(decay) {
  RG_CHECK(decay >= 0 && decay < 1, "weight average: decay must be in [0, 1), got ", decay);
  const auto from = named_slots(live);
  const auto to = named_slots(average);
  RG_CHECK(from.size() == to.size(), "weight average: the networks differ (", from.size(), " and ",
           to.size(), " tensors)");
  NoGradGuard no_grad;
  for (size_t i = 0; i < from.size(); ++i) {
    const std::string& name = from[i].first;
    const Tensor& src = *from[i].second;
    Tensor& dst = *to[i].second;
    RG_CHECK(name == to[i].first && src.shape() == dst.shape() && src.dtype() == dst.dtype() &&
                 src.device() == dst.device(),
             "weight average: tensor ", name, " ", shape_str(src.shape()), " does not match ",
             to[i].first, " ", shape_str(dst.shape()));
    RG_CHECK(is_floating(src.dtype()), "weight average: tensor ", name, " is not floating point");
    dst.copy_(src);
    live_.push_back(from[i].second);
    average_.push_back(to[i].second);
  }
  average.eval();
}

double WeightAverage::decay_at(double decay, int64_t updates) {
  return std::min(decay, (1.0 + static_cast<double>(updates)) / (10.0 + static_cast<double>(updates)));
}

void WeightAverage::update(int64_t updates) {
  const double d = decay_at(decay_, updates);
  NoGradGuard no_grad;
  for (size_t i = 0; i < live_.size(); ++i) {
    Tensor delta = sub(live_[i]->detach(), *average_[i]);
    mul_(delta, 1.0 - d);
    add_(*average_[i], delta);
  }
}

}  // namespace rg::train
