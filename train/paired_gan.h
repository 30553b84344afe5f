// The training step of mask -> image synthesis (pix2pix with the mask as the condition):
//
//   fake = G(m)  (U-Net, tanh head: an image in [-1, 1])
//   D update: L_D = d_loss(D(m, y), D(m, fake.detach()))  (+ the gradient penalty in wgan-gp)
//   G update: L_G = g_loss(D(m, fake)) + lambda * L1(fake, y), D frozen
//
// m is the mask as G's input channels (a binary mask: one channel of 0/1), y the real image.
// With GanMode::None there is no discriminator: G trains on L1 alone (the plain regression
// baseline). The losses and the alternating update are the training layer's; this file only
// says what synthesis computes.
#pragma once

#include "engine/rng.h"
#include "engine/tensor.h"
#include "train/alternating_update.h"
#include "train/gan_loss.h"

namespace rg::nn {
class Module;
}
namespace rg::models {
class PatchDiscriminator;
}

namespace rg::app {

struct SynthGanConfig {
  train::GanMode mode = train::GanMode::Vanilla;
  double lambda_l1 = 100.0;  // pix2pix's weight of L1 against the adversarial term
  double gp_weight = 10.0;   // wgan-gp: weight of the exact gradient penalty
};

class SynthGanStep {
 public:
  // D and opt_d may be null only in GanMode::None. `rng` draws the penalty's interpolation.
  SynthGanStep(nn::Module& generator, models::PatchDiscriminator* discriminator,
               optim::Optimizer& opt_g, optim::Optimizer* opt_d, SynthGanConfig config,
               Generator& rng);
  // One alternating update: mask [N,H,W,C] (G's input channels), image [N,H,W,1] in [-1, 1].
  // Returns, on the device: d_loss, d_real, d_fake (and d_penalty in wgan-gp) with a D;
  // g_l1, g_adv (with a D) and g_total.
  train::StepLosses step(const Tensor& mask, const Tensor& image);
  void set_gradient_sync(dist::GradientSync* g_sync, dist::GradientSync* d_sync);
  const SynthGanConfig& config() const { return config_; }

 private:
  nn::Module& g_;
  models::PatchDiscriminator* d_;
  SynthGanConfig config_;
  Generator& rng_;
  train::Player g_player_, d_player_;
};

}  // namespace rg::app
