// The command-line flags of train::RunOptions (data, run directory, schedule, batch, device,
// seed, resume, loader, logging and stop controls) and of the typed settings every training
// application parses (GAN mode, norm, precision, conv backend), added to an application's
// CLI11 parser in one place so that the apps' flags, help texts and checks never disagree.
// An application adds its own flags next to them and calls apply() after parsing.
#pragma once

#include <CLI/CLI.hpp>

#include <string>

#include "train/gan_loss.h"
#include "train/run_options.h"
#include "train/settings.h"

namespace rg::train {

struct RunFlags {
  // Options the caller may ask about after parsing (e.g. "was --epochs given?").
  CLI::Option* epochs = nullptr;
  CLI::Option* epochs_decay = nullptr;
  CLI::Option* batch = nullptr;
  CLI::Option* ngf = nullptr;
  CLI::Option* ndf = nullptr;
  std::string lr_policy = "linear", gan_mode = "vanilla", norm = "batch", precision = "fp32", conv_backend;
};

// --epoch-steps, for the applications that declare their other run flags themselves.
inline void add_epoch_steps_flag(CLI::App& app, RunOptions& c) {
  app.add_option("--epoch-steps", c.epoch_steps,
                 "steps per epoch whatever the training set's size (0 = one pass over it)")
      ->check(CLI::NonNegativeNumber);
}

// --data --name --out --epochs --epochs-decay --lr-policy --batch-size --lr --device --seed
// --resume --workers --log-every --max-train-batches --epoch-steps --max-steps --sample-rows --no-progress.
inline void add_run_flags(CLI::App& app, RunOptions& c, RunFlags& f, const std::string& data_help) {
  app.add_option("--data", c.data, data_help);
  app.add_option("--name", c.name, "run name (folder under --out)")->capture_default_str();
  app.add_option("--out", c.out_dir, "output directory")->capture_default_str();
  f.epochs = app.add_option("--epochs", c.epochs, "epochs at the initial learning rate")->check(CLI::NonNegativeNumber);
  f.epochs_decay = app.add_option("--epochs-decay", c.epochs_decay, "epochs of learning-rate decay")->check(CLI::NonNegativeNumber);
  app.add_option("--lr-policy", f.lr_policy, "linear (pix2pix) or cosine")->check(CLI::IsMember(lr_policy_names()))->capture_default_str();
  f.batch = app.add_option("--batch-size", c.batch_size, "batch size")->check(CLI::PositiveNumber);
  app.add_option("--lr", c.lr, "Adam learning rate")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--device", c.device, "auto, cpu, cuda or cuda:N")->capture_default_str();
  app.add_option("--seed", c.seed, "random seed")->capture_default_str();
  app.add_flag("--resume", c.resume, "continue the run in --out/--name from its latest checkpoint");
  app.add_option("--workers", c.workers, "loader threads")->check(CLI::NonNegativeNumber)->capture_default_str();
  app.add_option("--log-every", c.log_every, "steps between logged training losses")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--max-train-batches", c.max_train_batches, "cap on batches per epoch (0 = all)")->check(CLI::NonNegativeNumber);
  add_epoch_steps_flag(app, c);
  app.add_option("--max-steps", c.max_steps, "stop after this many steps (saving a resumable checkpoint; 0 = no limit)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--sample-rows", c.sample_rows, "slices in each sample grid")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_flag("!--no-progress", c.progress, "no progress bar");
}

// --gan-mode --norm --ngf --ndf --n-layers --num-downs --precision --conv-backend, for the
// U-Net + PatchGAN applications.
template <class Config>
void add_pix2pix_flags(CLI::App& app, Config& c, RunFlags& f, const std::string& gan_mode_help) {
  app.add_option("--gan-mode", f.gan_mode, gan_mode_help)->check(CLI::IsMember(gan_mode_names()))->capture_default_str();
  app.add_option("--norm", f.norm, "batch, instance or none")->check(CLI::IsMember(norm_names()))->capture_default_str();
  f.ngf = app.add_option("--ngf", c.ngf, "generator width")->check(CLI::PositiveNumber);
  f.ndf = app.add_option("--ndf", c.ndf, "discriminator width")->check(CLI::PositiveNumber);
  app.add_option("--n-layers", c.n_layers, "PatchGAN layers")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--num-downs", c.num_downs, "U-Net depth (0: from the slice size, at most 8)")->check(CLI::NonNegativeNumber);
  app.add_option("--precision", f.precision, "fp32, tf32 or bf16")->check(CLI::IsMember(precision_names()))->capture_default_str();
  app.add_option("--conv-backend", f.conv_backend, "own, cudnn or auto (CUDA only; default auto)")
      ->check(CLI::IsMember(conv_backend_names()))->envname("RG_CONV_BACKEND");
}

// After parsing: the typed settings from their text.
template <class Config>
void apply_pix2pix_flags(Config& c, const RunFlags& f) {
  c.lr_policy = parse_lr_policy(f.lr_policy);
  c.gan_mode = parse_gan_mode(f.gan_mode);
  c.norm = parse_norm(f.norm);
  c.precision = parse_precision(f.precision);
  if (!f.conv_backend.empty()) c.conv_backend = parse_conv_backend(f.conv_backend, "--conv-backend");
}

}  // namespace rg::train
