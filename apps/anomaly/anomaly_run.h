// One f-AnoGAN training run (issue 16): the anomaly task (normal training slices, DCGAN-style
// G / critic / encoder of models/dcgan.h, the steps of apps/anomaly/anomaly_gan.h, evaluation on
// validation slices with synthetic lesions) run by the training layer's loop
// (train/train_loop.h), which owns epochs, resume, Ctrl-C, logs, curves and checkpoints.
// apps/train_anomaly is a thin flag parser over this. docs/anomaly.md describes method and data.
//
// --method ae / threshold train the baselines on the same data with the same evaluation
// (apps/anomaly/anomaly_model.h): the results table always has three rows.
//
// Stage 1 trains G and the critic (WGAN-GP); stage 2 loads them from a stage-1 run's best
// checkpoint, freezes them and trains the encoder. Each stage is its own run directory (the
// loop's layout); both write checkpoints of kind "anomaly" with "stage" and "dcgan" entries.
//
// Data: training = every slice of the prepared file's train split (the "normal" slices: the
// default datasets hold no lesions). Validation and test = the val / test splits with synthetic
// lesions inserted by data/lesions.h into every second slice whose organ mask is large enough
// (LesionSlices), deterministically from --lesion-seed, or the file's own lesion masks when it
// has them (prepare_data phantom --anomaly); the organ mask of the file bounds the pixel metrics.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "apps/anomaly/anomaly_eval.h"
#include "train/run_options.h"
#include "train/settings.h"

namespace rg::data {
class SliceDataset;
}

namespace rg::app {

struct AnomalyRunConfig : train::RunOptions {
  // The shared options (train/run_options.h) with this application's defaults.
  AnomalyRunConfig() {
    name = "anomaly";
    epochs_decay = 0;  // f-AnoGAN keeps the learning rate constant
    lr = 1e-4;         // Adam 1e-4, betas (0, 0.9): f-AnoGAN / WGAN-GP
  }
  // fanogan (stages 1 and 2), or a baseline trained on the same data: ae (the convolutional
  // autoencoder, one stage) or threshold (intensity statistics, nothing to train: one epoch of
  // one step, so that its run directory, evaluation and checkpoint are the loop's).
  std::string method = "fanogan";
  int stage = 1;                  // fanogan: 1 WGAN-GP (G, critic); 2 encoder (G, critic frozen)
  std::string stage1_run;         // stage 2: the stage-1 run directory (its checkpoints/best)
  double beta1 = 0.0, beta2 = 0.9;
  int64_t n_critic = 5;
  double gp_weight = 10.0;
  double kappa = 1.0;             // weight of the feature residual (izi_f)
  int64_t z_dim = 128;
  int64_t width = 64;             // channels of the first critic level
  uint64_t lesion_seed = 1;       // synthetic lesions of validation and test
};

// Runs training; returns the process exit code (0 done, 130 interrupted after saving). Throws
// rg::Error for bad configuration or data, before anything is written.
int run_anomaly_training(const AnomalyRunConfig& config);

nlohmann::json anomaly_config_to_json(const AnomalyRunConfig& config);

// Every second slice (even index) whose organ mask has at least min_organ_pixels pixels gets
// one lesion of diameter size/20 .. size/5 pixels (slices are resampled, so sizes are in pixels).
// A file with its own lesion masks (SliceDataset::has_lesions: the phantom prepared with
// --anomaly) is taken as it is: its lesions, nothing inserted, `seed` unused; a slice is a lesion
// slice when a lesion pixel lies inside the organ mask.
LesionSlices make_lesion_slices(const data::SliceDataset& ds, uint64_t seed,
                                int64_t min_organ_pixels = 64);
// The slices of a split as the file has them: images, organ masks and the file's own lesion
// masks (none when it has none), lesion sizes set (set_lesion_sizes).
LesionSlices read_lesion_slices(const data::SliceDataset& ds);

}  // namespace rg::app
