// The training step of a paired image-to-image GAN (pix2pix with the input as the condition),
// shared by mask -> image synthesis (apps/synth) and reconstruction (apps/recon):
//
//   fake = G(x)
//   D update: L_D = d_loss(D(x, y), D(x, fake.detach()))  (+ the gradient penalty in wgan-gp)
//   G update: L_G = adv_weight * g_loss(D(x, fake)) + lambda_l1 * L1(fake, y)
//                   + lambda_mse * MSE(fake, y), D frozen
//
// With a discriminator window, D sees every image (the condition x included) through it: an
// intensity window [lo, hi] of the values G works in, stretched to [-1, 1] and clipped. CT
// files span [-1024, 3072] HU, where the full dose's 12 HU of noise is 0.006: a PatchGAN
// trained on those values stays at chance (BCE 0.693 for 5120 steps, docs/results.md), and so
// gives G no signal about texture. The soft-tissue window [-160, 240] HU makes that noise ten
// times larger.
//
// x is G's input (synthesis: the mask's channels; reconstruction: the degraded image), y the
// real/reference image. With GanMode::None there is no discriminator: G trains on the pixel
// losses alone (the plain supervised baseline of the same network). The losses and the
// alternating update are the training layer's; this file only says what the pair step computes.
#pragma once

#include <array>
#include <memory>
#include <optional>

#include "engine/device.h"
#include "engine/optim/optimizer.h"
#include "engine/rng.h"
#include "models/norm_kind.h"
#include "models/patchgan.h"
#include "engine/tensor.h"
#include "train/alternating_update.h"
#include "train/gan_loss.h"

namespace rg::nn {
class Module;
}

namespace rg::train {

struct PairedGanConfig {
  GanMode mode = GanMode::Vanilla;
  double lambda_l1 = 100.0;  // pix2pix's weight of L1 against the adversarial term
  double gp_weight = 10.0;   // wgan-gp: weight of the exact gradient penalty
  double lambda_mse = 0.0;   // weight of the mean squared error (0: none)
  double adv_weight = 1.0;   // weight of G's adversarial term (pix2pix: 1)
  // What D sees: [lo, hi] of the file's [-1, 1] values -> [-1, 1], clipped (none: the values).
  std::optional<std::array<double, 2>> d_window = std::nullopt;
};

// clamp(2 (x - lo) / (hi - lo) - 1, -1, 1), differentiable (the gradient is 0 where clipped).
Tensor intensity_window(const Tensor& x, double lo, double hi);

// The rest of a paired GAN around its generator: a PatchGAN on (input, image) pairs
// (d_in_channels = G's input channels + 1) when the mode has an adversarial term, and Adam
// (lr, beta1, 0.999) for G and D (D at d_lr when > 0); G and D moved to `device`. D and opt_d
// are null in GanMode::None.
// spectral_norm: every convolution of D spectrally normalized (models::PatchGanConfig).
struct PairedNetworks {
  std::unique_ptr<models::PatchDiscriminator> d;
  std::unique_ptr<optim::Adam> opt_g, opt_d;
};
PairedNetworks make_paired_networks(nn::Module& g, GanMode mode, int64_t d_in_channels, int64_t ndf,
                                    int64_t n_layers, models::NormKind norm, double lr, double beta1,
                                    Generator& init, Device device, bool spectral_norm = false, double d_lr = 0);

class PairedGanStep {
 public:
  // D and opt_d may be null only in GanMode::None. `rng` draws the penalty's interpolation.
  PairedGanStep(nn::Module& generator, models::PatchDiscriminator* discriminator,
                optim::Optimizer& opt_g, optim::Optimizer* opt_d, PairedGanConfig config,
                Generator& rng);
  // One alternating update: input [N,H,W,C] (G's input channels), target [N,H,W,1].
  // Returns, on the device: d_loss, d_real, d_fake (and d_penalty in wgan-gp) with a D;
  // g_l1, g_mse (when weighted), g_adv (with a D) and g_total.
  StepLosses step(const Tensor& input, const Tensor& target);
  void set_gradient_sync(dist::GradientSync* g_sync, dist::GradientSync* d_sync);
  const PairedGanConfig& config() const { return config_; }

 private:
  nn::Module& g_;
  models::PatchDiscriminator* d_;
  PairedGanConfig config_;
  Generator& rng_;
  Player g_player_, d_player_;
  Tensor seen_by_d(const Tensor& x) const;  // x through D's window (x itself without one)
};

}  // namespace rg::train
