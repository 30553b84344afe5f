// pix2pix's U-Net generator (junyanz/pytorch-CycleGAN-and-pix2pix, networks.py UnetGenerator),
// in the engine's NHWC layout.
//
// Level i (0 = outermost, num_downs-1 = innermost) halves the resolution on the way down and
// doubles it on the way up; its inner width is ngf * min(2^i, 8):
//   down: [LeakyReLU(0.2)] Conv 4x4 s2 p1 [norm]    (no LeakyReLU at level 0; no norm at
//                                                    level 0 or at the innermost level)
//   up:   ReLU ConvTranspose 4x4 s2 p1 [norm] [Dropout(0.5)]
//                                                   (no norm at level 0; dropout on the
//                                                    levels 4 .. num_downs-2 when use_dropout)
// Every level but the outermost returns concat(skip, up) on channels, skip first, as
// pix2pix's torch.cat([x, self.model(x)], 1). As in pix2pix, the skip is the LeakyReLU'd input
// of the level (pix2pix's LeakyReLU is in place and overwrites x before the concat reads it);
// the parent's ReLU follows the concat, so this equals the plain skip, forward and backward.
//
// pix2pix's outermost layers are stride 2: no convolution sees the full-resolution image, and the
// last layer paints each 2x2 output block from 64x64 features. Pixel-level work (denoising, exact
// boundaries) can ask for full-resolution ends, full_res_width F > 0 (not in pix2pix):
//   in:   Conv 3x3 p1 (in -> F) ReLU                    (level 0 then reads F channels)
//   out:  level 0's up conv gives F channels, concat(in's output, it) ReLU Conv 3x3 p1 (2F -> out)
//
// Module names: down.<i>.conv, down.<i>.norm, up.<i>.conv, up.<i>.norm, full_res.in.conv,
// full_res.out.conv (models/pix2pix_names.h maps the first four to PyTorch's state_dict names).
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <memory>
#include <string>
#include <vector>

#include "engine/nn/layers.h"
#include "models/norm_kind.h"

namespace rg::models {

struct UnetConfig {
  int64_t in_channels = 1, out_channels = 1, num_downs = 8, ngf = 64;
  NormKind norm = NormKind::Batch;
  bool use_dropout = false;
  // Logits: no output activation (mask logits, for BCE-with-logits). Tanh: pix2pix's image head.
  enum class Head { Logits, Tanh } head = Head::Logits;
  int64_t full_res_width = 0;  // > 0: 3x3 convolutions of this width at full resolution (above)
  static UnetConfig unet_256();  // num_downs 8: 256x256 inputs reach 1x1 at the bottleneck
  static UnetConfig unet_128();  // num_downs 7
  // Throws rg::Error naming the bad field (num_downs must be >= 5, widths positive).
  void validate() const;
  // Inner width of level i: ngf * min(2^i, 8).
  int64_t level_channels(int64_t level) const;
  bool operator==(const UnetConfig&) const = default;
};

class UnetGenerator final : public nn::Module {
 public:
  // Builds the network, then applies pix2pix's init (N(0, 0.02) weights) drawn from `gen`.
  // Dropout masks (use_dropout) are drawn from default_generator() at forward time.
  explicit UnetGenerator(const UnetConfig& config, Generator& gen = default_generator());
  // [N,H,W,in_channels] -> [N,H,W,out_channels]; H and W must be divisible by 2^num_downs.
  Tensor forward(const Tensor& x) override;
  const UnetConfig config;

 private:
  struct Level {
    std::shared_ptr<nn::Conv2d> down_conv;
    std::shared_ptr<nn::Module> down_norm;  // null when absent
    std::shared_ptr<nn::ConvTranspose2d> up_conv;
    std::shared_ptr<nn::Module> up_norm;    // null when absent
    std::shared_ptr<nn::Dropout> dropout;   // null when absent
  };
  std::vector<Level> levels_;
  std::shared_ptr<nn::Conv2d> full_res_in_, full_res_out_;  // null unless full_res_width > 0
};

// The deepest U-Net an h x w input allows: the number of halvings that keep both sides whole,
// at most 8 (unet_256's depth). The applications' default --num-downs.
int64_t auto_num_downs(int64_t h, int64_t w);

// JSON form of the config (stored as the "config" metadata string of checkpoints):
// {"model":"unet","in_channels":1,"out_channels":1,"num_downs":8,"ngf":64,"norm":"batch",
//  "use_dropout":false,"head":"logits"} (plus "full_res_width" when > 0). Reading: missing keys keep their defaults; unknown
// keys, a different "model", or bad values throw rg::Error.
nlohmann::json to_json(const UnetConfig& config);
void to_json(nlohmann::json& j, const UnetConfig& config);    // for nlohmann's ADL
void from_json(const nlohmann::json& j, UnetConfig& config);  // for j.get<UnetConfig>()
UnetConfig unet_config_from_json(const std::string& json_text);

}  // namespace rg::models
