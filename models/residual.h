// A residual image-to-image generator: out = x + U(x), U a U-Net with a linear (Logits) head
// and as many outputs as inputs. It learns the correction of its input (the noise of a
// low-dose scan, the detail bicubic upsampling lost), as RED-CNN does for low-dose CT. The
// U-Net's outermost layer is initialized to zero, so G starts as the identity: training starts
// from the input baseline.
// Module names: net.down.<i>.conv, ... (the U-Net's, under "net").
#pragma once

#include <memory>

#include "models/unet.h"

namespace rg::models {

class ResidualGenerator final : public nn::Module {
 public:
  // config.head must be Logits and in_channels == out_channels (rg::Error otherwise).
  explicit ResidualGenerator(const UnetConfig& config, Generator& gen = default_generator());
  Tensor forward(const Tensor& x) override;  // x + U(x)
  UnetGenerator& net() { return *net_; }
  const UnetConfig config;

 private:
  std::shared_ptr<UnetGenerator> net_;
};

}  // namespace rg::models
