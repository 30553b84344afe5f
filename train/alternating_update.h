// The alternating update of adversarial training, for any number of players.
//
// A player is a set of networks trained together by one optimizer (pix2pix: G, and D; CycleGAN:
// {G_AB, G_BA} and {D_A, D_B}; f-AnoGAN's encoder stage: the encoder alone, with G and the
// critic frozen). update() trains one player on an objective while the others are frozen:
//
//   freeze the other players (their parameters stop requiring gradients: the objective may run
//   through them, e.g. G's loss through D, but their weights receive nothing), unfreeze this one,
//   zero its gradients, evaluate the objective, backward, finish the gradient all-reduce of data
//   parallelism, optimizer step, unfreeze the others again.
//
// Losses are reported as named scalar tensors on the training device (StepLosses): nothing is
// read back to the host inside a step, so a GPU step never waits for the host; the training loop
// reads them when it logs.
#pragma once

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "engine/tensor.h"

namespace rg::nn {
class Module;
}
namespace rg::optim {
class Optimizer;
}
namespace rg::dist {
class GradientSync;
}

namespace rg::train {

// Named scalar losses of one step, in the order they were added, detached from the graph and
// still on the device.
class StepLosses {
 public:
  // Stores a detached copy of the scalar `value` (a one-element tensor) under `name`.
  void add(const std::string& name, const Tensor& value);
  const std::vector<std::pair<std::string, Tensor>>& items() const { return items_; }
  // The tensor of `name`; throws naming the losses there are when it is absent.
  const Tensor& at(const std::string& name) const;
  bool contains(const std::string& name) const;
  // Reads every loss to the host (a synchronizing read per loss): for tests and tools, not for
  // the training loop, which accumulates on the device and reads once per log line.
  std::vector<std::pair<std::string, double>> read() const;
  double read(const std::string& name) const { return at(name).item(); }

 private:
  std::vector<std::pair<std::string, Tensor>> items_;
};

struct Player {
  std::string name;                    // NVTX phase names: "<name> step", "<name> backward", ...
  std::vector<nn::Module*> networks;   // trained together
  optim::Optimizer* optimizer = nullptr;
  // Data parallelism: averages the networks' gradients over the ranks in buckets during the
  // backward pass; finish() waits for the last bucket before the optimizer step. Null in a
  // single process. Not owned.
  dist::GradientSync* gradient_sync = nullptr;

  void set_requires_grad(bool on) const;
};

// Trains `player` one optimizer step on `objective` with every player in `frozen` frozen (see
// above). The objective returns the scalar loss to minimize and may add named terms to `losses`;
// update() adds the total under `total_name` when it is non-empty. Returns the total (detached).
Tensor update(const Player& player, const std::vector<const Player*>& frozen,
              const std::function<Tensor()>& objective, StepLosses& losses,
              const std::string& total_name);

}  // namespace rg::train
