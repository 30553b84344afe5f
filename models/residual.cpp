#include "models/residual.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <type_traits>
#include <variant>

#include "engine/error.h"
#include "engine/ops/ops.h"

namespace rg::models {

namespace {

void check_body(const UnetConfig& c) {
  RG_CHECK(c.head == UnetConfig::Head::Logits, "residual generator: the U-Net head must be linear (logits)");
  RG_CHECK(c.in_channels == c.out_channels, "residual generator: in_channels ", c.in_channels,
           " must equal out_channels ", c.out_channels);
}
void check_body(const ResnetConfig& c) {
  RG_CHECK(c.head == ResnetConfig::Head::Logits, "residual generator: the ResNet head must be linear (logits)");
  RG_CHECK(c.in_channels == c.out_channels, "residual generator: in_channels ", c.in_channels,
           " must equal out_channels ", c.out_channels);
}

// The body's last layer: zeroed so that G starts as the identity.
const char* outermost_prefix(const UnetConfig& c) { return c.full_res_width > 0 ? "full_res.out.conv." : "up.0.conv."; }
const char* outermost_prefix(const ResnetConfig&) { return "out.conv."; }

}  // namespace

ResidualGenerator::ResidualGenerator(const BodyConfig& body, Generator& gen, double residual_scale)
    : nn::Module("ResidualGenerator"), body_(body), scale_(residual_scale) {
  RG_CHECK(residual_scale > 0 && std::isfinite(residual_scale), "residual generator: the residual scale must be > 0, got ",
           residual_scale);
  std::string prefix;
  std::visit(
      [&](const auto& c) {
        check_body(c);
        prefix = outermost_prefix(c);
        using Config = std::decay_t<decltype(c)>;
        if constexpr (std::is_same_v<Config, UnetConfig>)
          net_ = register_module("net", std::make_shared<UnetGenerator>(c, gen));
        else
          net_ = register_module("net", std::make_shared<ResnetGenerator>(c, gen));
      },
      body_);
  // Its gradients are nonzero, so the zeroed layer trains at once.
  int zeroed = 0;
  for (auto& [name, t] : net_->named_parameters())
    if (name.rfind(prefix, 0) == 0) {
      Tensor p = t;
      p.fill_(0.0);
      ++zeroed;
    }
  RG_CHECK(zeroed > 0, "residual generator: the body has no outermost layer ", prefix);
}

Tensor ResidualGenerator::forward(const Tensor& x) {
  const Tensor r = net_->forward(x);
  return add(x, scale_ == 1.0 ? r : mul(r, scale_));
}

nlohmann::json ResidualGenerator::body_json() const {
  return std::visit([](const auto& c) { return to_json(c); }, body_);
}

ResidualGenerator::BodyConfig ResidualGenerator::body_from_json(const nlohmann::json& j) {
  RG_CHECK(j.is_object(), "residual generator: the body's config is not a JSON object: ", j.dump());
  const std::string model = j.value("model", "unet");
  if (model == "resnet") return j.get<ResnetConfig>();
  RG_CHECK(model == "unet", "residual generator: unknown body model '", model, "' (expected unet or resnet)");
  return j.get<UnetConfig>();
}

std::string ResidualGenerator::body_description() const {
  if (const auto* u = std::get_if<UnetConfig>(&body_))
    return "U-Net num_downs " + std::to_string(u->num_downs) + " ngf " + std::to_string(u->ngf) +
           (u->full_res_width > 0 ? " full-res width " + std::to_string(u->full_res_width) : "");
  const auto& r = std::get<ResnetConfig>(body_);
  return "ResNet " + std::to_string(r.n_blocks) + " blocks ngf " + std::to_string(r.ngf);
}

int64_t ResidualGenerator::size_multiple() const {
  if (const auto* u = std::get_if<UnetConfig>(&body_)) return int64_t{1} << u->num_downs;
  return 4;
}

}  // namespace rg::models
