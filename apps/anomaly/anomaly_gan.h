// The two training stages of f-AnoGAN (Schlegl et al. 2019), on the training layer's players:
//
//   stage 1, WGAN-GP on normal images (WganGpStep): per step, n_critic critic updates, each on
//     its own real batch x and fresh z:  L_D = mean D(G(z)) - mean D(x) + lambda * GP
//     (rg::gradient_penalty, exact), then one generator update through the frozen critic:
//     L_G = -mean D(G(z')).
//   stage 2, the izi_f encoder (EncoderStep): one player, E, with G and the critic frozen and in
//     eval mode:  L_E = ||x - G(E(x))||^2 / n_pixels + kappa * ||f(x) - f(G(E(x)))||^2 / n_features
//     with f the critic's last feature layer. The per-image anomaly score is the same quantity
//     (anomaly_scores()).
//
// Nothing here reads back to the host; the losses stay on the device (train::StepLosses).
#pragma once

#include <vector>

#include "engine/rng.h"
#include "engine/tensor.h"
#include "train/alternating_update.h"

namespace rg::models {
class DcganGenerator;
class DcganCritic;
class DcganEncoder;
}  // namespace rg::models

namespace rg::app {

struct WganGpConfig {
  int64_t n_critic = 5;    // critic updates per generator update (f-AnoGAN, WGAN-GP)
  double gp_weight = 10;   // lambda
};

class WganGpStep {
 public:
  // `rng` draws z and the penalty's interpolation.
  WganGpStep(models::DcganGenerator& g, models::DcganCritic& d, optim::Optimizer& opt_g,
             optim::Optimizer& opt_d, WganGpConfig config, Generator& rng);
  // One generator step: `real` holds n_critic batches [B,size,size,1] in [-1, 1], one per
  // critic update. Returns d_loss, d_penalty, w_distance (mean D(x) - mean D(G(z)), averaged
  // over the critic updates) and g_loss.
  train::StepLosses step(const std::vector<Tensor>& real);
  const WganGpConfig& config() const { return config_; }

 private:
  Tensor sample_z(int64_t n, const Tensor& like);
  models::DcganGenerator& g_;
  models::DcganCritic& d_;
  WganGpConfig config_;
  Generator& rng_;
  train::Player g_player_, d_player_;
};

// Per-image residuals of x against its reconstruction G(E(x)): the encoder's loss terms, one
// value per image ([N]), still differentiable.
struct Residuals {
  Tensor reconstruction;  // [N,size,size,1] = G(E(x))
  Tensor image;           // [N] mean over pixels of (x - G(E(x)))^2
  Tensor feature;         // [N] mean over features of (f(x) - f(G(E(x))))^2
  Tensor score;           // [N] image + kappa * feature
};
Residuals izif_residuals(models::DcganGenerator& g, models::DcganCritic& d,
                         models::DcganEncoder& e, const Tensor& x, double kappa);

class EncoderStep {
 public:
  // G and the critic are trained (stage 1) and stay frozen: the step puts them in eval mode and
  // never lets their parameters require gradients.
  EncoderStep(models::DcganGenerator& g, models::DcganCritic& d, models::DcganEncoder& e,
              optim::Optimizer& opt_e, double kappa);
  // Returns e_image, e_feature and e_loss (the total).
  train::StepLosses step(const Tensor& x);
  double kappa() const { return kappa_; }

 private:
  models::DcganGenerator& g_;
  models::DcganCritic& d_;
  models::DcganEncoder& e_;
  double kappa_;
  train::Player e_player_, g_player_, d_player_;
};

// The autoencoder baseline (issue 16): x -> G(E(x)) with the encoder and the generator of the
// same DcganConfig trained together, one player "AE", on L1:  L = mean |x - G(E(x))|.
class AutoencoderStep {
 public:
  // `opt` optimizes the parameters of both networks.
  AutoencoderStep(models::DcganGenerator& g, models::DcganEncoder& e, optim::Optimizer& opt);
  // Returns ae_l1.
  train::StepLosses step(const Tensor& x);

 private:
  models::DcganGenerator& g_;
  models::DcganEncoder& e_;
  train::Player player_;
};

}  // namespace rg::app
