#include "train/paired_gan.h"

#include "engine/error.h"
#include "engine/ops/gradient_penalty.h"
#include "engine/ops/ops.h"
#include "engine/profile.h"
#include "models/patchgan.h"

namespace rg::train {

PairedNetworks make_paired_networks(nn::Module& g, GanMode mode, int64_t d_in_channels, int64_t ndf,
                                    int64_t n_layers, models::NormKind norm, double lr, double beta1,
                                    Generator& init, Device device, bool spectral_norm, double d_lr) {
  PairedNetworks n;
  if (mode != GanMode::None) {
    models::PatchGanConfig dc;
    dc.in_channels = d_in_channels;
    dc.ndf = ndf;
    dc.n_layers = n_layers;
    dc.norm = norm;
    dc.spectral_norm = spectral_norm;
    n.d = std::make_unique<models::PatchDiscriminator>(dc, init);
  }
  g.to(device);
  if (n.d) n.d->to(device);
  const optim::AdamOptions adam{.lr = lr, .beta1 = beta1, .beta2 = 0.999};
  n.opt_g = std::make_unique<optim::Adam>(g.parameters(), adam);
  if (n.d) {
    optim::AdamOptions d_adam = adam;
    if (d_lr > 0) d_adam.lr = d_lr;
    n.opt_d = std::make_unique<optim::Adam>(n.d->parameters(), d_adam);
  }
  return n;
}

Tensor intensity_window(const Tensor& x, double lo, double hi) {
  RG_CHECK(hi > lo, "intensity window: [", lo, ", ", hi, "] is empty (needs lo < hi)");
  const Tensor z = add(mul(x, 2.0 / (hi - lo)), -(hi + lo) / (hi - lo));
  // clamp(z, -1, 1) = relu(z + 1) - relu(z - 1) - 1: ops that autograd already differentiates.
  return add(sub(relu(add(z, 1.0)), relu(add(z, -1.0))), -1.0);
}

PairedGanStep::PairedGanStep(nn::Module& generator, models::PatchDiscriminator* discriminator,
                             optim::Optimizer& opt_g, optim::Optimizer* opt_d, PairedGanConfig config,
                             Generator& rng)
    : g_(generator), d_(discriminator), config_(config), rng_(rng) {
  RG_CHECK(config.mode == GanMode::None || (discriminator && opt_d), "paired GAN: mode ",
           gan_mode_name(config.mode), " needs a discriminator and its optimizer");
  RG_CHECK(config.lambda_l1 >= 0, "paired GAN: the L1 weight (--lambda) must be >= 0, got ", config.lambda_l1);
  RG_CHECK(config.lambda_mse >= 0, "paired GAN: the MSE weight must be >= 0, got ", config.lambda_mse);
  RG_CHECK(config.adv_weight >= 0, "paired GAN: the adversarial weight must be >= 0, got ", config.adv_weight);
  RG_CHECK(config.mode != GanMode::None || config.lambda_l1 > 0 || config.lambda_mse > 0,
           "paired GAN: no adversarial term and no pixel loss: nothing to train");
  g_player_ = {.name = "G", .networks = {&generator}, .optimizer = &opt_g};
  if (discriminator) d_player_ = {.name = "D", .networks = {discriminator}, .optimizer = opt_d};
}

void PairedGanStep::set_gradient_sync(dist::GradientSync* g_sync, dist::GradientSync* d_sync) {
  g_player_.gradient_sync = g_sync;
  d_player_.gradient_sync = d_sync;
}

Tensor PairedGanStep::seen_by_d(const Tensor& x) const {
  if (!config_.d_window) return x;
  const auto [lo, hi] = *config_.d_window;
  return intensity_window(x, lo, hi);
}

StepLosses PairedGanStep::step(const Tensor& input, const Tensor& target) {
  RG_CHECK(input.dim() == 4 && target.dim() == 4 && target.size(3) == 1 &&
               input.size(0) == target.size(0) && input.size(1) == target.size(1) &&
               input.size(2) == target.size(2),
           "paired GAN step: input ", shape_str(input.shape()), " must be [N,H,W,C] and target ",
           shape_str(target.shape()), " [N,H,W,1] with the same N, H, W");
  const bool adversarial = config_.mode != GanMode::None;
  StepLosses losses;
  Tensor fake;
  {
    RG_PROFILE_RANGE("G forward");
    fake = g_.forward(input);
  }

  // G's input as D sees it: computed once for D's two passes and G's.
  const Tensor d_condition = adversarial ? seen_by_d(input) : Tensor();
  if (adversarial) {
    const Tensor fake_d = fake.detach();
    update(d_player_, {&g_player_}, [&] {
      // Real pairs first, then generated ones: the order batch norm sees them in.
      const Tensor real_scores = d_->forward(d_condition, seen_by_d(target));
      const Tensor fake_scores = d_->forward(d_condition, seen_by_d(fake_d));
      const CriticLoss l = d_loss(config_.mode, real_scores, fake_scores);
      losses.add("d_real", l.real_term);
      losses.add("d_fake", l.fake_term);
      Tensor total = l.total;
      if (config_.mode == GanMode::WganGp) {
        // The critic of a sample is its mean patch score; the image is the critic's input,
        // G's input its condition.
        const Critic critic = [&](const Tensor& y) { return mean(d_->forward(d_condition, seen_by_d(y)), {1, 2, 3}); };
        const Tensor penalty = mul(gradient_penalty(critic, target, fake_d, rng_), config_.gp_weight);
        losses.add("d_penalty", penalty);
        total = add(total, penalty);
      }
      return total;
    }, losses, "d_loss");
  }

  std::vector<const Player*> frozen;
  if (adversarial) frozen.push_back(&d_player_);
  update(g_player_, frozen, [&] {
    const Tensor l1 = l1_loss(fake, target);
    losses.add("g_l1", l1);
    Tensor loss = mul(l1, config_.lambda_l1);
    if (config_.lambda_mse > 0) {
      const Tensor mse = mse_loss(fake, target);
      losses.add("g_mse", mse);
      loss = add(loss, mul(mse, config_.lambda_mse));
    }
    if (!adversarial) return loss;
    // Gradients flow through the frozen D into G.
    const Tensor adv = g_loss(config_.mode, d_->forward(d_condition, seen_by_d(fake)));
    losses.add("g_adv", adv);
    return add(loss, config_.adv_weight == 1.0 ? adv : mul(adv, config_.adv_weight));
  }, losses, "g_total");
  return losses;
}

}  // namespace rg::train
