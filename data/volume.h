// A 3-D image volume in memory, whatever format it came from. Voxel values are stored as
// float after the format's scaling (NIfTI scl_slope/scl_inter, DICOM rescale to HU), so CT is
// in Hounsfield units and label maps hold their integer labels exactly.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace rg::data {

struct Volume {
  // Size along i (fastest in memory), j, k. A 2-D image has dims[2] == 1.
  std::array<int64_t, 3> dims{0, 0, 0};
  // Voxel size in mm along i, j, k.
  std::array<double, 3> spacing{1.0, 1.0, 1.0};
  // Voxel index (i, j, k, 1) -> world position in mm, RAS+ (the NIfTI convention). Readers of
  // LPS formats (MetaImage, DICOM) convert, so every volume speaks one convention.
  std::array<std::array<double, 4>, 4> affine{{{1, 0, 0, 0}, {0, 1, 0, 0}, {0, 0, 1, 0}, {0, 0, 0, 1}}};
  // index = i + dims[0] * (j + dims[1] * k)
  std::vector<float> voxels;
  // Datatype as stored on disk ("int16", "uint8", "float32", ...), for reporting.
  std::string source_dtype;
  // The file (or DICOM directory) it was read from.
  std::string source;

  int64_t voxel_count() const { return dims[0] * dims[1] * dims[2]; }
  float& at(int64_t i, int64_t j, int64_t k) { return voxels[i + dims[0] * (j + dims[1] * k)]; }
  float at(int64_t i, int64_t j, int64_t k) const { return voxels[i + dims[0] * (j + dims[1] * k)]; }
};

}  // namespace rg::data
