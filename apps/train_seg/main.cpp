// train_seg: adversarial segmentation (U-Net generator + PatchGAN discriminator) on a prepared
// HDF5 slices file. With no arguments it trains on the embedded default dataset (Colin27 skull
// stripping, or the lung phantom where Colin27 is not installed) with a configuration sized
// for the machine: unet_256 on a GPU, a smaller one on the CPU.
#include <CLI/CLI.hpp>
#include <iostream>

#include "apps/seg/seg_run.h"
#include "train/default_data.h"
#include "train/run_flags.h"
#include "train/settings.h"
#include "engine/device.h"
#include "engine/dist/communicator.h"
#include "engine/error.h"

namespace {

// The default dataset: Colin27 skull stripping when prepared, else the lung phantom. The CPU
// default trains on the 128x128 copies (a quarter of the work per slice).
std::string default_dataset(bool gpu) {
  const std::string suffix = gpu ? ".h5" : "_128.h5";
  return rg::train::find_default_dataset(
      "train_seg", {"colin27_skullstrip" + suffix, "lung_phantom" + suffix},
      "install mricron-data and run scripts/prepare_defaults.sh");
}

}  // namespace

int main(int argc, char** argv) {
  // Under mpirun: one rank per process, data-parallel (docs/scaling.md); otherwise world size 1.
  std::shared_ptr<rg::dist::Communicator> comm;
  try {
    comm = rg::dist::init_from_environment(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "train_seg: error: " << e.what() << "\n";
    return 1;
  }
  namespace train = rg::train;
  rg::app::SegRunConfig c;
  // Settings arrive as names and become types once, through train/settings.h and
  // train/gan_loss.h, which also list the values the flags accept.
  std::string lr_policy = "linear", gan_mode = "vanilla", norm = "batch", precision = "fp32";
  std::string select_by = "volume";
  std::string conv_backend;
  CLI::App app{"Adversarial segmentation training: U-Net generator + PatchGAN discriminator"};
  app.add_option("--data", c.data, "prepared HDF5 slices file (apps/prepare_data)");
  app.add_option("--name", c.name, "run name (folder under --out)")->capture_default_str();
  app.add_option("--out", c.out_dir, "output directory")->capture_default_str();
  auto* epochs = app.add_option("--epochs", c.epochs, "epochs at the initial learning rate")->check(CLI::NonNegativeNumber);
  auto* epochs_decay = app.add_option("--epochs-decay", c.epochs_decay, "epochs of learning-rate decay")->check(CLI::NonNegativeNumber);
  app.add_option("--lr-policy", lr_policy, "linear (pix2pix) or cosine")->check(CLI::IsMember(train::lr_policy_names()))->capture_default_str();
  auto* batch = app.add_option("--batch-size", c.batch_size, "batch size")->check(CLI::PositiveNumber);
  auto* lr = app.add_option("--lr", c.lr, "Adam learning rate (CPU default 0.001, GPU default 0.0002)")
                 ->check(CLI::PositiveNumber);
  app.add_option("--beta1", c.beta1, "Adam beta1")->check(CLI::Range(0.0, 0.999999))->capture_default_str();
  app.add_option("--r1-gamma", c.r1_gamma, "R1 penalty on real pairs (gamma; 0 = off), any GAN mode")
      ->check(CLI::NonNegativeNumber)->capture_default_str();
  app.add_option("--lambda", c.lambda_seg, "weight of BCE + soft Dice")->check(CLI::NonNegativeNumber)->capture_default_str();
  app.add_option("--gan-mode", gan_mode, "vanilla, lsgan, hinge, wgan-gp, or none (plain U-Net baseline)")
      ->check(CLI::IsMember(train::gan_mode_names()))->capture_default_str();
  app.add_option("--norm", norm, "batch, instance or none")->check(CLI::IsMember(train::norm_names()))->capture_default_str();
  auto* ngf = app.add_option("--ngf", c.ngf, "generator width")->check(CLI::PositiveNumber);
  auto* ndf = app.add_option("--ndf", c.ndf, "discriminator width")->check(CLI::PositiveNumber);
  app.add_option("--n-layers", c.n_layers, "PatchGAN layers")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--num-downs", c.num_downs, "U-Net depth (0: from the slice size, at most 8)")->check(CLI::NonNegativeNumber);
  app.add_flag("--dropout", c.dropout, "dropout in the inner U-Net blocks");
  auto* full_res_width = app.add_option("--full-res-width", c.full_res_width,
                                        "3x3 convolutions of this width at full resolution at both ends of the U-Net "
                                        "(0: pix2pix's U-Net, whose outermost layers are stride 2; CPU default 16, "
                                        "GPU default 0)")
                             ->check(CLI::NonNegativeNumber);
  app.add_option("--precision", precision, "fp32, tf32 or bf16")->check(CLI::IsMember(train::precision_names()))->capture_default_str();
  app.add_option("--device", c.device, "auto, cpu, cuda or cuda:N")->capture_default_str();
  app.add_option("--conv-backend", conv_backend, "own, cudnn or auto (CUDA only; default auto)")
      ->check(CLI::IsMember(train::conv_backend_names()))->envname("RG_CONV_BACKEND");
  app.add_option("--seed", c.seed, "random seed")->capture_default_str();
  app.add_option("--train-fraction", c.train_fraction,
                 "fraction of the real training slices used (a seeded subset; 0 only with --extra-train)")
      ->check(CLI::Range(0.0, 1.0))->capture_default_str();
  app.add_option("--train-seed", c.train_seed, "seed of the --train-fraction and --extra-fraction subsets")
      ->capture_default_str();
  app.add_option("--extra-train", c.extra_train,
                 "prepared HDF5 file whose train split is added to the training data (e.g. synthesize's output)");
  app.add_option("--extra-fraction", c.extra_fraction, "fraction of --extra-train's slices used")
      ->check(CLI::Range(0.0, 1.0))->capture_default_str();
  app.add_flag("--resume", c.resume, "continue the run in --out/--name from its latest checkpoint");
  app.add_flag("!--no-augment", c.augment, "turn off data augmentation");
  app.add_option("--elastic", c.elastic,
                 "probability of an elastic deformation in the augmentation (as synthesize deforms masks)")
      ->check(CLI::Range(0.0, 1.0))->capture_default_str();
  app.add_option("--image-channel", c.image_channels,
                 "another contrast of the same slices as an input channel: a prepared HDF5 file on --data's slice "
                 "grid (same volumes' grid, split, crop and size); repeat for more");
  app.add_option("--context-slices", c.context_slices,
                 "2.5-D input: the slice and K neighbouring slices on each side as 2K+1 channels (0 = 2-D)")
      ->check(CLI::Range(0, 8))->capture_default_str();
  app.add_flag("--test-time-flip", c.test_time_flip,
               "validation and test (and infer_seg with this checkpoint) predict each slice as the mean over it "
               "and its left-right mirror");
  app.add_option("--ema", c.ema_decay,
                 "evaluate and checkpoint for inference an exponential moving average of G's weights with this "
                 "decay (e.g. 0.99; 0 = G itself)")
      ->check(CLI::Range(0.0, 0.9999))->capture_default_str();
  app.add_option("--select-by", select_by,
                 "validation Dice that chooses the best checkpoint: per volume or per slice mean")
      ->check(CLI::IsMember(rg::app::select_by_names()))->capture_default_str();
  app.add_option("--workers", c.workers, "loader threads")->check(CLI::NonNegativeNumber)->capture_default_str();
  app.add_option("--log-every", c.log_every, "steps between logged training losses")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--max-train-batches", c.max_train_batches, "cap on batches per epoch (0 = all)")->check(CLI::NonNegativeNumber);
  rg::train::add_epoch_steps_flag(app, c);
  app.add_option("--max-steps", c.max_steps,
                 "stop after this many steps (saving a resumable checkpoint; 0 = no limit)")
      ->check(CLI::NonNegativeNumber);
  app.add_flag("!--no-progress", c.progress, "no progress bar");
  app.add_flag("--sync-bn,!--no-sync-bn", c.sync_bn,
               "under mpirun: batch-norm statistics over all ranks (default on; docs/scaling.md)");
  CLI11_PARSE(app, argc, argv);

  try {
    c.lr_policy = train::parse_lr_policy(lr_policy);
    c.gan_mode = train::parse_gan_mode(gan_mode);
    c.norm = train::parse_norm(norm);
    c.precision = train::parse_precision(precision);
    c.select_by = rg::app::parse_select_by(select_by);
    if (!conv_backend.empty()) c.conv_backend = rg::parse_conv_backend(conv_backend, "--conv-backend");
    // Size the default configuration for the machine; explicit flags always win.
    const bool gpu = rg::cuda_device_count() > 0 && c.device != "cpu";
    if (c.data.empty()) c.data = default_dataset(gpu);
    if (gpu) {
      if (!*epochs) c.epochs = 20;
      if (!*epochs_decay) c.epochs_decay = 20;
      if (!*batch) c.batch_size = 16;
      std::cerr << "train_seg: GPU found: configuration unet_256, ngf " << c.ngf << ", ndf " << c.ndf
                << ", batch " << c.batch_size << ", " << c.epochs << " + " << c.epochs_decay
                << " epochs (the GPU default is 64, 64, 16, 20 + 20)\n";
    } else {
      // Sized for 2 cores on the 128x128 slices (docs/results.md, "The CPU default since
      // session 15"): full-resolution ends and Adam 1e-3 scored 0.964 +- 0.010 test Dice per
      // volume on Colin27 over three seeds, against 0.916 +- 0.056 for pix2pix's U-Net at 2e-4.
      if (!*ngf) c.ngf = 32;
      if (!*ndf) c.ndf = 32;
      if (!*batch) c.batch_size = 8;
      if (!*epochs) c.epochs = 25;
      if (!*epochs_decay) c.epochs_decay = 25;
      if (!*full_res_width) c.full_res_width = 16;
      if (!*lr) c.lr = 1e-3;
      std::cerr << "train_seg: no GPU: CPU configuration ngf " << c.ngf << ", ndf " << c.ndf
                << ", batch " << c.batch_size << ", " << c.epochs << " + " << c.epochs_decay
                << " epochs, full-resolution width " << c.full_res_width << ", lr " << c.lr
                << " (the CPU default is 32, 32, 8, 25 + 25, 16, 0.001 on the 128x128 data; "
                   "--ngf/--ndf/--batch-size/--epochs/--epochs-decay/--full-res-width/--lr change it)\n";
    }
    if (comm->world_size() > 1 && comm->rank() == 0) {
      std::cerr << "train_seg: data-parallel over " << comm->world_size() << " ranks; --batch-size "
                << c.batch_size << " is the global batch (" << c.batch_size / comm->world_size()
                << " per rank)\n";
    }
    // A rank that fails stops the whole job with its message (MPI_Abort) instead of leaving
    // the other ranks waiting in a collective.
    return rg::dist::run_or_abort(*comm, 1, [&] { return rg::app::run_seg_training(c, *comm); });
  } catch (const std::exception& e) {
    std::cerr << "train_seg: error: " << e.what() << "\n";
    return 1;
  }
}
