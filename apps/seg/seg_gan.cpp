#include "apps/seg/seg_gan.h"

#include "engine/error.h"
#include "engine/ops/gradient_penalty.h"
#include "engine/ops/ops.h"
#include "engine/profile.h"
#include "models/patchgan.h"

namespace rg::app {

using train::GanMode;

Tensor segmentation_loss(const Tensor& logits, const Tensor& probs, const Tensor& mask,
                         Tensor* bce_out, Tensor* dice_out) {
  Tensor bce = bce_with_logits(logits, mask);
  Tensor dice = soft_dice_loss(probs, mask);
  if (bce_out) *bce_out = bce;
  if (dice_out) *dice_out = dice;
  return add(bce, dice);
}

SegGanStep::SegGanStep(nn::Module& generator, models::PatchDiscriminator* discriminator,
                       optim::Optimizer& opt_g, optim::Optimizer* opt_d, SegGanConfig config,
                       Generator& rng)
    : g_(generator), d_(discriminator), config_(config), rng_(rng) {
  RG_CHECK(config.mode == GanMode::None || (discriminator && opt_d), "segmentation GAN: mode ",
           train::gan_mode_name(config.mode), " needs a discriminator and its optimizer");
  RG_CHECK(config.lambda_seg >= 0, "segmentation GAN: lambda must be >= 0, got ", config.lambda_seg);
  RG_CHECK(config.r1_gamma >= 0, "segmentation GAN: --r1-gamma must be >= 0, got ", config.r1_gamma);
  g_player_ = {.name = "G", .networks = {&generator}, .optimizer = &opt_g};
  if (discriminator) d_player_ = {.name = "D", .networks = {discriminator}, .optimizer = opt_d};
}

void SegGanStep::set_gradient_sync(dist::GradientSync* g_sync, dist::GradientSync* d_sync) {
  g_player_.gradient_sync = g_sync;
  d_player_.gradient_sync = d_sync;
}

train::StepLosses SegGanStep::step(const Tensor& image, const Tensor& mask) {
  RG_CHECK(image.dim() == 4 && mask.dim() == 4 && mask.size(-1) == 1 &&
               mask.size(0) == image.size(0) && mask.size(1) == image.size(1) && mask.size(2) == image.size(2),
           "train step: image ", shape_str(image.shape()), " and mask ", shape_str(mask.shape()),
           " must be [N,H,W,C] and [N,H,W,1]");
  const bool adversarial = config_.mode != GanMode::None;
  train::StepLosses losses;
  Tensor logits, probs;
  {
    RG_PROFILE_RANGE("G forward");
    logits = g_.forward(image);
    probs = sigmoid(logits);
  }

  if (adversarial) {
    const Tensor fake = probs.detach();
    train::update(d_player_, {&g_player_}, [&] {
      // Real pairs first, then generated ones: the order batch norm sees them in.
      const Tensor real_scores = d_->forward(image, mask);
      const Tensor fake_scores = d_->forward(image, fake);
      const train::CriticLoss l = train::d_loss(config_.mode, real_scores, fake_scores);
      losses.add("d_real", l.real_term);
      losses.add("d_fake", l.fake_term);
      Tensor total = l.total;
      // The critic of a sample is its mean patch score; the mask is the critic's input, the
      // image its condition.
      const Critic critic = [&](const Tensor& m) { return mean(d_->forward(image, m), {1, 2, 3}); };
      if (config_.mode == GanMode::WganGp) {
        const Tensor penalty = mul(gradient_penalty(critic, mask, fake, rng_), config_.gp_weight);
        losses.add("d_penalty", penalty);
        total = add(total, penalty);
      }
      if (config_.r1_gamma > 0) {
        const Tensor r1 = mul(r1_penalty(critic, mask), 0.5 * config_.r1_gamma);
        losses.add("d_r1", r1);
        total = add(total, r1);
      }
      return total;
    }, losses, "d_loss");
  }

  std::vector<const train::Player*> frozen;
  if (adversarial) frozen.push_back(&d_player_);
  train::update(g_player_, frozen, [&] {
    Tensor bce, dice;
    Tensor loss = mul(segmentation_loss(logits, probs, mask, &bce, &dice), config_.lambda_seg);
    losses.add("g_bce", bce);
    losses.add("g_dice", dice);
    if (!adversarial) return loss;
    // Gradients flow through the frozen D into G.
    const Tensor adv = train::g_loss(config_.mode, d_->forward(image, probs));
    losses.add("g_adv", adv);
    return add(loss, adv);
  }, losses, "g_total");
  return losses;
}

}  // namespace rg::app
