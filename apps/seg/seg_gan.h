// The training step of adversarial segmentation (pix2pix with a mask as the "image"):
//
//   logits = G(x), p = sigmoid(logits)
//   D update: L_D = d_loss(D(x, m), D(x, p.detach()))  (+ the gradient penalty in wgan-gp,
//             + the R1 penalty when r1_gamma > 0)
//   G update: L_G = g_loss(D(x, p)) + lambda * (BCE(logits, m) + softDice(p, m)), D frozen
//
// With GanMode::None there is no discriminator: G trains on the segmentation loss alone (the
// plain U-Net baseline of the ablation). The GAN losses and the alternating update are the
// training layer's (train/gan_loss.h, train/alternating_update.h); this file only says what
// adversarial segmentation computes. bench/bench_seg256 times this very step.
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

struct SegGanConfig {
  train::GanMode mode = train::GanMode::Vanilla;
  double lambda_seg = 100.0;  // weight of BCE + soft Dice against the adversarial term
  // wgan-gp: the weight of the exact gradient penalty (engine/ops/gradient_penalty.h).
  double gp_weight = 10.0;
  // R1 (real-data gradient penalty), any GAN mode: adds r1_gamma / 2 * mean ||grad D(x, m)||^2
  // over real pairs to D's loss (0 = off).
  double r1_gamma = 0.0;
};

// The segmentation part of the generator loss: BCE(logits, m) + softDice(sigmoid(logits), m).
Tensor segmentation_loss(const Tensor& logits, const Tensor& probs, const Tensor& mask,
                         Tensor* bce_out = nullptr, Tensor* dice_out = nullptr);

class SegGanStep {
 public:
  // D and opt_d may be null only in GanMode::None. `rng` draws the penalty's interpolation.
  SegGanStep(nn::Module& generator, models::PatchDiscriminator* discriminator,
             optim::Optimizer& opt_g, optim::Optimizer* opt_d, SegGanConfig config,
             Generator& rng);
  // One alternating update on a batch: image [N,H,W,C] in [-1,1] (C = G's input channels: the
  // slice, or the slice and its neighbours), mask [N,H,W,1] in {0,1}.
  // Returns, on the device: d_loss, d_real, d_fake (and d_penalty in wgan-gp, d_r1 with R1)
  // when there is a D;
  // g_bce, g_dice, g_adv (with a D) and g_total.
  train::StepLosses step(const Tensor& image, const Tensor& mask);
  // Data parallelism: gradient synchronizers over G's and D's parameters (either may be null;
  // not owned). D's is finished in the D update, G's in the G update (D is frozen in the G
  // update, so its gradients are reduced once per step).
  void set_gradient_sync(dist::GradientSync* g_sync, dist::GradientSync* d_sync);
  const SegGanConfig& config() const { return config_; }

 private:
  nn::Module& g_;
  models::PatchDiscriminator* d_;
  SegGanConfig config_;
  Generator& rng_;
  train::Player g_player_, d_player_;
};

}  // namespace rg::app
