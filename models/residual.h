// A residual image-to-image generator: out = x + k U(x), U a U-Net with a linear (Logits) head
// and as many outputs as inputs. It learns the correction of its input (the noise of a
// low-dose scan, the detail bicubic upsampling lost), as RED-CNN does for low-dose CT. The
// U-Net's outermost layer is initialized to zero, so G starts as the identity: training starts
// from the input baseline.
// The residual scale k sets the size of U's output unit: the corrections are small (quarter-dose
// CT noise is ~0.007 in the [-1024, 3072] HU -> [-1, 1] scale), and with k = 1 an optimizer step
// of the last layer moves the output by more than the signal; k = 0.05 makes U's unit ~100 HU.
// Module names: net.down.<i>.conv, ... (the U-Net's, under "net").
#pragma once

#include <memory>

#include "models/unet.h"

namespace rg::models {

class ResidualGenerator final : public nn::Module {
 public:
  // config.head must be Logits and in_channels == out_channels (rg::Error otherwise).
  explicit ResidualGenerator(const UnetConfig& config, Generator& gen = default_generator(),
                             double residual_scale = 1.0);
  Tensor forward(const Tensor& x) override;  // x + k U(x)
  double residual_scale() const { return scale_; }
  UnetGenerator& net() { return *net_; }
  const UnetConfig config;

 private:
  std::shared_ptr<UnetGenerator> net_;
  double scale_ = 1.0;
};

}  // namespace rg::models
