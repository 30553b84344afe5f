#include "models/residual.h"

#include <cmath>

#include "engine/error.h"
#include "engine/ops/ops.h"

namespace rg::models {

namespace {
const UnetConfig& checked(const UnetConfig& c) {
  RG_CHECK(c.head == UnetConfig::Head::Logits, "residual generator: the U-Net head must be linear (logits)");
  RG_CHECK(c.in_channels == c.out_channels, "residual generator: in_channels ", c.in_channels,
           " must equal out_channels ", c.out_channels);
  return c;
}
}  // namespace

ResidualGenerator::ResidualGenerator(const UnetConfig& config, Generator& gen, double residual_scale)
    : nn::Module("ResidualGenerator"), config(checked(config)), scale_(residual_scale) {
  RG_CHECK(residual_scale > 0 && std::isfinite(residual_scale), "residual generator: the residual scale must be > 0, got ",
           residual_scale);
  net_ = register_module("net", std::make_shared<UnetGenerator>(config, gen));
  // The outermost layer starts at zero: G begins as the identity (the input baseline) and
  // learns only the correction; its gradients are nonzero, so the layer trains at once.
  int zeroed = 0;
  for (auto& [name, t] : net_->named_parameters())
    if (name.rfind("up.0.conv.", 0) == 0) {
      Tensor p = t;
      p.fill_(0.0);
      ++zeroed;
    }
  RG_CHECK(zeroed > 0, "residual generator: the U-Net has no outermost layer up.0.conv");
}

Tensor ResidualGenerator::forward(const Tensor& x) {
  const Tensor r = net_->forward(x);
  return add(x, scale_ == 1.0 ? r : mul(r, scale_));
}

}  // namespace rg::models
