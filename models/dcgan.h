// DCGAN-style networks for f-AnoGAN (unsupervised anomaly detection, issue 16), in the engine's
// NHWC layout: a generator z -> image, a critic image -> score that exposes its last feature
// layer, and an encoder image -> z with the critic's architecture. One configuration describes
// all three, so the encoder always matches the generator's latent space and image size.
//
// With L = log2(size / 4) levels and widths c_l = width * 2^l (l = 0 .. L-1):
//   Generator: Linear(z_dim -> 4*4*c_{L-1}) -> [N,4,4,c_{L-1}] LayerNorm ReLU, then for
//              l = L-1 .. 1: ConvT(c_l -> c_{l-1}, 4x4 s2 p1) LayerNorm ReLU, then
//              ConvT(c_0 -> 1, 4x4 s2 p1) tanh: [N,size,size,1] in [-1, 1].
//   Critic:    Conv(1 -> c_0, 4x4 s2 p1) LeakyReLU(0.2), then for l = 1 .. L-1:
//              Conv(c_{l-1} -> c_l, 4x4 s2 p1) LayerNorm LeakyReLU(0.2): features = the
//              [N, 4*4*c_{L-1}] flattening of that last map; score = Linear(features -> 1), [N].
//   Encoder:   the critic's body, then Linear(features -> z_dim) (no activation: z ~ N(0, 1)).
// 64x64 has 4 levels, 128x128 one more. Layer norm, never batch norm: the WGAN-GP penalty needs
// each sample's own input gradient (batch norm mixes the samples of a batch), and layer norm
// computes the same in train and eval mode, so a frozen network behaves identically in the
// encoder stage and at detection time.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <memory>
#include <string>
#include <vector>

#include "engine/nn/layers.h"

namespace rg::models {

struct DcganConfig {
  int64_t size = 64;    // image side: a power of two >= 8
  int64_t z_dim = 128;  // latent dimension
  int64_t width = 64;   // channels of the first critic level (c_0); doubles per level
  void validate() const;  // throws rg::Error naming the bad field
  int64_t levels() const;  // log2(size / 4)
  int64_t top_channels() const { return width << (levels() - 1); }  // c_{L-1}
  int64_t feature_count() const { return 16 * top_channels(); }
  bool operator==(const DcganConfig&) const = default;
};

class DcganGenerator final : public nn::Module {
 public:
  explicit DcganGenerator(const DcganConfig& config, Generator& gen = default_generator());
  // z [N, z_dim] -> [N, size, size, 1] in [-1, 1].
  Tensor forward(const Tensor& z) override;
  const DcganConfig config;

 private:
  std::shared_ptr<nn::Linear> project_;
  std::shared_ptr<nn::LayerNorm> project_norm_;
  std::vector<std::shared_ptr<nn::ConvTranspose2d>> ups_;
  std::vector<std::shared_ptr<nn::LayerNorm>> norms_;  // one per up-convolution but the last
};

// The convolutional body shared by the critic and the encoder.
class DcganBody final : public nn::Module {
 public:
  DcganBody(const DcganConfig& config, Generator& gen);
  // x [N, size, size, 1] -> [N, feature_count].
  Tensor forward(const Tensor& x) override;
  const DcganConfig config;

 private:
  std::vector<std::shared_ptr<nn::Conv2d>> convs_;
  std::vector<std::shared_ptr<nn::LayerNorm>> norms_;  // convs 1 .. L-1
};

class DcganCritic final : public nn::Module {
 public:
  explicit DcganCritic(const DcganConfig& config, Generator& gen = default_generator());
  // x [N, size, size, 1] -> scores [N] (unbounded: a WGAN critic).
  Tensor forward(const Tensor& x) override;
  // The last feature layer f(x) [N, feature_count]: f-AnoGAN's feature residual compares it.
  Tensor features(const Tensor& x);
  // The score of features already computed (forward(x) == score(features(x))).
  Tensor score(const Tensor& features);
  const DcganConfig config;

 private:
  std::shared_ptr<DcganBody> body_;
  std::shared_ptr<nn::Linear> head_;
};

class DcganEncoder final : public nn::Module {
 public:
  explicit DcganEncoder(const DcganConfig& config, Generator& gen = default_generator());
  // x [N, size, size, 1] -> z [N, z_dim].
  Tensor forward(const Tensor& x) override;
  const DcganConfig config;

 private:
  std::shared_ptr<DcganBody> body_;
  std::shared_ptr<nn::Linear> head_;
};

// JSON form: {"model":"dcgan","size":64,"z_dim":128,"width":64}. Missing keys keep their
// defaults; unknown keys, another "model" or bad values throw rg::Error.
nlohmann::json to_json(const DcganConfig& config);
void from_json(const nlohmann::json& j, DcganConfig& config);

}  // namespace rg::models
