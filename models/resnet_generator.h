// CycleGAN's ResNet generator (junyanz/pytorch-CycleGAN-and-pix2pix, networks.py
// ResnetGenerator), in the engine's NHWC layout:
//
//   ReflectionPad(3) Conv 7x7 (in -> ngf) [norm] ReLU
//   2 x  Conv 3x3 s2 p1 (ngf*2^i -> ngf*2^(i+1)) [norm] ReLU            (down: H/4, 4*ngf)
//   n_blocks x ResnetBlock(4*ngf):
//        x + [ReflectionPad(1) Conv 3x3 [norm] ReLU (Dropout 0.5) ReflectionPad(1) Conv 3x3 [norm]]
//   2 x  ConvTranspose 3x3 s2 p1 op1 (ngf*2^(2-i) -> half) [norm] ReLU   (up: back to H)
//   ReflectionPad(3) Conv 7x7 (ngf -> out, bias) Tanh      (no Tanh with the Logits head)
//
// Convs followed by a norm carry a bias with instance norm (the reference's use_bias) and, as in
// models/norm_kind.h, with no norm; batch norm's beta replaces it. The reference's CycleGAN
// default is resnet_9blocks with instance norm (affine=False: no parameters).
//
// Module names: in.conv, in.norm, down.<i>.conv, down.<i>.norm, blocks.<b>.conv1, blocks.<b>.norm1,
// blocks.<b>.conv2, blocks.<b>.norm2, up.<i>.conv, up.<i>.norm, out.conv (models/pix2pix_names.h
// maps them to the reference's state_dict names, model.1 ... model.26 for 9 blocks).
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <memory>
#include <string>
#include <vector>

#include "engine/nn/layers.h"
#include "models/norm_kind.h"

namespace rg::models {

struct ResnetConfig {
  int64_t in_channels = 1, out_channels = 1, ngf = 64, n_blocks = 9;
  NormKind norm = NormKind::Instance;
  bool use_dropout = false;
  // Tanh: the reference's image head. Logits: no output activation (the unbounded correction of
  // a residual generator, models/residual.h).
  enum class Head { Tanh, Logits } head = Head::Tanh;
  // Throws rg::Error naming the bad field.
  void validate() const;
  bool operator==(const ResnetConfig&) const = default;
};

class ResnetGenerator final : public nn::Module {
 public:
  // Builds the network and applies pix2pix's init (N(0, 0.02) weights) drawn from `gen`. Dropout
  // masks (use_dropout) come from default_generator() at forward time.
  explicit ResnetGenerator(const ResnetConfig& config, Generator& gen = default_generator());
  // [N,H,W,in_channels] -> [N,H,W,out_channels] (in [-1, 1] with the Tanh head); H and W must be multiples of 4 and
  // at least 8 (the reflection pads need more rows than they mirror).
  Tensor forward(const Tensor& x) override;
  const ResnetConfig config;

 private:
  struct ConvNorm {
    std::shared_ptr<nn::Module> conv;
    std::shared_ptr<nn::Module> norm;  // null when absent
    Tensor operator()(const Tensor& x) const;
  };
  struct Block {
    ConvNorm first, second;
    std::shared_ptr<nn::Dropout> dropout;  // null when absent
  };
  ConvNorm in_;
  std::vector<ConvNorm> down_, up_;
  std::vector<Block> blocks_;
  std::shared_ptr<nn::Conv2d> out_;
};

// JSON form (checkpoint metadata): {"model":"resnet","in_channels":1,"out_channels":1,"ngf":64,
// "n_blocks":9,"norm":"instance","use_dropout":false,"head":"tanh"}. Missing keys keep their defaults; unknown
// keys, another "model" or bad values throw rg::Error.
nlohmann::json to_json(const ResnetConfig& config);
void to_json(nlohmann::json& j, const ResnetConfig& config);
void from_json(const nlohmann::json& j, ResnetConfig& config);

}  // namespace rg::models
