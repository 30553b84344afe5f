// Normalization choice shared by the pix2pix networks, and small building blocks they share.
#pragma once

#include <memory>
#include <string>

#include "engine/nn/module.h"

namespace rg::models {

// pix2pix's --norm: batch = BatchNorm2d(affine, running statistics); instance =
// InstanceNorm2d(affine=False, no running statistics); none = no normalization layer.
enum class NormKind { Batch, Instance, None };

// "batch" | "instance" | "none"; throws rg::Error naming the value otherwise.
NormKind norm_kind_from_name(const std::string& name);
const char* norm_kind_name(NormKind kind);

// The normalization layer for `channels`, or nullptr for NormKind::None.
std::shared_ptr<nn::Module> make_norm(NormKind kind, int64_t channels);

// Whether a conv followed by a normalization layer of this kind carries a bias. pix2pix gives
// such convs a bias only with instance norm (batch norm's beta makes it redundant). For
// NormKind::None we deviate from pix2pix (whose 'none' builds bias-free convs) and keep the
// bias, since nothing else would shift those activations; see docs/export.md.
inline bool conv_bias_before_norm(NormKind kind) { return kind != NormKind::Batch; }

// A plain container of named child modules (like torch.nn.ModuleDict); it has no forward.
class ModuleList final : public nn::Module {
 public:
  ModuleList() : Module("ModuleList") {}
  template <typename M>
  std::shared_ptr<M> add(const std::string& name, std::shared_ptr<M> module) {
    return register_module(name, std::move(module));
  }
};

}  // namespace rg::models
