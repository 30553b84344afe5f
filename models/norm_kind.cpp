#include "models/norm_kind.h"

#include "engine/nn/layers.h"

namespace rg::models {

NormKind norm_kind_from_name(const std::string& name) {
  if (name == "batch") return NormKind::Batch;
  if (name == "instance") return NormKind::Instance;
  if (name == "none") return NormKind::None;
  RG_FAIL("unknown normalization '", name, "' (expected batch, instance or none)");
}

const char* norm_kind_name(NormKind kind) {
  switch (kind) {
    case NormKind::Batch: return "batch";
    case NormKind::Instance: return "instance";
    case NormKind::None: return "none";
  }
  return "?";
}

std::shared_ptr<nn::Module> make_norm(NormKind kind, int64_t channels) {
  switch (kind) {
    case NormKind::Batch: return std::make_shared<nn::BatchNorm2d>(channels);
    case NormKind::Instance: return std::make_shared<nn::InstanceNorm2d>(channels);
    case NormKind::None: return nullptr;
  }
  return nullptr;
}

}  // namespace rg::models
