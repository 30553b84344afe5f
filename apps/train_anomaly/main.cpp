// train_anomaly: f-AnoGAN unsupervised anomaly detection (issue 16) on a prepared HDF5 slices
// file. --stage 1 trains a WGAN-GP generator and critic on the normal training slices; --stage 2
// trains the izi_f encoder against them (--stage1 names the stage-1 run). --method ae|threshold
// runs a baseline on the same data and evaluation instead. docs/anomaly.md.
#include <CLI/CLI.hpp>
#include <iostream>

#include "apps/anomaly/anomaly_run.h"
#include "engine/error.h"
#include "train/default_data.h"
#include "train/run_flags.h"

namespace {

// The default dataset: Colin27 at 128x128 when prepared, else the lung phantom.
std::string default_dataset() {
  return rg::train::find_default_dataset("train_anomaly", {"colin27_skullstrip_128.h5", "lung_phantom_128.h5"},
                                         "run scripts/prepare_defaults.sh BUILD_DIR data/prepared");
}

}  // namespace

int main(int argc, char** argv) {
  rg::app::AnomalyRunConfig c;
  CLI::App app{"f-AnoGAN anomaly detection: stage 1 WGAN-GP (G, critic), stage 2 encoder"};
  rg::train::RunFlags f;
  rg::train::add_run_flags(app, c, f, "prepared HDF5 slices file (apps/prepare_data)");
  app.add_option("--method", c.method, "fanogan (two stages), or a baseline on the same data: ae (convolutional "
                 "autoencoder, L1) or threshold (intensity |x - median| / MAD inside the mask)")
      ->check(CLI::IsMember({"fanogan", "ae", "threshold"}))->capture_default_str();
  app.add_option("--stage", c.stage, "1: WGAN-GP on normal slices; 2: encoder with G and critic frozen")
      ->check(CLI::IsMember({1, 2}))->capture_default_str();
  app.add_option("--stage1", c.stage1_run, "stage 2: the stage-1 run directory (uses its checkpoints/best)");
  app.add_option("--beta1", c.beta1, "Adam beta1")->check(CLI::Range(0.0, 0.999999))->capture_default_str();
  app.add_option("--beta2", c.beta2, "Adam beta2")->check(CLI::Range(0.0, 0.999999))->capture_default_str();
  app.add_option("--n-critic", c.n_critic, "stage 1: critic updates per generator update (each on its own batch)")
      ->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--gp-weight", c.gp_weight, "stage 1: WGAN-GP lambda")->check(CLI::NonNegativeNumber)->capture_default_str();
  app.add_option("--kappa", c.kappa, "stage 2: weight of the critic-feature residual")
      ->check(CLI::NonNegativeNumber)->capture_default_str();
  app.add_option("--z-dim", c.z_dim, "stage 1: latent dimension")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--width", c.width, "stage 1: channels of the first critic level")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--lesion-seed", c.lesion_seed, "seed of the synthetic lesions of validation and test")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  try {
    if (c.data.empty()) c.data = default_dataset();
    c.lr_policy = rg::train::parse_lr_policy(f.lr_policy);
    return rg::app::run_anomaly_training(c);
  } catch (const std::exception& e) {
    std::cerr << "train_anomaly: error: " << e.what() << "\n";
    return 1;
  }
}
