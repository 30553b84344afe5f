#include "models/resnet_generator.h"

#include <nlohmann/json.hpp>

#include "engine/nn/init.h"
#include "engine/ops/ops.h"

namespace rg::models {

void ResnetConfig::validate() const {
  RG_CHECK(in_channels > 0, "ResnetConfig: in_channels must be positive, got ", in_channels);
  RG_CHECK(out_channels > 0, "ResnetConfig: out_channels must be positive, got ", out_channels);
  RG_CHECK(ngf > 0, "ResnetConfig: ngf must be positive, got ", ngf);
  RG_CHECK(n_blocks >= 0 && n_blocks <= 100, "ResnetConfig: n_blocks must be in [0, 100], got ",
           n_blocks);
}

Tensor ResnetGenerator::ConvNorm::operator()(const Tensor& x) const {
  Tensor h = conv->forward(x);
  return norm ? norm->forward(h) : h;
}

ResnetGenerator::ResnetGenerator(const ResnetConfig& cfg, Generator& gen)
    : Module("ResnetGenerator"), config(cfg) {
  config.validate();
  const bool bias = conv_bias_before_norm(config.norm);
  const int64_t ngf = config.ngf;
  // A conv (and its norm, when there is one) registered under `parent` as <prefix>conv/<prefix>norm.
  auto conv_norm = [&](ModuleList& parent, const std::string& suffix, std::shared_ptr<nn::Module> conv,
                       int64_t channels) {
    ConvNorm cn;
    cn.conv = parent.add("conv" + suffix, std::move(conv));
    cn.norm = make_norm(config.norm, channels);
    if (cn.norm) parent.add("norm" + suffix, cn.norm);
    return cn;
  };
  const nn::ConvOptions k7{.kernel = 7, .stride = 1, .padding = 0, .output_padding = 0, .bias = bias};
  const nn::ConvOptions k3s2{.kernel = 3, .stride = 2, .padding = 1, .output_padding = 0, .bias = bias};
  const nn::ConvOptions k3s2up{.kernel = 3, .stride = 2, .padding = 1, .output_padding = 1, .bias = bias};
  const nn::ConvOptions k3{.kernel = 3, .stride = 1, .padding = 0, .output_padding = 0, .bias = bias};

  auto in = register_module("in", std::make_shared<ModuleList>());
  in_ = conv_norm(*in, "", std::make_shared<nn::Conv2d>(config.in_channels, ngf, k7, gen), ngf);
  auto down = register_module("down", std::make_shared<ModuleList>());
  for (int64_t i = 0; i < 2; ++i) {
    const int64_t c = ngf << i;
    auto level = down->add(std::to_string(i), std::make_shared<ModuleList>());
    down_.push_back(conv_norm(*level, "", std::make_shared<nn::Conv2d>(c, 2 * c, k3s2, gen), 2 * c));
  }
  const int64_t width = 4 * ngf;
  auto blocks = register_module("blocks", std::make_shared<ModuleList>());
  for (int64_t b = 0; b < config.n_blocks; ++b) {
    auto blk = blocks->add(std::to_string(b), std::make_shared<ModuleList>());
    Block B;
    B.first = conv_norm(*blk, "1", std::make_shared<nn::Conv2d>(width, width, k3, gen), width);
    if (config.use_dropout) B.dropout = blk->add("dropout", std::make_shared<nn::Dropout>(0.5));
    B.second = conv_norm(*blk, "2", std::make_shared<nn::Conv2d>(width, width, k3, gen), width);
    blocks_.push_back(std::move(B));
  }
  auto up = register_module("up", std::make_shared<ModuleList>());
  for (int64_t i = 0; i < 2; ++i) {
    const int64_t c = width >> i;
    auto level = up->add(std::to_string(i), std::make_shared<ModuleList>());
    up_.push_back(conv_norm(*level, "", std::make_shared<nn::ConvTranspose2d>(c, c / 2, k3s2up, gen), c / 2));
  }
  auto out = register_module("out", std::make_shared<ModuleList>());
  nn::ConvOptions k7out = k7;
  k7out.bias = true;  // the reference's last Conv2d keeps PyTorch's default bias
  out_ = out->add("conv", std::make_shared<nn::Conv2d>(ngf, config.out_channels, k7out, gen));
  nn::init::pix2pix(*this, 0.02, gen);
}

Tensor ResnetGenerator::forward(const Tensor& x) {
  check_defined(x, "ResnetGenerator", "x");
  RG_CHECK(x.dim() == 4 && x.size(-1) == config.in_channels, "ResnetGenerator: expected input [N,H,W,",
           config.in_channels, "] (NHWC), got ", shape_str(x.shape()));
  RG_CHECK(x.size(1) % 4 == 0 && x.size(2) % 4 == 0 && x.size(1) >= 8 && x.size(2) >= 8,
           "ResnetGenerator: input ", shape_str(x.shape()),
           ": height and width must be multiples of 4 and at least 8");
  Tensor h = relu(in_(reflection_pad2d(x, 3)));
  for (const ConvNorm& d : down_) h = relu(d(h));
  for (const Block& b : blocks_) {
    Tensor r = relu(b.first(reflection_pad2d(h, 1)));
    if (b.dropout) r = b.dropout->forward(r);
    h = add(h, b.second(reflection_pad2d(r, 1)));
  }
  for (const ConvNorm& u : up_) h = relu(u(h));
  Tensor out = out_->forward(reflection_pad2d(h, 3));
  return config.head == ResnetConfig::Head::Tanh ? tanh(out) : out;
}

void to_json(nlohmann::json& j, const ResnetConfig& c) {
  j = nlohmann::json{{"model", "resnet"},          {"in_channels", c.in_channels},
                     {"out_channels", c.out_channels}, {"ngf", c.ngf},
                     {"n_blocks", c.n_blocks},        {"norm", norm_kind_name(c.norm)},
                     {"use_dropout", c.use_dropout},
                     {"head", c.head == ResnetConfig::Head::Tanh ? "tanh" : "logits"}};
}

nlohmann::json to_json(const ResnetConfig& config) {
  nlohmann::json j;
  to_json(j, config);
  return j;
}

void from_json(const nlohmann::json& j, ResnetConfig& c) {
  RG_CHECK(j.is_object(), "ResnetConfig JSON: expected an object, got ", j.dump());
  ResnetConfig out;
  try {
    for (const auto& [key, value] : j.items()) {
      if (key == "model") {
        RG_CHECK(value == "resnet", "ResnetConfig JSON: \"model\" is ", value.dump(), ", expected \"resnet\"");
      } else if (key == "in_channels") {
        out.in_channels = value.get<int64_t>();
      } else if (key == "out_channels") {
        out.out_channels = value.get<int64_t>();
      } else if (key == "ngf") {
        out.ngf = value.get<int64_t>();
      } else if (key == "n_blocks") {
        out.n_blocks = value.get<int64_t>();
      } else if (key == "norm") {
        out.norm = norm_kind_from_name(value.get<std::string>());
      } else if (key == "use_dropout") {
        out.use_dropout = value.get<bool>();
      } else if (key == "head") {
        const std::string h = value.get<std::string>();
        RG_CHECK(h == "tanh" || h == "logits", "ResnetConfig JSON: \"head\" is '", h, "', expected tanh or logits");
        out.head = h == "tanh" ? ResnetConfig::Head::Tanh : ResnetConfig::Head::Logits;
      } else {
        RG_FAIL("ResnetConfig JSON: unknown key '", key, "'");
      }
    }
  } catch (const nlohmann::json::exception& e) {
    RG_FAIL("ResnetConfig JSON: bad value in ", j.dump(), ": ", e.what());
  }
  out.validate();
  c = out;
}

}  // namespace rg::models
