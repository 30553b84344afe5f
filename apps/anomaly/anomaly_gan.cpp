#include "apps/anomaly/anomaly_gan.h"

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/ops/gradient_penalty.h"
#include "engine/ops/ops.h"
#include "engine/optim/optimizer.h"
#include "models/dcgan.h"
#include "train/gan_loss.h"

namespace rg::app {

using train::GanMode;

WganGpStep::WganGpStep(models::DcganGenerator& g, models::DcganCritic& d, optim::Optimizer& opt_g,
                       optim::Optimizer& opt_d, WganGpConfig config, Generator& rng)
    : g_(g), d_(d), config_(config), rng_(rng) {
  RG_CHECK(config.n_critic >= 1, "WGAN-GP: --n-critic must be >= 1, got ", config.n_critic);
  RG_CHECK(config.gp_weight >= 0, "WGAN-GP: --gp-weight must be >= 0, got ", config.gp_weight);
  RG_CHECK(g.config == d.config, "WGAN-GP: generator and critic configurations differ");
  g_player_ = {.name = "G", .networks = {&g}, .optimizer = &opt_g};
  d_player_ = {.name = "D", .networks = {&d}, .optimizer = &opt_d};
}

Tensor WganGpStep::sample_z(int64_t n, const Tensor& like) {
  Tensor z = Tensor::empty({n, g_.config.z_dim}, like.dtype(), like.device());
  normal_(z, 0.0, 1.0, rng_);
  return z;
}

train::StepLosses WganGpStep::step(const std::vector<Tensor>& real) {
  RG_CHECK(static_cast<int64_t>(real.size()) == config_.n_critic, "WGAN-GP step: expected ",
           config_.n_critic, " real batches (one per critic update), got ", real.size());
  train::StepLosses losses;
  train::StepLosses critic_terms;  // per-update terms, averaged below
  Tensor w_sum, gp_sum, d_sum;
  for (const Tensor& x : real) {
    // A fresh z per critic update, as in WGAN-GP's algorithm 1.
    Tensor fake;
    {
      NoGradGuard no_grad;  // the critic update does not differentiate through G
      fake = g_.forward(sample_z(x.size(0), x));
    }
    Tensor w, gp;
    const Tensor total = train::update(d_player_, {&g_player_}, [&] {
      const train::CriticLoss l = train::d_loss(GanMode::WganGp, d_.forward(x), d_.forward(fake));
      w = neg(l.total).detach();
      gp = mul(gradient_penalty([&](const Tensor& t) { return d_.forward(t); }, x, fake, rng_),
               config_.gp_weight);
      return add(l.total, gp);
    }, critic_terms, "");
    gp = gp.detach();
    w_sum = w_sum.defined() ? add(w_sum, w) : w;
    gp_sum = gp_sum.defined() ? add(gp_sum, gp) : gp;
    d_sum = d_sum.defined() ? add(d_sum, total) : total;
  }
  const double inv = 1.0 / static_cast<double>(real.size());
  losses.add("d_loss", mul(d_sum, inv));
  losses.add("d_penalty", mul(gp_sum, inv));
  losses.add("w_distance", mul(w_sum, inv));

  const int64_t n = real.front().size(0);
  train::update(g_player_, {&d_player_}, [&] {
    return train::g_loss(GanMode::WganGp, d_.forward(g_.forward(sample_z(n, real.front()))));
  }, losses, "g_loss");
  return losses;
}

Residuals izif_residuals(models::DcganGenerator& g, models::DcganCritic& d,
                         models::DcganEncoder& e, const Tensor& x, double kappa) {
  Residuals r;
  r.reconstruction = g.forward(e.forward(x));
  r.image = mean(square(sub(x, r.reconstruction)), {1, 2, 3});
  r.feature = mean(square(sub(d.features(x), d.features(r.reconstruction))), {1});
  r.score = add(r.image, mul(r.feature, kappa));
  return r;
}

EncoderStep::EncoderStep(models::DcganGenerator& g, models::DcganCritic& d, models::DcganEncoder& e,
                         optim::Optimizer& opt_e, double kappa)
    : g_(g), d_(d), e_(e), kappa_(kappa) {
  RG_CHECK(kappa >= 0, "encoder stage: --kappa must be >= 0, got ", kappa);
  RG_CHECK(g.config == d.config && g.config == e.config,
           "encoder stage: generator, critic and encoder configurations differ");
  e_player_ = {.name = "E", .networks = {&e}, .optimizer = &opt_e};
  g_player_ = {.name = "G", .networks = {&g}};
  d_player_ = {.name = "D", .networks = {&d}};
}

train::StepLosses EncoderStep::step(const Tensor& x) {
  // Trained networks are used as they are at detection time.
  g_.eval();
  d_.eval();
  train::StepLosses losses;
  train::update(e_player_, {&g_player_, &d_player_}, [&] {
    const Residuals r = izif_residuals(g_, d_, e_, x, kappa_);
    const Tensor image = mean(r.image), feature = mean(r.feature);
    losses.add("e_image", image);
    losses.add("e_feature", feature);
    return add(image, mul(feature, kappa_));
  }, losses, "e_loss");
  return losses;
}

AutoencoderStep::AutoencoderStep(models::DcganGenerator& g, models::DcganEncoder& e, optim::Optimizer& opt)
    : g_(g), e_(e) {
  RG_CHECK(g.config == e.config, "autoencoder: generator and encoder configurations differ");
  player_ = {.name = "AE", .networks = {&e, &g}, .optimizer = &opt};
}

train::StepLosses AutoencoderStep::step(const Tensor& x) {
  train::StepLosses losses;
  train::update(player_, {}, [&] { return l1_loss(g_.forward(e_.forward(x)), x); }, losses, "ae_l1");
  return losses;
}

}  // namespace rg::app
