// The tiny translation dataset and runs the translation tests train on (tests/translate,
// tests/dist/mpi_translate_run.cpp): 4 lung-phantom subjects (seed 3) on a 48x48x6 grid of
// 6 x 6 x 10 mm voxels, prepared at 32x32 (CT, T1 and T2 MR, tissue map), and pix2pix or
// CycleGAN with 4-wide networks.
#pragma once

#include <string>

#include "apps/translate/translate_run.h"
#include "data/phantom.h"
#include "data/prepare.h"

namespace rg::app::test_data {

// Writes the files into `dir` (stem "tiny") and returns their names.
inline data::TranslationFiles write_tiny_translation(const std::string& dir) {
  data::PhantomOptions o;
  o.dims = {48, 48, 6};
  o.spacing = {6.0, 6.0, 10.0};
  return data::prepare_phantom_translation(dir, "tiny", 4, 3, 32, 0, o, {}, false);
}

// 2 + 1 epochs of every batch, batch 2, lr 1e-3, every step logged, no progress bar; CycleGAN
// with ResNet generators (one block), instance norm and lsgan as its defaults say.
inline TranslateRunConfig tiny_translate_run(TranslateModel model, const data::TranslationFiles& files,
                                             const std::string& out_dir, const std::string& name) {
  TranslateRunConfig c;
  c.model = model;
  c.source = files.mr;
  c.target = files.ct;
  c.tissue = files.tissue;
  c.data = c.target;
  c.name = name;
  c.out_dir = out_dir;
  c.epochs = 2;
  c.epochs_decay = 1;
  c.batch_size = 2;
  c.ngf = 4;
  c.ndf = 4;
  c.n_layers = 2;
  c.n_blocks = 1;
  c.num_downs = 5;
  c.log_every = 1;
  c.progress = false;
  c.device = "cpu";
  c.sample_rows = 2;
  c.lr = 1e-3;
  if (model == TranslateModel::CycleGan) {
    c.generator = "resnet";
    c.norm = models::NormKind::Instance;
    c.gan_mode = train::GanMode::LSGAN;
  }
  return c;
}

}  // namespace rg::app::test_data
