// train_translate: modality translation (MR -> CT on the lung phantom by default) with pix2pix
// (paired: U-Net G + PatchGAN on (source, target), L1 100; --gan-mode none = the supervised L1
// baseline) or CycleGAN (unpaired: two ResNet G, two PatchGAN D, cycle + identity losses, image
// pools, lsgan). With no --source/--target it trains on the embedded translation dataset
// (scripts/prepare_defaults.sh writes data/prepared/lung_translate_128_{mr,ct,tissue}.h5).
#include <CLI/CLI.hpp>
#include <filesystem>
#include <iostream>
#include <memory>

#include "apps/translate/translate_run.h"
#include "engine/device.h"
#include "engine/dist/communicator.h"
#include "engine/error.h"
#include "train/default_data.h"
#include "train/settings.h"

namespace fs = std::filesystem;

int main(int argc, char** argv) {
  // Under mpirun: one rank per process, data-parallel (docs/scaling.md); otherwise world size 1.
  std::shared_ptr<rg::dist::Communicator> comm;
  try {
    comm = rg::dist::init_from_environment(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "train_translate: error: " << e.what() << "\n";
    return 1;
  }
  namespace train = rg::train;
  using rg::app::TranslateModel;
  rg::app::TranslateRunConfig c;
  std::string model = "pix2pix", lr_policy = "linear", gan_mode, norm, generator;
  bool paired = false;
  CLI::App app{"Modality translation training: pix2pix (paired) or CycleGAN (unpaired)"};
  app.add_option("--model", model, "pix2pix or cyclegan")->check(CLI::IsMember({"pix2pix", "cyclegan"}))->capture_default_str();
  app.add_option("--source", c.source, "prepared HDF5 file of the source modality (e.g. <stem>_mr.h5)");
  app.add_option("--target", c.target, "prepared HDF5 file of the target modality, a CT file (e.g. <stem>_ct.h5)");
  app.add_option("--source-channel", c.source_channels,
                 "another source contrast on the same slice grid: a further input channel (repeatable)");
  app.add_option("--tissue", c.tissue, "prepared tissue-map file (<stem>_tissue.h5): per-tissue and lesion measures");
  app.add_option("--name", c.name, "run name (folder under --out)")->capture_default_str();
  app.add_option("--out", c.out_dir, "output directory")->capture_default_str();
  auto* epochs = app.add_option("--epochs", c.epochs, "epochs at the initial learning rate")->check(CLI::NonNegativeNumber);
  auto* epochs_decay = app.add_option("--epochs-decay", c.epochs_decay, "epochs of linear learning-rate decay")->check(CLI::NonNegativeNumber);
  app.add_option("--lr-policy", lr_policy, "linear (the reference's) or cosine")->check(CLI::IsMember(train::lr_policy_names()))->capture_default_str();
  auto* batch = app.add_option("--batch-size", c.batch_size, "batch size")->check(CLI::PositiveNumber);
  auto* lr = app.add_option("--lr", c.lr, "Adam learning rate (default: 2e-4; pix2pix on the CPU: 1e-3)")->check(CLI::PositiveNumber);
  app.add_option("--beta1", c.beta1, "Adam beta1")->check(CLI::Range(0.0, 0.999999))->capture_default_str();
  app.add_option("--generator", generator, "unet or resnet (default: unet for pix2pix, resnet for cyclegan)")
      ->check(CLI::IsMember({"unet", "resnet"}));
  auto* ngf = app.add_option("--ngf", c.ngf, "generator width")->check(CLI::PositiveNumber);
  auto* ndf = app.add_option("--ndf", c.ndf, "discriminator width")->check(CLI::PositiveNumber);
  auto* n_blocks = app.add_option("--n-blocks", c.n_blocks, "ResNet blocks (9 = resnet_9blocks)")->check(CLI::NonNegativeNumber);
  app.add_option("--n-layers", c.n_layers, "PatchGAN layers")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--num-downs", c.num_downs, "U-Net depth (0: from the slice size)")->check(CLI::NonNegativeNumber);
  auto* full_res = app.add_option("--full-res-width", c.full_res_width, "U-Net: 3x3 convolutions of this width at full resolution at both ends (0: pix2pix's U-Net, whose outermost layers are stride 2; default 0, pix2pix on the CPU: 16)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--norm", norm, "batch, instance or none (default: batch for pix2pix, instance for cyclegan)")
      ->check(CLI::IsMember(train::norm_names()));
  app.add_option("--gan-mode", gan_mode, "vanilla, lsgan, hinge, wgan-gp (pix2pix) or none (pix2pix: the L1 baseline); "
                 "default vanilla for pix2pix, lsgan for cyclegan")->check(CLI::IsMember(train::gan_mode_names()));
  app.add_option("--lambda", c.lambda_l1, "pix2pix: weight of the L1 term")->check(CLI::NonNegativeNumber)->capture_default_str();
  app.add_option("--lambda-cycle", c.lambda_cycle, "cyclegan: cycle weight (both directions)")->check(CLI::NonNegativeNumber)->capture_default_str();
  app.add_option("--lambda-identity", c.lambda_idt, "cyclegan: identity weight (relative to the cycle weight)")
      ->check(CLI::NonNegativeNumber)->capture_default_str();
  app.add_option("--pool-size", c.pool_size, "cyclegan: image pool size (0 = none)")->check(CLI::NonNegativeNumber)->capture_default_str();
  app.add_flag("--dropout", c.dropout, "dropout 0.5 in G (the reference's pix2pix default; off here by default)");
  app.add_flag("--paired", paired, "cyclegan: draw both domains from the same subjects (default: disjoint subjects)");
  app.add_option("--device", c.device, "auto, cpu, cuda or cuda:N")->capture_default_str();
  app.add_option("--seed", c.seed, "random seed")->capture_default_str();
  app.add_flag("--resume", c.resume, "continue the run in --out/--name from its latest checkpoint");
  app.add_option("--log-every", c.log_every, "steps between logged training losses")->check(CLI::PositiveNumber)->capture_default_str();
  auto* max_batches =
      app.add_option("--max-train-batches", c.max_train_batches, "cap on batches per epoch (0 = all)")->check(CLI::NonNegativeNumber);
  app.add_option("--max-steps", c.max_steps, "stop after this many steps (resumable; 0 = no limit)")->check(CLI::NonNegativeNumber);
  app.add_option("--sample-rows", c.sample_rows, "slices in each sample grid")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_flag("!--no-progress", c.progress, "no progress bar");
  CLI11_PARSE(app, argc, argv);

  try {
    c.model = rg::app::parse_translate_model(model);
    const bool cyclegan = c.model == TranslateModel::CycleGan;
    c.unpaired = !paired;
    c.lr_policy = train::parse_lr_policy(lr_policy);
    c.gan_mode = train::parse_gan_mode(gan_mode.empty() ? (cyclegan ? "lsgan" : "vanilla") : gan_mode);
    c.norm = train::parse_norm(norm.empty() ? (cyclegan ? "instance" : "batch") : norm);
    c.generator = generator.empty() ? (cyclegan ? "resnet" : "unet") : generator;
    if (c.source.empty() && c.target.empty()) {
      const fs::path dir = train::default_data_dir();
      const std::string stem = (dir / "lung_translate_128").string();
      c.source = stem + "_mr.h5";
      c.target = stem + "_ct.h5";
      if (c.tissue.empty() && fs::exists(stem + "_tissue.h5")) c.tissue = stem + "_tissue.h5";
      RG_CHECK(fs::exists(c.source) && fs::exists(c.target), "no default translation dataset in ", dir.string(),
               ": run scripts/prepare_defaults.sh (or prepare_data translation), or pass --source and --target");
      std::cerr << "train_translate: default dataset " << c.source << " -> " << c.target << "\n";
    }
    const bool gpu = rg::cuda_device_count() > 0 && c.device != "cpu";
    if (gpu) {
      if (!*epochs) c.epochs = cyclegan ? 20 : 20;
      if (!*epochs_decay) c.epochs_decay = 20;
      if (!*batch) c.batch_size = cyclegan ? 1 : 4;
    } else {
      // A few minutes on 2 cores at 128x128. pix2pix: the recipe of docs/results.md
      // (2026-12-07), which more than halves the test MAE of the reference's U-Net at lr 2e-4
      // at this size and budget.
      if (!cyclegan && c.generator == "unet") {
        if (!*full_res) c.full_res_width = 16;
        if (!*lr) c.lr = 1e-3;
      }
      if (!*ngf) c.ngf = 16;
      if (!*ndf) c.ndf = 16;
      if (!*n_blocks) c.n_blocks = 6;
      if (!*batch) c.batch_size = cyclegan ? 2 : 4;
      if (!*epochs) c.epochs = 3;
      if (!*epochs_decay) c.epochs_decay = 3;
      // Only when the flag is absent: an explicit 0 means every batch, as the help says.
      if (!*max_batches) c.max_train_batches = cyclegan ? 80 : 100;
      if (comm->rank() == 0) {
        std::cerr << "train_translate: no GPU: CPU configuration ngf " << c.ngf << ", ndf " << c.ndf;
        if (c.generator == "resnet") std::cerr << ", " << c.n_blocks << " ResNet blocks";
        if (c.generator == "unet") std::cerr << ", U-Net full-res width " << c.full_res_width;
        std::cerr << ", lr " << c.lr << ", batch " << c.batch_size << ", " << c.epochs << " + " << c.epochs_decay
                  << " epochs of "
                  << (c.max_train_batches > 0 ? "at most " + std::to_string(c.max_train_batches) : std::string("all"))
                  << " batches (the CPU default: ngf/ndf 16, "
                  << (cyclegan ? "6 blocks, lr 2e-4, batch 2, 3 + 3 epochs of at most 80 batches"
                               : "full-res width 16, lr 1e-3, batch 4, 3 + 3 epochs of at most 100 batches")
                  << "; flags change it)\n";
      }
    }
    c.data = c.target;
    if (comm->world_size() > 1 && comm->rank() == 0) {
      std::cerr << "train_translate: data-parallel over " << comm->world_size() << " ranks; --batch-size "
                << c.batch_size << " is the global batch (" << c.batch_size / comm->world_size()
                << " per rank)\n";
    }
    // A rank that fails stops the whole job with its message (MPI_Abort) instead of leaving
    // the other ranks waiting in a collective.
    return rg::dist::run_or_abort(*comm, 1, [&] { return rg::app::run_translate_training(c, *comm); });
  } catch (const std::exception& e) {
    std::cerr << "train_translate: error: " << e.what() << "\n";
    return 1;
  }
}
