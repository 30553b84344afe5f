// The alternating GAN update of adversarial segmentation (pix2pix with a mask as the "image"):
//
//   logits = G(x), p = sigmoid(logits)
//   D step: L_D = 0.5 * (adv_real(D(x, m)) + adv_fake(D(x, p.detach())))   -> Adam on D
//   G step: L_G = adv_gen(D(x, p)) + lambda * (BCE(logits, m) + softDice(p, m)), D frozen -> Adam on G
//
// With GanMode::None there is no discriminator: G trains on the segmentation loss alone (the
// plain U-Net baseline of the ablation).
#pragma once

#include <string>

#include "engine/dist/data_parallel.h"
#include "engine/roentgen.h"
#include "models/patchgan.h"

namespace rg::app {

enum class GanMode { Vanilla, LSGAN, Hinge, WganGp, None };
GanMode gan_mode_from_name(const std::string& name);  // vanilla|lsgan|hinge|wgan-gp|none
const char* gan_mode_name(GanMode mode);

struct GanLossConfig {
  GanMode mode = GanMode::Vanilla;
  double lambda_seg = 100.0;  // weight of BCE + soft Dice against the adversarial term
  // WGAN-GP: weight of the penalty and the finite-difference step (see gan_trainer.cpp).
  double gp_weight = 10.0;
  double gp_step = 1e-2;
};

// Scalars of one step (read back to the host once per step).
struct StepLosses {
  double d_loss = 0;  // total D objective (0 without D)
  double d_real = 0;  // adversarial term on real pairs
  double d_fake = 0;  // adversarial term on generated pairs
  double d_penalty = 0;  // WGAN-GP penalty term (already weighted)
  double g_adv = 0;   // generator's adversarial term
  double g_bce = 0;   // segmentation BCE
  double g_dice = 0;  // soft Dice loss
  double g_total = 0;
};

class SegGanTrainer {
 public:
  // D and opt_d may be null only in GanMode::None.
  SegGanTrainer(nn::Module& generator, models::PatchDiscriminator* discriminator,
                optim::Optimizer& opt_g, optim::Optimizer* opt_d, GanLossConfig config,
                Generator& rng);
  // One alternating update on a batch: image [N,H,W,1] in [-1,1], mask [N,H,W,1] in {0,1}.
  StepLosses step(const Tensor& image, const Tensor& mask);
  const GanLossConfig& config() const { return config_; }
  // Data parallelism: gradient synchronizers over G's and D's parameters (either may be null;
  // not owned). Their buckets are all-reduced during the backward passes, and finish() runs
  // right before the corresponding optimizer step: D's in the D step, G's in the G step (D is
  // frozen in the G step, so D's gradients are reduced only once per step). The returned
  // losses stay this rank's (the caller reduces them for logging if it wants).
  void set_gradient_sync(dist::GradientSync* g_sync, dist::GradientSync* d_sync) {
    g_sync_ = g_sync;
    d_sync_ = d_sync;
  }

 private:
  Tensor discriminator_loss(const Tensor& image, const Tensor& mask, const Tensor& fake,
                            StepLosses& out);
  Tensor generator_adversarial_loss(const Tensor& score_on_fake);
  Tensor gradient_penalty(const Tensor& image, const Tensor& real, const Tensor& fake);

  nn::Module& g_;
  models::PatchDiscriminator* d_;
  optim::Optimizer& opt_g_;
  optim::Optimizer* opt_d_;
  GanLossConfig config_;
  Generator& rng_;
  dist::GradientSync* g_sync_ = nullptr;
  dist::GradientSync* d_sync_ = nullptr;
};

// The segmentation part of the generator loss: BCE(logits, m) + softDice(sigmoid(logits), m).
Tensor segmentation_loss(const Tensor& logits, const Tensor& probs, const Tensor& mask,
                         Tensor* bce_out = nullptr, Tensor* dice_out = nullptr);

}  // namespace rg::app
