// Anomaly detection on a whole volume with a trained detector (apps/detect_anomaly is a flag
// parser over run_detect_anomaly): the volume is sliced exactly as the detector's training file
// was prepared (apps/seg/volume_inference.h: reorient, normalize, crop, resize), every slice is
// scored by the detector (apps/anomaly/anomaly_model.h: f-AnoGAN stage 2, the autoencoder or the
// intensity threshold), and the pixel maps are mapped back onto the input's voxel grid.
//
// Outputs, all in one directory written atomically (a temporary sibling renamed at the end; on
// any error nothing is left):
//   anomaly_map.nii.gz  float32 anomaly map on the input's grid (same dims and affine); 0 outside
//                       the organ region and outside the sliced range
//   scores.csv          per slice: oriented slice, source slice, score, organ and lesion pixels
//   report.json         model, method, input, preprocessing, geometry, per-slice scores, the
//                       threshold used for the overlays, and metrics when a lesion mask is given
//   overlays.png        the highest-scoring slices: image | lesion mask | map above the threshold
// The organ region (where maps and metrics count) is --organ-mask (brain/lungs, on the input's
// grid) resampled like the image, else the body: normalized intensity above the body level of
// data/prepare (CT -500 HU; MRI 5% of the range above its low end). Metrics against --lesions
// are computed on the model's slice grid with apps/anomaly/anomaly_eval.h, the pixel threshold
// being the run's validation threshold (summary.json) when it has one.
//
// A prepared slices file (apps/prepare_data) as --input: the slices of --split as they are (their
// size must be the detector's), the file's masks as the organ region, its /<split>/lesions (if
// any) as the ground truth; the same outputs but the map NIfTI (slices have no voxel grid), and
// scores.csv names each slice by index, subject and slice.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

namespace rg::app {

struct DetectOptions {
  std::string model;       // run directory of train_anomaly: --method fanogan --stage 2, ae or threshold
  std::string input;       // volume: NIfTI, MetaImage or DICOM directory; or a prepared .h5
  std::string split = "test";  // prepared .h5 input: which split
  std::string out;         // output directory (must not exist unless overwrite)
  std::string organ_mask;  // optional organ mask on the input's grid (> 0.5 inside)
  std::string lesions;     // optional lesion mask on the input's grid (> 0.5 inside): evaluation
  std::string prepared;    // the training file, when it moved (default: the run's --data)
  bool overwrite = false;
  int64_t batch_size = 8;
  int64_t overlays = 8;    // slices in overlays.png
  std::string device = "auto";
};

// Validates everything (model, volumes and their grids, modality, output) before computing,
// then writes the outputs; returns the report. Throws rg::Error naming the file or flag.
nlohmann::json run_detect_anomaly(const DetectOptions& options);

}  // namespace rg::app
