#include "models/patchgan.h"

#include <nlohmann/json.hpp>

#include <algorithm>

#include "engine/nn/init.h"
#include "engine/ops/ops.h"

namespace rg::models {

void PatchGanConfig::validate() const {
  RG_CHECK(in_channels > 0, "PatchGanConfig: in_channels must be positive, got ", in_channels);
  RG_CHECK(ndf > 0, "PatchGanConfig: ndf must be positive, got ", ndf);
  RG_CHECK(pixel || (n_layers >= 1 && n_layers <= 30),
           "PatchGanConfig: n_layers must be in [1, 30], got ", n_layers);
}

PatchDiscriminator::PatchDiscriminator(const PatchGanConfig& cfg, Generator& gen)
    : Module("PatchDiscriminator"), config(cfg) {
  config.validate();
  const bool bias = conv_bias_before_norm(config.norm);
  auto blocks = register_module("blocks", std::make_shared<ModuleList>());
  auto add_block = [&](int64_t in, int64_t out, const nn::ConvOptions& opts, bool normed) {
    auto holder = blocks->add(std::to_string(blocks_.size()), std::make_shared<ModuleList>());
    Block b;
    nn::ConvOptions o = opts;
    o.spectral_norm = config.spectral_norm;
    b.conv = holder->add("conv", std::make_shared<nn::Conv2d>(in, out, o, gen));
    if (normed) {
      b.norm = make_norm(config.norm, out);
      if (b.norm) holder->add("norm", b.norm);
    }
    blocks_.push_back(b);
  };
  if (config.pixel) {
    const nn::ConvOptions k1{.kernel = 1, .stride = 1, .padding = 0, .output_padding = 0, .bias = true};
    nn::ConvOptions k1n = k1;
    k1n.bias = bias;
    add_block(config.in_channels, config.ndf, k1, false);
    add_block(config.ndf, 2 * config.ndf, k1n, true);
    k1n.spectral_norm = config.spectral_norm;
    head_ = register_module("head", std::make_shared<nn::Conv2d>(2 * config.ndf, 1, k1n, gen));
  } else {
    auto opts = [&](int64_t stride, bool b) {
      return nn::ConvOptions{.kernel = 4, .stride = stride, .padding = 1, .output_padding = 0, .bias = b,
                             .spectral_norm = config.spectral_norm};
    };
    auto mult = [](int64_t k) { return std::min<int64_t>(int64_t{1} << std::min<int64_t>(k, 3), 8); };
    add_block(config.in_channels, config.ndf, opts(2, true), false);
    for (int64_t k = 1; k <= config.n_layers; ++k) {
      const int64_t stride = k < config.n_layers ? 2 : 1;
      add_block(config.ndf * mult(k - 1), config.ndf * mult(k), opts(stride, bias), true);
    }
    head_ = register_module(
        "head", std::make_shared<nn::Conv2d>(config.ndf * mult(config.n_layers), 1, opts(1, true), gen));
  }
  nn::init::pix2pix(*this, 0.02, gen);
  // The power iteration's vectors, re-estimated for the weights the init just drew.
  if (config.spectral_norm) {
    for (const Block& b : blocks_) b.conv->reset_spectral_norm();
    head_->reset_spectral_norm();
  }
}

Tensor PatchDiscriminator::forward(const Tensor& x) {
  check_defined(x, "PatchDiscriminator", "x");
  RG_CHECK(x.dim() == 4 && x.size(-1) == config.in_channels, "PatchDiscriminator: expected input [N,H,W,",
           config.in_channels, "] (NHWC), got ", shape_str(x.shape()));
  Tensor h = x;
  for (const Block& b : blocks_) {
    h = b.conv->forward(h);
    if (b.norm) h = b.norm->forward(h);
    h = leaky_relu(h, 0.2);
  }
  return head_->forward(h);
}

Tensor PatchDiscriminator::forward(const Tensor& image, const Tensor& mask_or_target) {
  check_defined(image, "PatchDiscriminator", "image");
  check_defined(mask_or_target, "PatchDiscriminator", "mask_or_target");
  return forward(concat({image, mask_or_target}, -1));
}

// ---- JSON

void to_json(nlohmann::json& j, const PatchGanConfig& c) {
  j = nlohmann::json{{"model", "patchgan"},       {"in_channels", c.in_channels},
                     {"ndf", c.ndf},              {"n_layers", c.n_layers},
                     {"norm", norm_kind_name(c.norm)}, {"pixel", c.pixel},
                     {"spectral_norm", c.spectral_norm}};
}

nlohmann::json to_json(const PatchGanConfig& config) {
  nlohmann::json j;
  to_json(j, config);
  return j;
}

void from_json(const nlohmann::json& j, PatchGanConfig& c) {
  RG_CHECK(j.is_object(), "PatchGanConfig JSON: expected an object, got ", j.dump());
  PatchGanConfig out;
  try {
    for (const auto& [key, value] : j.items()) {
      if (key == "model") {
        RG_CHECK(value == "patchgan", "PatchGanConfig JSON: \"model\" is ", value.dump(),
                 ", expected \"patchgan\"");
      } else if (key == "in_channels") {
        out.in_channels = value.get<int64_t>();
      } else if (key == "ndf") {
        out.ndf = value.get<int64_t>();
      } else if (key == "n_layers") {
        out.n_layers = value.get<int64_t>();
      } else if (key == "norm") {
        out.norm = norm_kind_from_name(value.get<std::string>());
      } else if (key == "pixel") {
        out.pixel = value.get<bool>();
      } else if (key == "spectral_norm") {
        out.spectral_norm = value.get<bool>();
      } else {
        RG_FAIL("PatchGanConfig JSON: unknown key '", key, "'");
      }
    }
  } catch (const nlohmann::json::exception& e) {
    RG_FAIL("PatchGanConfig JSON: bad value in ", j.dump(), ": ", e.what());
  }
  out.validate();
  c = out;
}

PatchGanConfig patchgan_config_from_json(const std::string& json_text) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(json_text);
  } catch (const nlohmann::json::exception& e) {
    RG_FAIL("PatchGanConfig JSON: cannot parse '", json_text, "': ", e.what());
  }
  PatchGanConfig c;
  from_json(j, c);
  return c;
}

}  // namespace rg::models
