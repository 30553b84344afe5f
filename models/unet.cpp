#include "models/unet.h"

#include <nlohmann/json.hpp>

#include <algorithm>

#include "engine/nn/init.h"
#include "engine/ops/ops.h"

namespace rg::models {

UnetConfig UnetConfig::unet_256() {
  UnetConfig c;
  c.num_downs = 8;
  return c;
}

UnetConfig UnetConfig::unet_128() {
  UnetConfig c;
  c.num_downs = 7;
  return c;
}

void UnetConfig::validate() const {
  RG_CHECK(in_channels > 0, "UnetConfig: in_channels must be positive, got ", in_channels);
  RG_CHECK(out_channels > 0, "UnetConfig: out_channels must be positive, got ", out_channels);
  RG_CHECK(ngf > 0, "UnetConfig: ngf must be positive, got ", ngf);
  // pix2pix always builds the outermost level, three widening levels and the innermost one.
  RG_CHECK(num_downs >= 5 && num_downs <= 30, "UnetConfig: num_downs must be in [5, 30], got ",
           num_downs);
  RG_CHECK(full_res_width >= 0 && full_res_width <= 4096, "UnetConfig: full_res_width must be in [0, 4096], got ",
           full_res_width);
}

int64_t UnetConfig::level_channels(int64_t level) const {
  return ngf * (level >= 3 ? 8 : (int64_t{1} << level));
}

UnetGenerator::UnetGenerator(const UnetConfig& cfg, Generator& gen)
    : Module("UnetGenerator"), config(cfg) {
  config.validate();
  const int64_t n = config.num_downs;
  const bool bias = conv_bias_before_norm(config.norm);
  auto down = register_module("down", std::make_shared<ModuleList>());
  auto up = register_module("up", std::make_shared<ModuleList>());
  levels_.resize(static_cast<size_t>(n));
  const nn::ConvOptions k4s2{.kernel = 4, .stride = 2, .padding = 1, .output_padding = 0,
                             .bias = bias};
  for (int64_t i = 0; i < n; ++i) {
    Level& L = levels_[static_cast<size_t>(i)];
    const bool outermost = i == 0, innermost = i == n - 1;
    const int64_t inner = config.level_channels(i);
    const int64_t full_res = config.full_res_width;
    const int64_t outer = outermost ? (full_res > 0 ? full_res : config.out_channels) : config.level_channels(i - 1);
    const int64_t input = outermost ? (full_res > 0 ? full_res : config.in_channels) : outer;
    auto d = down->add(std::to_string(i), std::make_shared<ModuleList>());
    L.down_conv = d->add("conv", std::make_shared<nn::Conv2d>(input, inner, k4s2, gen));
    if (!outermost && !innermost) {
      L.down_norm = make_norm(config.norm, inner);
      if (L.down_norm) d->add("norm", L.down_norm);
    }
    auto u = up->add(std::to_string(i), std::make_shared<ModuleList>());
    nn::ConvOptions up_opts = k4s2;
    if (outermost) up_opts.bias = true;  // pix2pix's outermost ConvTranspose2d keeps its bias
    L.up_conv = u->add(
        "conv", std::make_shared<nn::ConvTranspose2d>(innermost ? inner : 2 * inner, outer, up_opts, gen));
    if (!outermost) {
      L.up_norm = make_norm(config.norm, outer);
      if (L.up_norm) u->add("norm", L.up_norm);
    }
    if (config.use_dropout && i >= 4 && !innermost) {
      L.dropout = u->add("dropout", std::make_shared<nn::Dropout>(0.5));
    }
  }
  if (config.full_res_width > 0) {
    const int64_t f = config.full_res_width;
    const nn::ConvOptions k3{.kernel = 3, .stride = 1, .padding = 1, .output_padding = 0, .bias = true};
    auto full_res = register_module("full_res", std::make_shared<ModuleList>());
    auto in = full_res->add("in", std::make_shared<ModuleList>());
    full_res_in_ = in->add("conv", std::make_shared<nn::Conv2d>(config.in_channels, f, k3, gen));
    auto out = full_res->add("out", std::make_shared<ModuleList>());
    full_res_out_ = out->add("conv", std::make_shared<nn::Conv2d>(2 * f, config.out_channels, k3, gen));
  }
  nn::init::pix2pix(*this, 0.02, gen);
}

Tensor UnetGenerator::forward(const Tensor& x) {
  check_defined(x, "UnetGenerator", "x");
  const int64_t n = config.num_downs;
  const int64_t factor = int64_t{1} << n;
  RG_CHECK(x.dim() == 4 && x.size(-1) == config.in_channels, "UnetGenerator: expected input [N,H,W,",
           config.in_channels, "] (NHWC), got ", shape_str(x.shape()));
  RG_CHECK(x.size(1) % factor == 0 && x.size(2) % factor == 0 && x.size(1) > 0 && x.size(2) > 0,
           "UnetGenerator: input ", shape_str(x.shape()), ": height and width must be multiples of 2^",
           n, " = ", factor, " (num_downs ", n, ")");

  // Down path. skips[i] is the input of level i after its LeakyReLU: both level i's down conv
  // and the concat at the end of level i read it.
  std::vector<Tensor> skips(static_cast<size_t>(n));
  const Tensor full_res = full_res_in_ ? relu(full_res_in_->forward(x)) : Tensor();
  Tensor h = levels_[0].down_conv->forward(full_res_in_ ? full_res : x);
  for (int64_t i = 1; i < n; ++i) {
    const Level& L = levels_[static_cast<size_t>(i)];
    skips[static_cast<size_t>(i)] = leaky_relu(h, 0.2);
    h = L.down_conv->forward(skips[static_cast<size_t>(i)]);
    if (L.down_norm) h = L.down_norm->forward(h);
  }
  // Up path: h is the innermost down output, then each level's concat output.
  for (int64_t i = n - 1; i >= 1; --i) {
    const Level& L = levels_[static_cast<size_t>(i)];
    Tensor u = L.up_conv->forward(relu(h));
    if (L.up_norm) u = L.up_norm->forward(u);
    if (L.dropout) u = L.dropout->forward(u);
    h = concat({skips[static_cast<size_t>(i)], u}, -1);
    skips[static_cast<size_t>(i)] = Tensor();  // let the activation go once it is consumed
  }
  Tensor out = levels_[0].up_conv->forward(relu(h));
  if (full_res_out_) out = full_res_out_->forward(relu(concat({full_res, out}, -1)));
  if (config.head == UnetConfig::Head::Tanh) out = tanh(out);
  return out;
}

// ---- JSON

namespace {
const char* head_name(UnetConfig::Head h) { return h == UnetConfig::Head::Tanh ? "tanh" : "logits"; }
}  // namespace

void to_json(nlohmann::json& j, const UnetConfig& c) {
  j = nlohmann::json{{"model", "unet"},
                     {"in_channels", c.in_channels},
                     {"out_channels", c.out_channels},
                     {"num_downs", c.num_downs},
                     {"ngf", c.ngf},
                     {"norm", norm_kind_name(c.norm)},
                     {"use_dropout", c.use_dropout},
                     {"head", head_name(c.head)}};
  if (c.full_res_width > 0) j["full_res_width"] = c.full_res_width;
}

nlohmann::json to_json(const UnetConfig& config) {
  nlohmann::json j;
  to_json(j, config);
  return j;
}

void from_json(const nlohmann::json& j, UnetConfig& c) {
  RG_CHECK(j.is_object(), "UnetConfig JSON: expected an object, got ", j.dump());
  UnetConfig out;
  try {
    for (const auto& [key, value] : j.items()) {
      if (key == "model") {
        RG_CHECK(value == "unet", "UnetConfig JSON: \"model\" is ", value.dump(), ", expected \"unet\"");
      } else if (key == "in_channels") {
        out.in_channels = value.get<int64_t>();
      } else if (key == "out_channels") {
        out.out_channels = value.get<int64_t>();
      } else if (key == "num_downs") {
        out.num_downs = value.get<int64_t>();
      } else if (key == "ngf") {
        out.ngf = value.get<int64_t>();
      } else if (key == "norm") {
        out.norm = norm_kind_from_name(value.get<std::string>());
      } else if (key == "use_dropout") {
        out.use_dropout = value.get<bool>();
      } else if (key == "full_res_width") {
        out.full_res_width = value.get<int64_t>();
      } else if (key == "head") {
        const auto h = value.get<std::string>();
        RG_CHECK(h == "logits" || h == "tanh", "UnetConfig JSON: unknown head '", h,
                 "' (expected logits or tanh)");
        out.head = h == "tanh" ? UnetConfig::Head::Tanh : UnetConfig::Head::Logits;
      } else {
        RG_FAIL("UnetConfig JSON: unknown key '", key, "'");
      }
    }
  } catch (const nlohmann::json::exception& e) {
    RG_FAIL("UnetConfig JSON: bad value in ", j.dump(), ": ", e.what());
  }
  out.validate();
  c = out;
}

UnetConfig unet_config_from_json(const std::string& json_text) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(json_text);
  } catch (const nlohmann::json::exception& e) {
    RG_FAIL("UnetConfig JSON: cannot parse '", json_text, "': ", e.what());
  }
  UnetConfig c;
  from_json(j, c);
  return c;
}

int64_t auto_num_downs(int64_t h, int64_t w) {
  int64_t n = 0;
  while (n < 8 && h % (int64_t{2} << n) == 0 && w % (int64_t{2} << n) == 0) ++n;
  return n;
}

}  // namespace rg::models
