// The tiny prepared file the app tests train on: 4 lung-phantom subjects (seed 7) on a coarse
// 48x48x12 grid that keeps the default field of view (so the slices show lung), prepared at
// 32x32 with the lung labels as the mask and split 2/1/1 by subject.
#pragma once

#include <array>
#include <string>

#include "data/phantom.h"
#include "data/prepare.h"

namespace rg::app::test_data {

inline constexpr uint64_t kTinyPhantomSeed = 7;

inline data::PhantomOptions tiny_phantom_options() { return data::phantom_options_for_grid({48, 48, 12}); }

// Writes the file at `out` and returns `out`. Another `window` gives another contrast of the
// same slices (the crop follows the body, found in HU, so it stays the same).
inline std::string write_tiny_phantom(const std::string& out, std::array<double, 2> window = {-1000.0, 400.0}) {
  data::PrepareOptions opts;
  opts.window = window;
  opts.size = 32;
  opts.labels = {3, 4};
  opts.fractions = {0.5, 0.25, 0.25};
  opts.progress = false;
  data::prepare_slices(data::phantom_subjects(4, kTinyPhantomSeed, tiny_phantom_options()), opts, out);
  return out;
}

// The networks and run settings every tiny app test trains with (a 4-wide U-Net of depth 5 for
// the 32x32 slices, a 2-layer PatchGAN, batch 4, one loader thread, every step logged, no
// progress bar) on any run configuration that has these fields (SegRunConfig, SynthRunConfig).
template <class RunConfig>
void set_tiny_networks(RunConfig& c) {
  c.batch_size = 4;
  c.ngf = 4;
  c.ndf = 4;
  c.n_layers = 2;
  c.num_downs = 5;
  c.workers = 1;
  c.log_every = 1;
  c.progress = false;
}

}  // namespace rg::app::test_data
