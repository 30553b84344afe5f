// pix2pix's PatchGAN discriminators (networks.py NLayerDiscriminator and PixelDiscriminator),
// in the engine's NHWC layout. They output one logit per patch (no sigmoid).
//
// NLayer (pixel = false), all convs 4x4 pad 1:
//   blocks.0:       Conv(in, ndf, s2, bias) LeakyReLU(0.2)
//   blocks.k, k = 1 .. n_layers-1: Conv(ndf*min(2^(k-1),8) -> ndf*min(2^k,8), s2) norm LeakyReLU
//   blocks.n_layers: Conv(.. -> ndf*min(2^n_layers,8), s1) norm LeakyReLU
//   head:           Conv(.. -> 1, s1, bias)
// For n_layers = 3, a 256x256 input gives 30x30 logits.
// Pixel (pixel = true), 1x1 convs: blocks.0 Conv(in, ndf, bias) LeakyReLU; blocks.1
//   Conv(ndf, 2ndf) norm LeakyReLU; head Conv(2ndf, 1) — as in pix2pix, the head has a bias only
//   when the other normed convs do.
// Convs followed by a norm have a bias unless the norm is batch norm (models/norm_kind.h).
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <memory>
#include <string>
#include <vector>

#include "engine/nn/layers.h"
#include "models/norm_kind.h"

namespace rg::models {

struct PatchGanConfig {
  int64_t in_channels = 2, ndf = 64, n_layers = 3;
  NormKind norm = NormKind::Batch;
  bool pixel = false;  // pix2pix PixelDiscriminator (1x1 convs) instead of NLayerDiscriminator
  // Spectral normalization of every convolution (nn::ConvOptions::spectral_norm; SN-GAN's
  // Lipschitz constraint on D, as SPADE and many medical GANs use it with a patch critic).
  bool spectral_norm = false;
  void validate() const;  // throws rg::Error naming the bad field
  bool operator==(const PatchGanConfig&) const = default;
};

class PatchDiscriminator final : public nn::Module {
 public:
  // Builds the network, then applies pix2pix's init drawn from `gen`.
  explicit PatchDiscriminator(const PatchGanConfig& config, Generator& gen = default_generator());
  // x: [N,H,W,in_channels], the conditional input already concatenated -> [N,H',W',1] logits.
  Tensor forward(const Tensor& x) override;
  // concat({image, mask_or_target}, -1) (image channels first, as pix2pix's
  // torch.cat((real_A, fake_B), 1)), then forward.
  Tensor forward(const Tensor& image, const Tensor& mask_or_target);
  using Module::operator();
  Tensor operator()(const Tensor& image, const Tensor& mask_or_target) {
    return forward(image, mask_or_target);
  }
  const PatchGanConfig config;

 private:
  struct Block {
    std::shared_ptr<nn::Conv2d> conv;
    std::shared_ptr<nn::Module> norm;  // null when absent
  };
  std::vector<Block> blocks_;
  std::shared_ptr<nn::Conv2d> head_;
};

// JSON form: {"model":"patchgan","in_channels":2,"ndf":64,"n_layers":3,"norm":"batch",
// "pixel":false,"spectral_norm":false}. Reading: missing keys keep their defaults; unknown keys, a different "model",
// or bad values throw rg::Error.
nlohmann::json to_json(const PatchGanConfig& config);
void to_json(nlohmann::json& j, const PatchGanConfig& config);
void from_json(const nlohmann::json& j, PatchGanConfig& config);
PatchGanConfig patchgan_config_from_json(const std::string& json_text);

}  // namespace rg::models
