// train_synth: mask -> image synthesis (pix2pix: U-Net generator with a tanh head + PatchGAN
// on (mask, image) pairs, L1 weight 100) on a prepared HDF5 slices file. With no --data it
// trains on the embedded default dataset (Colin27 where prepared, else the lung phantom), at
// 128x128 with small widths on the CPU. apps/synthesize turns its checkpoints into new pairs.
#include <CLI/CLI.hpp>
#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "apps/synth/synth_run.h"
#include "engine/device.h"
#include "engine/error.h"
#include "train/settings.h"

namespace fs = std::filesystem;

namespace {

std::string default_dataset(bool gpu) {
  const char* env = std::getenv("RG_DATA_DIR");
  const fs::path dir = env ? env : RG_DEFAULT_DATA_DIR;
  const std::string suffix = gpu ? ".h5" : "_128.h5";
  for (const char* stem : {"colin27_skullstrip", "lung_phantom"}) {
    const fs::path p = dir / (stem + suffix);
    if (fs::exists(p)) {
      std::cerr << "train_synth: default dataset " << p.string() << "\n";
      return p.string();
    }
  }
  RG_FAIL("no default dataset in ", dir.string(),
          ": run scripts/prepare_defaults.sh, or pass --data FILE.h5");
}

}  // namespace

int main(int argc, char** argv) {
  namespace train = rg::train;
  rg::app::SynthRunConfig c;
  std::string lr_policy = "linear", gan_mode = "vanilla", norm = "batch", precision = "fp32";
  std::string conv_backend;
  CLI::App app{"Mask -> image synthesis training: U-Net generator (tanh) + PatchGAN on (mask, image)"};
  app.add_option("--data", c.data, "prepared HDF5 slices file (apps/prepare_data)");
  app.add_option("--name", c.name, "run name (folder under --out)")->capture_default_str();
  app.add_option("--out", c.out_dir, "output directory")->capture_default_str();
  auto* epochs = app.add_option("--epochs", c.epochs, "epochs at the initial learning rate")->check(CLI::NonNegativeNumber);
  auto* epochs_decay = app.add_option("--epochs-decay", c.epochs_decay, "epochs of learning-rate decay")->check(CLI::NonNegativeNumber);
  app.add_option("--lr-policy", lr_policy, "linear (pix2pix) or cosine")->check(CLI::IsMember(train::lr_policy_names()))->capture_default_str();
  auto* batch = app.add_option("--batch-size", c.batch_size, "batch size")->check(CLI::PositiveNumber);
  app.add_option("--lr", c.lr, "Adam learning rate")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--beta1", c.beta1, "Adam beta1")->check(CLI::Range(0.0, 0.999999))->capture_default_str();
  app.add_option("--lambda", c.lambda_l1, "weight of the L1 term")->check(CLI::NonNegativeNumber)->capture_default_str();
  app.add_option("--gan-mode", gan_mode, "vanilla, lsgan, hinge, wgan-gp, or none (plain L1 regression)")
      ->check(CLI::IsMember(train::gan_mode_names()))->capture_default_str();
  app.add_option("--norm", norm, "batch, instance or none")->check(CLI::IsMember(train::norm_names()))->capture_default_str();
  auto* ngf = app.add_option("--ngf", c.ngf, "generator width")->check(CLI::PositiveNumber);
  auto* ndf = app.add_option("--ndf", c.ndf, "discriminator width")->check(CLI::PositiveNumber);
  app.add_option("--n-layers", c.n_layers, "PatchGAN layers")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--num-downs", c.num_downs, "U-Net depth (0: from the slice size, at most 8)")->check(CLI::NonNegativeNumber);
  app.add_flag("--dropout", c.dropout, "dropout in the inner U-Net blocks");
  app.add_option("--precision", precision, "fp32, tf32 or bf16")->check(CLI::IsMember(train::precision_names()))->capture_default_str();
  app.add_option("--device", c.device, "auto, cpu, cuda or cuda:N")->capture_default_str();
  app.add_option("--conv-backend", conv_backend, "own, cudnn or auto (CUDA only; default auto)")
      ->check(CLI::IsMember(train::conv_backend_names()))->envname("RG_CONV_BACKEND");
  app.add_option("--seed", c.seed, "random seed")->capture_default_str();
  app.add_option("--train-fraction", c.train_fraction,
                 "fraction of the real training slices used (a seeded subset, as train_seg's)")
      ->check(CLI::Range(0.0, 1.0))->capture_default_str();
  app.add_option("--train-seed", c.train_seed, "seed of the --train-fraction subset")->capture_default_str();
  app.add_flag("--resume", c.resume, "continue the run in --out/--name from its latest checkpoint");
  app.add_flag("!--no-augment", c.augment, "turn off the geometric augmentation");
  app.add_option("--workers", c.workers, "loader threads")->check(CLI::NonNegativeNumber)->capture_default_str();
  app.add_option("--log-every", c.log_every, "steps between logged training losses")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--max-train-batches", c.max_train_batches, "cap on batches per epoch (0 = all)")->check(CLI::NonNegativeNumber);
  app.add_option("--max-steps", c.max_steps, "stop after this many steps (saving a resumable checkpoint; 0 = no limit)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--sample-rows", c.sample_rows, "slices in each sample grid")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_flag("!--no-progress", c.progress, "no progress bar");
  CLI11_PARSE(app, argc, argv);

  try {
    c.lr_policy = train::parse_lr_policy(lr_policy);
    c.gan_mode = train::parse_gan_mode(gan_mode);
    c.norm = train::parse_norm(norm);
    c.precision = train::parse_precision(precision);
    if (!conv_backend.empty()) c.conv_backend = rg::parse_conv_backend(conv_backend, "--conv-backend");
    const bool gpu = rg::cuda_device_count() > 0 && c.device != "cpu";
    if (c.data.empty()) c.data = default_dataset(gpu);
    if (gpu) {
      std::cerr << "train_synth: GPU found: default configuration ngf 64, ndf 64, batch 8, "
                   "20 + 20 epochs\n";
      if (!*epochs) c.epochs = 20;
      if (!*epochs_decay) c.epochs_decay = 20;
    } else {
      // Sized like train_seg's CPU default: a few minutes on 2 cores at 128x128.
      std::cerr << "train_synth: no GPU: default CPU configuration (ngf 16, ndf 16, batch 8, "
                   "5 + 5 epochs); pass --ngf/--ndf/--batch-size/--epochs to change it\n";
      if (!*ngf) c.ngf = 16;
      if (!*ndf) c.ndf = 16;
      if (!*batch) c.batch_size = 8;
      if (!*epochs) c.epochs = 5;
      if (!*epochs_decay) c.epochs_decay = 5;
    }
    return rg::app::run_synth_training(c);
  } catch (const std::exception& e) {
    std::cerr << "train_synth: error: " << e.what() << "\n";
    return 1;
  }
}
