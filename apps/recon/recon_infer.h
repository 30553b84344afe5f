// Volume reconstruction with a train_recon checkpoint (apps/infer_recon): a volume in (NIfTI,
// MetaImage, DICOM: anything data::read_volume reads), the reconstructed volume out as float32
// NIfTI on the input's grid (same dims and affine), in the input's units (HU for CT).
//
// Each axial slice (prepare_data's orientation, data/prepare.h orientation_of) is normalized
// as the training file was (CT: the checkpoint's [-1024, 3072] HU -> [-1, 1]; MRI: the input
// volume's own percentiles, the checkpoint's rule), padded with -1 to a multiple of
// 2^num_downs (U-Net body) or 4 (ResNet body, and at least 8), run through G at the volume's
// own pixel size (no resampling: the grid stays the input's; a pixel size far from the training
// file's is a domain shift the report states), cropped, mapped back and written into the voxels
// it came from.
//
// With --reference (same grid) the output and the input are measured against it with
// train_recon's metric settings inside --mask (or the body: reference > -500 HU for CT, above
// 5% of the normalized range for MRI). Every check (files, grids, checkpoint) happens before
// anything is written; outputs are written atomically.
#pragma once

#include <cmath>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

namespace rg::app {

struct ReconInferOptions {
  std::string checkpoint;  // run directory, checkpoints folder or <dir>/<tag>
  std::string input, output;
  std::string reference, mask;  // optional
  std::string report;           // optional JSON path (the report is printed in any case)
  std::string device = "auto";
  int64_t batch_size = 4;
};

struct ReconInferResult {
  nlohmann::json report;  // input, output, grid, checkpoint; metrics when a reference was given
  std::string summary;    // for the terminal
};

ReconInferResult run_recon_inference(const ReconInferOptions& options);

}  // namespace rg::app
