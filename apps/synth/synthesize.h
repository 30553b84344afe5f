// Synthesizing new (mask, image) training pairs with a trained synth checkpoint (apps/synth):
// source masks, each deformed by a seeded random elastic + affine transform (data/transforms.h)
// unless deformation is off, go through G; the pairs are written as a prepared slices file in
// prepare_data's layout (data/slice_writer.h: all of them in the train split, val and test
// empty), so train_seg --extra-train and any SliceDataset / Loader read it, plus a PNG montage
// (mask | synthetic).
//
// The same checkpoint, masks and seed give the same file contents. Everything is checked
// (checkpoint, mask source, sizes, output paths) before anything is written; on an error
// nothing is left at the output paths.
#pragma once

#include <cstdint>
#include <string>

namespace rg::app {

struct SynthesizeConfig {
  // A synth checkpoint: RUN/checkpoints/best.safetensors (or .json, or the tag path without
  // extension), or a run directory (its checkpoints/best).
  std::string checkpoint;
  std::string out;      // the output HDF5 file
  std::string montage;  // the PNG montage; empty: the output path with .png for .h5
  // Where the masks come from: empty = the training split of the file the checkpoint was
  // trained on (the same --train-fraction subset, so no held-out mask is used); a prepared
  // .h5 file (its train split); or a PNG mask (nonzero = foreground).
  std::string masks;
  int64_t count = 0;    // pairs to write; 0 = one per source mask
  uint64_t seed = 0;    // the deformations and the order in which source masks are used
  bool deform = true;   // random elastic + affine deformation of each source mask
  std::string device = "auto";
  int64_t batch_size = 8;
  int64_t montage_rows = 8;
  bool progress = true;
};

struct SynthesizeSummary {
  std::string out, montage;
  int64_t pairs = 0, source_masks = 0;
  int64_t height = 0, width = 0;
};

// Throws rg::Error naming the file or flag for a missing or foreign checkpoint, an unreadable
// mask source, masks of another size than G was trained on, or bad settings.
SynthesizeSummary synthesize(const SynthesizeConfig& config);

}  // namespace rg::app
