// train_synth: mask -> image synthesis (pix2pix: U-Net generator with a tanh head + PatchGAN
// on (mask, image) pairs, L1 weight 100) on a prepared HDF5 slices file. With no --data it
// trains on the embedded default dataset (Colin27 where prepared, else the lung phantom), at
// 128x128 with small widths on the CPU. apps/synthesize turns its checkpoints into new pairs.
#include <CLI/CLI.hpp>
#include <iostream>

#include "apps/synth/synth_run.h"
#include "engine/device.h"
#include "engine/error.h"
#include "train/default_data.h"
#include "train/run_flags.h"

namespace {

std::string default_dataset(bool gpu) {
  const std::string suffix = gpu ? ".h5" : "_128.h5";
  return rg::train::find_default_dataset("train_synth", {"colin27_skullstrip" + suffix, "lung_phantom" + suffix},
                                         "run scripts/prepare_defaults.sh");
}

}  // namespace

int main(int argc, char** argv) {
  namespace train = rg::train;
  rg::app::SynthRunConfig c;
  train::RunFlags f;
  CLI::App app{"Mask -> image synthesis training: U-Net generator (tanh) + PatchGAN on (mask, image)"};
  train::add_run_flags(app, c, f, "prepared HDF5 slices file (apps/prepare_data)");
  app.add_option("--beta1", c.beta1, "Adam beta1")->check(CLI::Range(0.0, 0.999999))->capture_default_str();
  app.add_option("--lambda", c.lambda_l1, "weight of the L1 term")->check(CLI::NonNegativeNumber)->capture_default_str();
  train::add_pix2pix_flags(app, c, f, "vanilla, lsgan, hinge, wgan-gp, or none (plain L1 regression)");
  app.add_flag("--dropout", c.dropout, "dropout in the inner U-Net blocks");
  app.add_option("--train-fraction", c.train_fraction,
                 "fraction of the real training slices used (a seeded subset, as train_seg's)")
      ->check(CLI::Range(0.0, 1.0))->capture_default_str();
  app.add_option("--train-seed", c.train_seed, "seed of the --train-fraction subset")->capture_default_str();
  app.add_flag("!--no-augment", c.augment, "turn off the geometric augmentation");
  app.add_flag("--spectral-norm", c.spectral_norm, "spectral normalization of every convolution of D");
  std::string condition = "mask";
  app.add_option("--condition", condition,
                 "what G is conditioned on: mask (binary) or labels (the file's label maps, one-hot; "
                 "prepare_data --label-map)")
      ->check(CLI::IsMember({"mask", "labels"}))->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  try {
    train::apply_pix2pix_flags(c, f);
    c.label_condition = condition == "labels";
    const bool gpu = rg::cuda_device_count() > 0 && c.device != "cpu";
    if (c.data.empty()) c.data = default_dataset(gpu);
    if (gpu) {
      std::cerr << "train_synth: GPU found: default configuration ngf 64, ndf 64, batch 8, "
                   "20 + 20 epochs\n";
      if (!*f.epochs) c.epochs = 20;
      if (!*f.epochs_decay) c.epochs_decay = 20;
    } else {
      // Sized like train_seg's CPU default: a few minutes on 2 cores at 128x128.
      std::cerr << "train_synth: no GPU: default CPU configuration (ngf 16, ndf 16, batch 8, "
                   "5 + 5 epochs); pass --ngf/--ndf/--batch-size/--epochs to change it\n";
      if (!*f.ngf) c.ngf = 16;
      if (!*f.ndf) c.ndf = 16;
      if (!*f.batch) c.batch_size = 8;
      if (!*f.epochs) c.epochs = 5;
      if (!*f.epochs_decay) c.epochs_decay = 5;
    }
    return rg::app::run_synth_training(c);
  } catch (const std::exception& e) {
    std::cerr << "train_synth: error: " << e.what() << "\n";
    return 1;
  }
}
