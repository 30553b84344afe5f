#include "apps/synth/synth_gan.h"

#include "engine/error.h"
#include "engine/ops/gradient_penalty.h"
#include "engine/ops/ops.h"
#include "engine/profile.h"
#include "models/patchgan.h"

namespace rg::app {

using train::GanMode;

SynthGanStep::SynthGanStep(nn::Module& generator, models::PatchDiscriminator* discriminator,
                           optim::Optimizer& opt_g, optim::Optimizer* opt_d,
                           SynthGanConfig config, Generator& rng)
    : g_(generator), d_(discriminator), config_(config), rng_(rng) {
  RG_CHECK(config.mode == GanMode::None || (discriminator && opt_d), "synthesis GAN: mode ",
           train::gan_mode_name(config.mode), " needs a discriminator and its optimizer");
  RG_CHECK(config.lambda_l1 >= 0, "synthesis GAN: --lambda must be >= 0, got ", config.lambda_l1);
  RG_CHECK(config.mode != GanMode::None || config.lambda_l1 > 0,
           "synthesis GAN: --gan-mode none with --lambda 0 has nothing to train");
  g_player_ = {.name = "G", .networks = {&generator}, .optimizer = &opt_g};
  if (discriminator) d_player_ = {.name = "D", .networks = {discriminator}, .optimizer = opt_d};
}

void SynthGanStep::set_gradient_sync(dist::GradientSync* g_sync, dist::GradientSync* d_sync) {
  g_player_.gradient_sync = g_sync;
  d_player_.gradient_sync = d_sync;
}

train::StepLosses SynthGanStep::step(const Tensor& mask, const Tensor& image) {
  RG_CHECK(mask.dim() == 4 && image.dim() == 4 && image.size(3) == 1 &&
               mask.size(0) == image.size(0) && mask.size(1) == image.size(1) &&
               mask.size(2) == image.size(2),
           "synthesis step: mask ", shape_str(mask.shape()), " must be [N,H,W,C] and image ",
           shape_str(image.shape()), " [N,H,W,1] with the same N, H, W");
  const bool adversarial = config_.mode != GanMode::None;
  train::StepLosses losses;
  Tensor fake;
  {
    RG_PROFILE_RANGE("G forward");
    fake = g_.forward(mask);
  }

  if (adversarial) {
    const Tensor fake_d = fake.detach();
    train::update(d_player_, {&g_player_}, [&] {
      // Real pairs first, then generated ones: the order batch norm sees them in.
      const Tensor real_scores = d_->forward(mask, image);
      const Tensor fake_scores = d_->forward(mask, fake_d);
      const train::CriticLoss l = train::d_loss(config_.mode, real_scores, fake_scores);
      losses.add("d_real", l.real_term);
      losses.add("d_fake", l.fake_term);
      Tensor total = l.total;
      if (config_.mode == GanMode::WganGp) {
        // The critic of a sample is its mean patch score; the image is the critic's input,
        // the mask its condition.
        const Critic critic = [&](const Tensor& y) { return mean(d_->forward(mask, y), {1, 2, 3}); };
        const Tensor penalty = mul(gradient_penalty(critic, image, fake_d, rng_), config_.gp_weight);
        losses.add("d_penalty", penalty);
        total = add(total, penalty);
      }
      return total;
    }, losses, "d_loss");
  }

  std::vector<const train::Player*> frozen;
  if (adversarial) frozen.push_back(&d_player_);
  train::update(g_player_, frozen, [&] {
    const Tensor l1 = l1_loss(fake, image);
    losses.add("g_l1", l1);
    Tensor loss = mul(l1, config_.lambda_l1);
    if (!adversarial) return loss;
    // Gradients flow through the frozen D into G.
    const Tensor adv = train::g_loss(config_.mode, d_->forward(mask, fake));
    losses.add("g_adv", adv);
    return add(loss, adv);
  }, losses, "g_total");
  return losses;
}

}  // namespace rg::app
