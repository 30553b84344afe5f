#include "apps/common/gan_trainer.h"

#include <cmath>

#include "engine/profile.h"

namespace rg::app {

GanMode gan_mode_from_name(const std::string& name) {
  if (name == "vanilla") return GanMode::Vanilla;
  if (name == "lsgan") return GanMode::LSGAN;
  if (name == "hinge") return GanMode::Hinge;
  if (name == "wgan-gp" || name == "wgangp") return GanMode::WganGp;
  if (name == "none") return GanMode::None;
  RG_FAIL("unknown GAN mode '", name, "' (expected vanilla, lsgan, hinge, wgan-gp or none)");
}

const char* gan_mode_name(GanMode mode) {
  switch (mode) {
    case GanMode::Vanilla: return "vanilla";
    case GanMode::LSGAN: return "lsgan";
    case GanMode::Hinge: return "hinge";
    case GanMode::WganGp: return "wgan-gp";
    case GanMode::None: return "none";
  }
  return "?";
}

Tensor segmentation_loss(const Tensor& logits, const Tensor& probs, const Tensor& mask,
                         Tensor* bce_out, Tensor* dice_out) {
  Tensor bce = bce_with_logits(logits, mask);
  Tensor dice = soft_dice_loss(probs, mask);
  if (bce_out) *bce_out = bce;
  if (dice_out) *dice_out = dice;
  return add(bce, dice);
}

SegGanTrainer::SegGanTrainer(nn::Module& generator, models::PatchDiscriminator* discriminator,
                             optim::Optimizer& opt_g, optim::Optimizer* opt_d,
                             GanLossConfig config, Generator& rng)
    : g_(generator), d_(discriminator), opt_g_(opt_g), opt_d_(opt_d), config_(config), rng_(rng) {
  RG_CHECK(config.mode == GanMode::None || (discriminator && opt_d),
           "SegGanTrainer: GAN mode ", gan_mode_name(config.mode),
           " needs a discriminator and its optimizer");
  RG_CHECK(config.lambda_seg >= 0, "SegGanTrainer: lambda must be >= 0, got ", config.lambda_seg);
}

namespace {
// Loss of a score map against a constant target for the "real"/"fake" label.
Tensor score_loss(GanMode mode, const Tensor& score, bool target_real) {
  switch (mode) {
    case GanMode::Vanilla:
      return bce_with_logits(score, Tensor::full(score.shape(), target_real ? 1.0 : 0.0,
                                                 score.dtype(), score.device()));
    case GanMode::LSGAN:
      return mse_loss(score, Tensor::full(score.shape(), target_real ? 1.0 : 0.0, score.dtype(),
                                          score.device()));
    case GanMode::Hinge:  // D only: mean(relu(1 - s)) for real, mean(relu(1 + s)) for fake
      return target_real ? mean(relu(1.0 - score)) : mean(relu(add(score, 1.0)));
    case GanMode::WganGp:  // critic: maximize s(real) - s(fake)
      return target_real ? neg(mean(score)) : mean(score);
    case GanMode::None: break;
  }
  RG_FAIL("score_loss: no adversarial loss in mode none");
}
}  // namespace

Tensor SegGanTrainer::generator_adversarial_loss(const Tensor& score_on_fake) {
  switch (config_.mode) {
    case GanMode::Vanilla:
    case GanMode::LSGAN: return score_loss(config_.mode, score_on_fake, true);
    case GanMode::Hinge:
    case GanMode::WganGp: return neg(mean(score_on_fake));
    case GanMode::None: break;
  }
  RG_FAIL("generator_adversarial_loss: no adversarial loss in mode none");
}

// WGAN-GP without double backward. Gulrajani et al. (Prop. 1) show that the optimal critic has
// gradient norm 1 along the line from a generated sample to a real one, in that line's
// direction. We penalize exactly that directional derivative, measured by a central difference
// on the interpolate x_hat = e*real + (1-e)*fake with unit direction u = (real-fake)/|real-fake|:
//   d = (D(x_hat + h u) - D(x_hat - h u)) / (2h),   penalty = gp_weight * mean((d - 1)^2)
// The penalty is an ordinary function of D's parameters, so plain reverse mode differentiates it.
// The critic score of a sample is its mean patch score.
Tensor SegGanTrainer::gradient_penalty(const Tensor& image, const Tensor& real, const Tensor& fake) {
  const int64_t n = real.size(0);
  Tensor eps = Tensor::empty({n, 1, 1, 1}, real.dtype(), real.device());
  uniform_(eps, 0.0, 1.0, rng_);
  Tensor diff = sub(real, fake);
  Tensor x_hat = add(fake, mul(eps, diff));
  // Per-sample L2 norm of the direction (a constant: no gradient flows into the data).
  Tensor norm = add(sqrt(sum(square(diff), {1, 2, 3}, true)), 1e-12);
  Tensor u = div(diff, norm);
  const double h = config_.gp_step;
  auto critic = [&](const Tensor& m) { return mean(d_->forward(image, m), {1, 2, 3}); };
  Tensor d_plus = critic(add(x_hat, mul(u, h)));
  Tensor d_minus = critic(sub(x_hat, mul(u, h)));
  Tensor slope = mul(sub(d_plus, d_minus), 1.0 / (2.0 * h));
  return mul(mean(square(add(slope, -1.0))), config_.gp_weight);
}

Tensor SegGanTrainer::discriminator_loss(const Tensor& image, const Tensor& mask,
                                         const Tensor& fake, StepLosses& out) {
  Tensor real_term = score_loss(config_.mode, d_->forward(image, mask), true);
  Tensor fake_term = score_loss(config_.mode, d_->forward(image, fake), false);
  out.d_real = real_term.item();
  out.d_fake = fake_term.item();
  Tensor loss;
  if (config_.mode == GanMode::WganGp) {
    Tensor penalty = gradient_penalty(image, mask, fake);
    out.d_penalty = penalty.item();
    loss = add(add(real_term, fake_term), penalty);
  } else {
    loss = mul(add(real_term, fake_term), 0.5);
  }
  return loss;
}

StepLosses SegGanTrainer::step(const Tensor& image, const Tensor& mask) {
  RG_CHECK(image.dim() == 4 && mask.shape() == image.shape(), "train step: image ",
           shape_str(image.shape()), " and mask ", shape_str(mask.shape()),
           " must both be [N,H,W,1]");
  StepLosses out;
  // NVTX phase ranges (engine/profile.h) give Nsight Systems the step's structure.
  Tensor logits, probs;
  {
    RG_PROFILE_RANGE("G forward");
    logits = g_.forward(image);
    probs = sigmoid(logits);
  }

  if (config_.mode != GanMode::None) {
    RG_PROFILE_RANGE("D step");
    d_->set_requires_grad(true);
    opt_d_->zero_grad();
    Tensor d_loss;
    {
      RG_PROFILE_RANGE("D forward");
      d_loss = discriminator_loss(image, mask, probs.detach(), out);
    }
    {
      RG_PROFILE_RANGE("D backward");
      d_loss.backward();
      if (d_sync_) d_sync_->finish();
    }
    {
      RG_PROFILE_RANGE("D optimizer");
      opt_d_->step();
    }
    out.d_loss = d_loss.item();
  }

  RG_PROFILE_RANGE("G step");
  opt_g_.zero_grad();
  Tensor bce, dice;
  Tensor g_loss = mul(segmentation_loss(logits, probs, mask, &bce, &dice), config_.lambda_seg);
  if (config_.mode != GanMode::None) {
    RG_PROFILE_RANGE("G adversarial forward");
    d_->set_requires_grad(false);  // gradients flow through D into G; D's weights get none
    Tensor adv = generator_adversarial_loss(d_->forward(image, probs));
    out.g_adv = adv.item();
    g_loss = add(g_loss, adv);
  }
  {
    RG_PROFILE_RANGE("G backward");
    g_loss.backward();
    if (g_sync_) g_sync_->finish();
  }
  {
    RG_PROFILE_RANGE("G optimizer");
    opt_g_.step();
  }
  if (d_) d_->set_requires_grad(true);
  out.g_bce = bce.item();
  out.g_dice = dice.item();
  out.g_total = g_loss.item();
  return out;
}

}  // namespace rg::app
