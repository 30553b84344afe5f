// Paired data for reconstruction (issue 17), as prepare_slices' pair makers and subject
// sources (data/prepare.h "Pairs"; layout in docs/data_hdf5.md):
//   low-dose CT: the slice in HU -> data/ct_sim.h's full-dose and reduced-dose scans; the
//     full-dose FBP becomes the reference, the reduced-dose one the input;
//   MRI super-resolution: the slice -> data/mri_sim.h's k-space truncation or blur +
//     downsampling by a factor, upsampled back bicubically: the input (and the baseline);
//   the user's own pairs: a degraded volume and its reference on the same grid.
// Pair files keep the body (or brain) mask in /masks: the region every recon metric uses.
#pragma once

#include <string>
#include <vector>

#include "data/ct_sim.h"
#include "data/mri_sim.h"
#include "data/prepare.h"

namespace rg::data {

// The CT value range of reconstruction files: [-1024, 3072] HU -> [-1, 1] (linear; the full
// range the metrics state, so no tissue is clamped).
inline constexpr double kReconHuLow = -1024.0, kReconHuHigh = 3072.0;

PairMaker low_dose_ct_pairs(const LowDoseOptions& options);
PairMaker superres_pairs(SrDegradation degradation, int factor, double sigma = 0);
// The root attributes describing each simulation (for PrepareOptions::pair_attributes).
std::vector<std::pair<std::string, std::string>> low_dose_ct_attributes(const LowDoseOptions& options);
std::vector<std::pair<std::string, std::string>> superres_attributes(SrDegradation degradation, int factor,
                                                                     double sigma);

// The same subjects with the mask replaced by the body: image > threshold.
std::vector<SubjectSource> with_body_masks(std::vector<SubjectSource> subjects, double threshold);
// The user's own pairs: inputs[i] degraded, references[i] its reference on the same grid (checked
// when prepared), masks[i] the metrics' region (empty list: the body, reference > threshold).
std::vector<SubjectSource> paired_volume_subjects(const std::vector<std::string>& inputs,
                                                  const std::vector<std::string>& references,
                                                  const std::vector<std::string>& masks, double body_threshold);

}  // namespace rg::data
