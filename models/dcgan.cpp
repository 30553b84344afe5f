#include "models/dcgan.h"

#include <nlohmann/json.hpp>

#include "engine/ops/ops.h"

namespace rg::models {

namespace {
const nn::ConvOptions kDown{.kernel = 4, .stride = 2, .padding = 1, .output_padding = 0, .bias = true};
// 4x4 stride 2 padding 1 transposed: exactly doubles the side.
const nn::ConvOptions kUp = kDown;

void check_image(const Tensor& x, const DcganConfig& c, const char* who) {
  check_defined(x, who, "x");
  RG_CHECK(x.dim() == 4 && x.size(1) == c.size && x.size(2) == c.size && x.size(3) == 1, who,
           ": expected images [N,", c.size, ",", c.size, ",1] (NHWC), got ", shape_str(x.shape()));
}
}  // namespace

void DcganConfig::validate() const {
  RG_CHECK(size >= 8 && (size & (size - 1)) == 0, "DcganConfig: size must be a power of two >= 8, got ",
           size);
  RG_CHECK(z_dim > 0, "DcganConfig: z_dim must be positive, got ", z_dim);
  RG_CHECK(width > 0, "DcganConfig: width must be positive, got ", width);
  RG_CHECK((width << (levels() - 1)) <= (int64_t{1} << 20), "DcganConfig: width ", width,
           " is too large for size ", size);
}

int64_t DcganConfig::levels() const {
  int64_t l = 0;
  while ((int64_t{4} << l) < size) ++l;
  return l;
}

DcganGenerator::DcganGenerator(const DcganConfig& cfg, Generator& gen)
    : Module("DcganGenerator"), config(cfg) {
  config.validate();
  const int64_t levels = config.levels();
  project_ = register_module("project",
                             std::make_shared<nn::Linear>(config.z_dim, config.feature_count(), true, gen));
  project_norm_ = register_module("project_norm", std::make_shared<nn::LayerNorm>(config.top_channels()));
  for (int64_t l = levels - 1; l >= 0; --l) {
    const int64_t in = config.width << l;
    const int64_t out = l > 0 ? (config.width << (l - 1)) : 1;
    const std::string name = std::to_string(ups_.size());
    ups_.push_back(register_module("up" + name, std::make_shared<nn::ConvTranspose2d>(in, out, kUp, gen)));
    if (l > 0) norms_.push_back(register_module("norm" + name, std::make_shared<nn::LayerNorm>(out)));
  }
}

Tensor DcganGenerator::forward(const Tensor& z) {
  check_defined(z, "DcganGenerator", "z");
  RG_CHECK(z.dim() == 2 && z.size(1) == config.z_dim, "DcganGenerator: expected z [N,",
           config.z_dim, "], got ", shape_str(z.shape()));
  Tensor h = project_->forward(z).reshape({z.size(0), 4, 4, config.top_channels()});
  h = relu(project_norm_->forward(h));
  for (size_t i = 0; i < ups_.size(); ++i) {
    h = ups_[i]->forward(h);
    if (i < norms_.size()) h = relu(norms_[i]->forward(h));
  }
  return tanh(h);
}

DcganBody::DcganBody(const DcganConfig& cfg, Generator& gen) : Module("DcganBody"), config(cfg) {
  config.validate();
  for (int64_t l = 0; l < config.levels(); ++l) {
    const int64_t in = l == 0 ? 1 : (config.width << (l - 1));
    const std::string name = std::to_string(l);
    convs_.push_back(register_module("conv" + name,
                                     std::make_shared<nn::Conv2d>(in, config.width << l, kDown, gen)));
    // No normalization on the first level (DCGAN's discriminator neither).
    if (l > 0) norms_.push_back(register_module("norm" + name, std::make_shared<nn::LayerNorm>(config.width << l)));
  }
}

Tensor DcganBody::forward(const Tensor& x) {
  Tensor h = x;
  for (size_t l = 0; l < convs_.size(); ++l) {
    h = convs_[l]->forward(h);
    if (l > 0) h = norms_[l - 1]->forward(h);
    h = leaky_relu(h, 0.2);
  }
  return h.reshape({x.size(0), config.feature_count()});
}

DcganCritic::DcganCritic(const DcganConfig& cfg, Generator& gen) : Module("DcganCritic"), config(cfg) {
  config.validate();
  body_ = register_module("body", std::make_shared<DcganBody>(config, gen));
  head_ = register_module("head", std::make_shared<nn::Linear>(config.feature_count(), 1, true, gen));
}

Tensor DcganCritic::features(const Tensor& x) {
  check_image(x, config, "DcganCritic");
  return body_->forward(x);
}

Tensor DcganCritic::score(const Tensor& f) {
  check_defined(f, "DcganCritic", "features");
  RG_CHECK(f.dim() == 2 && f.size(1) == config.feature_count(), "DcganCritic: expected features [N,",
           config.feature_count(), "], got ", shape_str(f.shape()));
  return head_->forward(f).reshape({f.size(0)});
}

Tensor DcganCritic::forward(const Tensor& x) { return score(features(x)); }

DcganEncoder::DcganEncoder(const DcganConfig& cfg, Generator& gen) : Module("DcganEncoder"), config(cfg) {
  config.validate();
  body_ = register_module("body", std::make_shared<DcganBody>(config, gen));
  head_ = register_module("head", std::make_shared<nn::Linear>(config.feature_count(), config.z_dim, true, gen));
}

Tensor DcganEncoder::forward(const Tensor& x) {
  check_image(x, config, "DcganEncoder");
  return head_->forward(body_->forward(x));
}

nlohmann::json to_json(const DcganConfig& c) {
  return nlohmann::json{{"model", "dcgan"}, {"size", c.size}, {"z_dim", c.z_dim}, {"width", c.width}};
}

void from_json(const nlohmann::json& j, DcganConfig& c) {
  RG_CHECK(j.is_object(), "DcganConfig JSON: expected an object, got ", j.dump());
  DcganConfig out;
  try {
    for (const auto& [key, value] : j.items()) {
      if (key == "model") {
        RG_CHECK(value == "dcgan", "DcganConfig JSON: \"model\" is ", value.dump(), ", expected \"dcgan\"");
      } else if (key == "size") {
        out.size = value.get<int64_t>();
      } else if (key == "z_dim") {
        out.z_dim = value.get<int64_t>();
      } else if (key == "width") {
        out.width = value.get<int64_t>();
      } else {
        RG_FAIL("DcganConfig JSON: unknown key '", key, "'");
      }
    }
  } catch (const nlohmann::json::exception& e) {
    RG_FAIL("DcganConfig JSON: bad value in ", j.dump(), ": ", e.what());
  }
  out.validate();
  c = out;
}

}  // namespace rg::models
