#include "models/pix2pix_names.h"

#include <nlohmann/json.hpp>

#include <set>
#include <unordered_map>

#include "engine/layout.h"

namespace rg::models {

namespace {

class Builder {
 public:
  std::vector<Pix2PixName> out;

  // A k x k conv (in -> out channels); PyTorch holds Conv2d weights as [out][in][k][k] and
  // ConvTranspose2d weights as [in][out][k][k].
  void conv(const std::string& ours, const std::string& torch, int64_t in, int64_t out_ch, int64_t k,
            bool bias, bool transposed) {
    out.push_back({ours + ".weight", torch + ".weight",
                   transposed ? TorchLayout::ConvTransposeWeight : TorchLayout::ConvWeight,
                   transposed ? Shape{in, out_ch, k, k} : Shape{out_ch, in, k, k}});
    if (bias) out.push_back({ours + ".bias", torch + ".bias", TorchLayout::Plain, {out_ch}});
  }
  // BatchNorm2d's state: weight, bias, running_mean, running_var, num_batches_tracked.
  // InstanceNorm2d(affine=False) and Identity have none.
  void norm(NormKind kind, const std::string& ours, const std::string& torch, int64_t channels) {
    if (kind != NormKind::Batch) return;
    for (const char* n : {"weight", "bias", "running_mean", "running_var"}) {
      out.push_back({ours + "." + n, torch + "." + n, TorchLayout::Plain, {channels}});
    }
    out.push_back({"", torch + ".num_batches_tracked", TorchLayout::BatchCounter, {}});
  }
};

// One UnetSkipConnectionBlock, whose nn.Sequential is `seq`:
//   outermost:    [downconv, submodule, uprelu, upconv(, tanh)]                      0 1 2 3
//   intermediate: [downrelu, downconv, downnorm, submodule, uprelu, upconv, upnorm(, dropout)]
//   innermost:    [downrelu, downconv, uprelu, upconv, upnorm]
void unet_block(Builder& b, const UnetConfig& c, int64_t i, const std::string& seq) {
  const bool bias = conv_bias_before_norm(c.norm);
  const std::string d = "down." + std::to_string(i), u = "up." + std::to_string(i);
  const int64_t inner = c.level_channels(i);
  if (i == 0) {
    b.conv(d + ".conv", seq + ".0", c.in_channels, inner, 4, bias, false);
    unet_block(b, c, 1, seq + ".1.model");
    b.conv(u + ".conv", seq + ".3", 2 * inner, c.out_channels, 4, true, true);
    return;
  }
  const int64_t outer = c.level_channels(i - 1);
  if (i == c.num_downs - 1) {
    b.conv(d + ".conv", seq + ".1", outer, inner, 4, bias, false);
    b.conv(u + ".conv", seq + ".3", inner, outer, 4, bias, true);
    b.norm(c.norm, u + ".norm", seq + ".4", outer);
  } else {
    b.conv(d + ".conv", seq + ".1", outer, inner, 4, bias, false);
    b.norm(c.norm, d + ".norm", seq + ".2", inner);
    unet_block(b, c, i + 1, seq + ".3.model");
    b.conv(u + ".conv", seq + ".5", 2 * inner, outer, 4, bias, true);
    b.norm(c.norm, u + ".norm", seq + ".6", outer);
  }
}

}  // namespace

std::vector<Pix2PixName> pix2pix_names(const UnetConfig& config) {
  config.validate();
  RG_CHECK(config.full_res_width == 0, "pix2pix export: a U-Net with full-resolution ends (full_res_width ",
           config.full_res_width, ") has no counterpart in the reference's UnetGenerator");
  Builder b;
  // UnetGenerator.model is the outermost block; the block's layers are its .model Sequential.
  unet_block(b, config, 0, "model.model");
  return b.out;
}

std::vector<Pix2PixName> pix2pix_names(const PatchGanConfig& config) {
  config.validate();
  // PyTorch's spectral_norm stores weight_orig, weight_u and a weight_v flattened in OIHW order:
  // a mapping of its own, not written yet.
  RG_CHECK(!config.spectral_norm, "pix2pix export: a spectrally normalized discriminator has no "
           "pix2pix state_dict counterpart yet; export the generator only (export --generator-only)");
  Builder b;
  const bool bias = conv_bias_before_norm(config.norm);
  const int64_t ndf = config.ndf;
  if (config.pixel) {
    // PixelDiscriminator.net: [conv, lrelu, conv, norm, lrelu, conv], all 1x1.
    b.conv("blocks.0.conv", "net.0", config.in_channels, ndf, 1, true, false);
    b.conv("blocks.1.conv", "net.2", ndf, 2 * ndf, 1, bias, false);
    b.norm(config.norm, "blocks.1.norm", "net.3", 2 * ndf);
    b.conv("head", "net.5", 2 * ndf, 1, 1, bias, false);
  } else {
    // NLayerDiscriminator.model: [conv, lrelu] then [conv, norm, lrelu] per block, then conv.
    auto width = [&](int64_t k) { return ndf * (k >= 3 ? 8 : (int64_t{1} << k)); };
    b.conv("blocks.0.conv", "model.0", config.in_channels, ndf, 4, true, false);
    for (int64_t k = 1; k <= config.n_layers; ++k) {
      const std::string ours = "blocks." + std::to_string(k);
      b.conv(ours + ".conv", "model." + std::to_string(3 * k - 1), width(k - 1), width(k), 4, bias, false);
      b.norm(config.norm, ours + ".norm", "model." + std::to_string(3 * k), width(k));
    }
    b.conv("head", "model." + std::to_string(3 * config.n_layers + 2), width(config.n_layers), 1, 4,
           true, false);
  }
  return b.out;
}

std::vector<Pix2PixName> pix2pix_names(const ResnetConfig& c) {
  c.validate();
  Builder b;
  const bool bias = conv_bias_before_norm(c.norm);
  const int64_t ngf = c.ngf, width = 4 * ngf, n = c.n_blocks;
  auto m = [](int64_t i) { return "model." + std::to_string(i); };
  // ResnetGenerator.model: [pad, conv, norm, relu], 2 x [conv, norm, relu], the blocks,
  // 2 x [convT, norm, relu], [pad, conv, tanh]. Without a norm layer the reference keeps an
  // Identity in its place, so the indices do not move.
  b.conv("in.conv", m(1), c.in_channels, ngf, 7, bias, false);
  b.norm(c.norm, "in.norm", m(2), ngf);
  for (int64_t i = 0; i < 2; ++i) {
    const std::string ours = "down." + std::to_string(i);
    b.conv(ours + ".conv", m(4 + 3 * i), ngf << i, ngf << (i + 1), 3, bias, false);
    b.norm(c.norm, ours + ".norm", m(5 + 3 * i), ngf << (i + 1));
  }
  // ResnetBlock.conv_block: [pad, conv, norm, relu, (dropout,) pad, conv, norm].
  const int64_t second = c.use_dropout ? 6 : 5;
  for (int64_t k = 0; k < n; ++k) {
    const std::string ours = "blocks." + std::to_string(k), torch = m(10 + k) + ".conv_block.";
    b.conv(ours + ".conv1", torch + "1", width, width, 3, bias, false);
    b.norm(c.norm, ours + ".norm1", torch + "2", width);
    b.conv(ours + ".conv2", torch + std::to_string(second), width, width, 3, bias, false);
    b.norm(c.norm, ours + ".norm2", torch + std::to_string(second + 1), width);
  }
  for (int64_t i = 0; i < 2; ++i) {
    const std::string ours = "up." + std::to_string(i);
    const int64_t ch = width >> i;
    b.conv(ours + ".conv", m(10 + n + 3 * i), ch, ch / 2, 3, bias, true);
    b.norm(c.norm, ours + ".norm", m(11 + n + 3 * i), ch / 2);
  }
  b.conv("out.conv", m(17 + n), ngf, c.out_channels, 7, true, false);
  return b.out;
}

namespace {

std::unordered_map<std::string, const Tensor*> index(const NamedTensors& tensors, const char* what) {
  std::unordered_map<std::string, const Tensor*> map;
  for (const auto& [name, t] : tensors) {
    RG_CHECK(map.emplace(name, &t).second, what, ": duplicate tensor '", name, "'");
  }
  return map;
}

void check_covered(const std::unordered_map<std::string, const Tensor*>& given,
                   const std::set<std::string>& wanted, const char* what) {
  std::string missing, unexpected;
  for (const auto& n : wanted) {
    if (!given.count(n)) missing += (missing.empty() ? "" : ", ") + n;
  }
  for (const auto& [n, t] : given) {
    if (!wanted.count(n)) unexpected += (unexpected.empty() ? "" : ", ") + n;
  }
  RG_CHECK(missing.empty() && unexpected.empty(), what, ": tensors do not match the network",
           missing.empty() ? "" : "; missing [" + missing + "]",
           unexpected.empty() ? "" : "; unexpected [" + unexpected + "]");
}

}  // namespace

TorchState to_pix2pix_state(const NamedTensors& ours, const std::vector<Pix2PixName>& names,
                            int64_t batches_tracked) {
  const auto given = index(ours, "to_pix2pix_state");
  std::set<std::string> wanted;
  for (const auto& n : names) {
    if (n.layout != TorchLayout::BatchCounter) wanted.insert(n.ours);
  }
  check_covered(given, wanted, "to_pix2pix_state");
  TorchState out;
  for (const auto& n : names) {
    if (n.layout == TorchLayout::BatchCounter) {
      out.counters.emplace_back(n.torch, raw_i64({batches_tracked}, {}));
      continue;
    }
    Tensor t = given.at(n.ours)->detach();
    if (!t.device().is_cpu()) t = t.to(Device::cpu());
    switch (n.layout) {
      case TorchLayout::ConvWeight: t = ohwi_to_oihw(t); break;
      case TorchLayout::ConvTransposeWeight: t = ihwo_to_iohw(t); break;
      default: t = t.contiguous(); break;
    }
    RG_CHECK(t.shape() == n.torch_shape, "to_pix2pix_state: '", n.ours, "' becomes ", n.torch, " of shape ",
             shape_str(t.shape()), ", but the network needs ", shape_str(n.torch_shape));
    out.tensors.emplace_back(n.torch, t);
  }
  return out;
}

NamedTensors from_pix2pix_state(const NamedTensors& torch, const std::vector<Pix2PixName>& names) {
  const auto given = index(torch, "from_pix2pix_state");
  std::set<std::string> wanted;
  for (const auto& n : names) {
    if (n.layout != TorchLayout::BatchCounter) wanted.insert(n.torch);
  }
  check_covered(given, wanted, "from_pix2pix_state");
  NamedTensors out;
  for (const auto& n : names) {
    if (n.layout == TorchLayout::BatchCounter) continue;
    const Tensor& t = *given.at(n.torch);
    RG_CHECK(t.shape() == n.torch_shape, "from_pix2pix_state: ", n.torch, " has shape ", shape_str(t.shape()),
             ", but the network needs ", shape_str(n.torch_shape));
    switch (n.layout) {
      case TorchLayout::ConvWeight: out.emplace_back(n.ours, oihw_to_ohwi(t)); break;
      case TorchLayout::ConvTransposeWeight: out.emplace_back(n.ours, iohw_to_ihwo(t)); break;
      default: out.emplace_back(n.ours, t.contiguous()); break;
    }
  }
  return out;
}

namespace {

// The options every netG shares: width, norm, channels, dropout.
template <typename Config>
std::string generator_options(const std::string& net, const Config& c) {
  std::string s = "--netG " + net + " --ngf " + std::to_string(c.ngf) + " --norm " + norm_kind_name(c.norm) +
                  " --input_nc " + std::to_string(c.in_channels) + " --output_nc " +
                  std::to_string(c.out_channels);
  if (!c.use_dropout) s += " --no_dropout";
  return s;
}

}  // namespace

std::string pix2pix_options(const UnetConfig& c) {
  std::string net = c.num_downs == 8   ? "unet_256"
                    : c.num_downs == 7 ? "unet_128"
                                       : "unet(num_downs=" + std::to_string(c.num_downs) + ")";
  return generator_options(net, c);
}

std::string pix2pix_options(const ResnetConfig& c) {
  const std::string net = c.n_blocks == 9   ? "resnet_9blocks"
                          : c.n_blocks == 6 ? "resnet_6blocks"
                                            : "resnet(n_blocks=" + std::to_string(c.n_blocks) + ")";
  return generator_options(net, c);
}

std::string pix2pix_options(const PatchGanConfig& c) {
  std::string s = c.pixel            ? "--netD pixel"
                  : c.n_layers == 3 ? "--netD basic"
                                     : "--netD n_layers --n_layers_D " + std::to_string(c.n_layers);
  return s + " --ndf " + std::to_string(c.ndf) + " --norm " + norm_kind_name(c.norm);
}

namespace {

template <typename Net, typename Config>
void write_export(const std::string& out_path, const SafetensorsFile& ours, const Config& config,
                  const std::string& prefix, int64_t batches_tracked) {
  // Building the network checks every name and shape against the config (an error lists the
  // differences); the random init it draws is overwritten by the load.
  Generator scratch(0);
  Net net(config, scratch);
  load_module_state(net, ours.tensors, prefix);
  const TorchState state = to_pix2pix_state(module_state(net), pix2pix_names(config), batches_tracked);
  const std::map<std::string, std::string> metadata = {{"format", "pt"},
                                                       {"source", "roentgen"},
                                                       {"config", to_json(config).dump()},
                                                       {"pix2pix", pix2pix_options(config)}};
  save_safetensors(out_path, state.tensors, metadata, state.counters);
}

}  // namespace

void write_pix2pix_safetensors(const std::string& out_path, const SafetensorsFile& ours,
                               const UnetConfig& config, const std::string& prefix,
                               int64_t batches_tracked) {
  write_export<UnetGenerator>(out_path, ours, config, prefix, batches_tracked);
}

void write_pix2pix_safetensors(const std::string& out_path, const SafetensorsFile& ours,
                               const PatchGanConfig& config, const std::string& prefix,
                               int64_t batches_tracked) {
  write_export<PatchDiscriminator>(out_path, ours, config, prefix, batches_tracked);
}

void write_pix2pix_safetensors(const std::string& out_path, const SafetensorsFile& ours,
                               const ResnetConfig& config, const std::string& prefix,
                               int64_t batches_tracked) {
  write_export<ResnetGenerator>(out_path, ours, config, prefix, batches_tracked);
}

std::string inference_generator_prefix(const SafetensorsFile& checkpoint) {
  if (has_tensor_prefix(checkpoint, "G_ema.")) return "G_ema.";
  if (has_tensor_prefix(checkpoint, "G.")) return "G.";
  return "";
}

}  // namespace rg::models
