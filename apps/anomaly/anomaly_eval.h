// Evaluation of anomaly maps against lesion masks (issue 16's metrics), the same for every
// method (f-AnoGAN, autoencoder, intensity threshold) and every dataset:
//
//   image level   AUROC of the slice scores, lesion slice vs normal slice;
//   pixel level   AUROC, AUPRC (average precision), best Dice over thresholds, and (on test) Dice
//                 at the threshold chosen on validation (the one with the best validation Dice),
//                 all over the pixels inside the organ mask only (train/ranking_metrics.h);
//   per lesion-size bucket  the same metrics ("_small" / "_large" suffixes) on the slices whose
//                 lesion is below / at least size_bucket_split_px = height / 10 pixels in
//                 diameter, together with all normal slices (so each bucket has negatives);
//                 a metric a bucket cannot define (no lesion in it) is null.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "apps/anomaly/anomaly_model.h"

namespace rg::app {

// Slices of a split with lesions (synthetic or the dataset's own), in memory. Arrays are H x W
// row-major per slice.
struct LesionSlices {
  int64_t count = 0, height = 0, width = 0;
  std::vector<float> images;    // [-1, 1], lesions inserted
  std::vector<uint8_t> organ;   // the file's mask: where pixel metrics are computed
  std::vector<uint8_t> lesion;  // 1 inside a lesion
  std::vector<uint8_t> has_lesion;  // per slice
  // Per slice (0 without lesion): the drawn diameter of a synthetic lesion, or the equivalent
  // diameter 2 * sqrt(area / pi) of a dataset lesion's cross-section, in pixels.
  std::vector<double> lesion_diameter_px;
};

// Sets has_lesion and lesion_diameter_px of every slice from its lesion pixels inside the organ
// (a lesion slice has at least one; diameter = 2 sqrt(area / pi)).
void set_lesion_sizes(LesionSlices& slices);

struct AnomalyEvaluation {
  nlohmann::json metrics;
  double score = 0;     // image AUROC (or, without lesion slices, minus the mean slice score)
  std::string summary;  // one line for the terminal
};

// The metrics above. `val_threshold` (test): also Dice at that pixel threshold.
AnomalyEvaluation evaluate_anomaly_maps(const LesionSlices& slices, const AnomalyMaps& maps,
                                        std::optional<double> val_threshold);
// The pixel threshold with the best Dice inside the organ (nullopt without lesion pixels).
std::optional<double> best_dice_threshold(const LesionSlices& slices, const AnomalyMaps& maps);

}  // namespace rg::app
