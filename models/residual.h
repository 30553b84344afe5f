// A residual image-to-image generator: out = x + k U(x), U a U-Net or a ResNet generator with a
// linear (Logits) head and as many outputs as inputs. It learns the correction of its input (the
// noise of a low-dose scan, the detail bicubic upsampling lost), as RED-CNN does for low-dose CT.
// U's outermost layer is initialized to zero, so G starts as the identity: training starts from
// the input baseline.
// The two bodies differ where a denoiser works: pix2pix's U-Net has no convolution at full
// resolution (its outermost layers are stride-2), the ResNet generator has a 7x7 one at each end
// and its residual blocks at a quarter of the resolution.
// The residual scale k sets the size of U's output unit: the corrections are small (quarter-dose
// CT noise is ~0.007 in the [-1024, 3072] HU -> [-1, 1] scale), and with k = 1 an optimizer step
// of the last layer moves the output by more than the signal; k = 0.05 makes U's unit ~100 HU.
// Module names: the body's, under "net" (net.down.<i>.conv, ... or net.in.conv, net.blocks.<b>...).
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <memory>
#include <string>
#include <variant>

#include "models/resnet_generator.h"
#include "models/unet.h"

namespace rg::models {

class ResidualGenerator final : public nn::Module {
 public:
  using BodyConfig = std::variant<UnetConfig, ResnetConfig>;
  // The body's head must be Logits and in_channels == out_channels (rg::Error otherwise).
  explicit ResidualGenerator(const BodyConfig& body, Generator& gen = default_generator(),
                             double residual_scale = 1.0);
  Tensor forward(const Tensor& x) override;  // x + k U(x)
  double residual_scale() const { return scale_; }
  const BodyConfig& body() const { return body_; }
  // The body's JSON form (UnetConfig's or ResnetConfig's, with its "model" key) and back.
  nlohmann::json body_json() const;
  static BodyConfig body_from_json(const nlohmann::json& j);
  // "U-Net num_downs 7 ngf 16" or "ResNet 6 blocks ngf 16".
  std::string body_description() const;
  // Slice sides must be multiples of this: 2^num_downs for the U-Net, 4 for the ResNet.
  int64_t size_multiple() const;

 private:
  BodyConfig body_;
  std::shared_ptr<nn::Module> net_;
  double scale_ = 1.0;
};

}  // namespace rg::models
