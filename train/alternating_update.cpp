#include "train/alternating_update.h"

#include <algorithm>

#include "engine/dist/data_parallel.h"
#include "engine/error.h"
#include "engine/nn/module.h"
#include "engine/optim/optimizer.h"
#include "engine/profile.h"

namespace rg::train {

void StepLosses::add(const std::string& name, const Tensor& value) {
  RG_CHECK(value.defined() && value.numel() == 1, "StepLosses: loss '", name,
           "' must be a scalar tensor");
  RG_CHECK(!contains(name), "StepLosses: loss '", name, "' added twice in one step");
  items_.emplace_back(name, value.detach());
}

bool StepLosses::contains(const std::string& name) const {
  return std::any_of(items_.begin(), items_.end(), [&](const auto& kv) { return kv.first == name; });
}

const Tensor& StepLosses::at(const std::string& name) const {
  for (const auto& [n, t] : items_) {
    if (n == name) return t;
  }
  std::string known;
  for (const auto& [n, t] : items_) known += (known.empty() ? "" : ", ") + n;
  RG_FAIL("StepLosses: no loss '", name, "' in this step (it has: ", known, ")");
}

std::vector<std::pair<std::string, double>> StepLosses::read() const {
  std::vector<std::pair<std::string, double>> out;
  for (const auto& [n, t] : items_) out.emplace_back(n, t.item());
  return out;
}

void Player::set_requires_grad(bool on) const {
  for (nn::Module* m : networks) m->set_requires_grad(on);
}

namespace {

// Unfreezes the frozen players when the update ends, also when the objective throws.
class FreezeGuard {
 public:
  explicit FreezeGuard(const std::vector<const Player*>& frozen) : frozen_(frozen) {
    for (const Player* p : frozen_) p->set_requires_grad(false);
  }
  ~FreezeGuard() {
    for (const Player* p : frozen_) p->set_requires_grad(true);
  }
  FreezeGuard(const FreezeGuard&) = delete;
  FreezeGuard& operator=(const FreezeGuard&) = delete;

 private:
  const std::vector<const Player*>& frozen_;
};

}  // namespace

Tensor update(const Player& player, const std::vector<const Player*>& frozen,
              const std::function<Tensor()>& objective, StepLosses& losses,
              const std::string& total_name) {
  RG_CHECK(player.optimizer != nullptr, "update: player ", player.name, " has no optimizer");
  for (const Player* other : frozen) {
    RG_CHECK(other != nullptr && other != &player, "update: player ", player.name,
             " cannot freeze itself (or a null player)");
  }
  RG_PROFILE_RANGE(player.name + " step");
  FreezeGuard freeze(frozen);
  player.set_requires_grad(true);
  player.optimizer->zero_grad();
  Tensor loss;
  {
    RG_PROFILE_RANGE(player.name + " forward");
    loss = objective();
  }
  RG_CHECK(loss.defined() && loss.numel() == 1, "update: the objective of player ", player.name,
           " must return a scalar loss");
  {
    RG_PROFILE_RANGE(player.name + " backward");
    loss.backward();
    if (player.gradient_sync) player.gradient_sync->finish();
  }
  {
    RG_PROFILE_RANGE(player.name + " optimizer");
    player.optimizer->step();
  }
  if (!total_name.empty()) losses.add(total_name, loss);
  return loss.detach();
}

}  // namespace rg::train
