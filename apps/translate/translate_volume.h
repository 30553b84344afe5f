// Translating a whole volume with a train_translate checkpoint (apps/translate is the flag parser):
// read the source volume (NIfTI, MetaImage, DICOM), slice it as the source training file was
// sliced (data/slice_geometry.h), run the generator (G, or CycleGAN's G_A) on batches of slices,
// map every translated slice back onto the input's voxel grid, convert to HU with the target
// file's window, and write a float32 NIfTI with the input's affine. Float end to end: no 8- or
// 16-bit image step anywhere. Everything is checked before anything is written; the NIfTI is
// written atomically.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/device.h"

namespace rg::nn {
class Module;
}

namespace rg::app {

struct TranslateVolumeOptions {
  std::string checkpoint;  // a train_translate checkpoint (.safetensors), e.g. runs/x/checkpoints/best.safetensors
  std::string input;       // the source volume; a 4-D NIfTI gives one channel per volume
  std::vector<std::string> input_channels;  // more source channels, one volume each, same grid
  std::string output;      // .nii or .nii.gz
  std::string prepared;    // the first source channel's training file (default: the checkpoint's)
  // Optional: the real target volume on the same grid; the report then holds the MAE in HU over
  // its body (voxels above -500 HU) and over all voxels.
  std::string reference;
  int64_t batch_size = 8;
  std::string device = "auto";
};

// The generator a translate checkpoint holds (source -> target), in eval mode, with the JSON of
// the checkpoint (its "run", "model", "generator", "hu_window", ...). Throws naming the file.
struct LoadedTranslator {
  std::unique_ptr<nn::Module> generator;
  nlohmann::json meta;
};
LoadedTranslator load_translator(const std::string& checkpoint);

// Runs the translation; returns a report (input, output, grid, slices, HU range, seconds).
nlohmann::json run_translate_volume(const TranslateVolumeOptions& options);

}  // namespace rg::app
