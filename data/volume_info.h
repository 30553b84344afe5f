// Human- and machine-readable summaries of a volume (for `prepare_data info`).
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "data/volume.h"

namespace rg::data {

struct VolumeStats {
  double min = 0, max = 0, mean = 0, stddev = 0;
  int64_t count = 0;      // finite voxels
  int64_t nonfinite = 0;  // NaN / inf voxels (excluded from the statistics)
};

VolumeStats volume_stats(const Volume& vol);

// Dimensions, spacing, source datatype, affine, orientation code (e.g. "RAS", "LPS") and
// intensity min/max/mean/std. `json` gives one JSON object (keys: source, dims, spacing,
// dtype, affine, orientation, min, max, mean, std, voxels, nonfinite) instead of text.
std::string describe_volume(const Volume& vol, bool json);

// A NIfTI file: the header's full shape first (a 4-D file holds dim[4] x ... volumes: fMRI,
// multi-echo, stacked contrasts; the JSON gains nifti_dims, volumes and volume), then volume
// `index` (0-based) described as describe_volume does. Throws naming the file for an index
// past the last volume.
std::string describe_nifti_file(const std::string& path, int64_t index, bool json);

// The three-letter orientation code of the affine's axes (the direction each voxel axis points
// to most, e.g. "RAS" for the identity, "LPS" for DICOM-ordered data).
std::string orientation_code(const std::array<std::array<double, 4>, 4>& affine);

}  // namespace rg::data
