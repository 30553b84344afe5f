#include "data/volume_info.h"

#include "data/nifti.h"
#include "engine/error.h"

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <nlohmann/json.hpp>
#include <sstream>

namespace rg::data {

VolumeStats volume_stats(const Volume& vol) {
  VolumeStats s;
  double sum = 0, sum2 = 0;
  bool first = true;
  for (float f : vol.voxels) {
    if (!std::isfinite(f)) {
      ++s.nonfinite;
      continue;
    }
    const double x = f;
    if (first) {
      s.min = s.max = x;
      first = false;
    }
    s.min = std::min(s.min, x);
    s.max = std::max(s.max, x);
    sum += x;
    sum2 += x * x;
    ++s.count;
  }
  if (s.count > 0) {
    s.mean = sum / static_cast<double>(s.count);
    const double var = sum2 / static_cast<double>(s.count) - s.mean * s.mean;
    s.stddev = var > 0 ? std::sqrt(var) : 0.0;
  }
  return s;
}

std::string orientation_code(const std::array<std::array<double, 4>, 4>& A) {
  std::string code;
  for (int c = 0; c < 3; ++c) {
    int best = 0;
    for (int r = 1; r < 3; ++r)
      if (std::fabs(A[r][c]) > std::fabs(A[best][c])) best = r;
    if (A[best][c] == 0) {
      code += '?';
      continue;
    }
    static const char pos[] = "RAS", neg[] = "LPI";
    code += A[best][c] > 0 ? pos[best] : neg[best];
  }
  return code;
}

std::string describe_volume(const Volume& vol, bool json) {
  const VolumeStats s = volume_stats(vol);
  const std::string orient = orientation_code(vol.affine);
  if (json) {
    nlohmann::ordered_json j;
    j["source"] = vol.source;
    j["dims"] = {vol.dims[0], vol.dims[1], vol.dims[2]};
    j["spacing"] = {vol.spacing[0], vol.spacing[1], vol.spacing[2]};
    j["dtype"] = vol.source_dtype;
    nlohmann::json aff = nlohmann::json::array();
    for (const auto& row : vol.affine) aff.push_back({row[0], row[1], row[2], row[3]});
    j["affine"] = aff;
    j["orientation"] = orient;
    j["voxels"] = vol.voxel_count();
    j["min"] = s.min;
    j["max"] = s.max;
    j["mean"] = s.mean;
    j["std"] = s.stddev;
    j["nonfinite"] = s.nonfinite;
    return j.dump(2);
  }
  std::ostringstream os;
  os << std::setprecision(6);
  os << "source:      " << (vol.source.empty() ? "(memory)" : vol.source) << "\n"
     << "dims:        " << vol.dims[0] << " x " << vol.dims[1] << " x " << vol.dims[2] << " ("
     << vol.voxel_count() << " voxels)\n"
     << "spacing:     " << vol.spacing[0] << " x " << vol.spacing[1] << " x " << vol.spacing[2]
     << " mm\n"
     << "dtype:       " << (vol.source_dtype.empty() ? "?" : vol.source_dtype) << " (on disk), float32 in memory\n"
     << "orientation: " << orient << " (voxel axes i, j, k point towards)\n"
     << "affine (voxel -> RAS mm):\n";
  for (const auto& row : vol.affine) {
    os << "  [";
    for (int c = 0; c < 4; ++c) os << ' ' << std::setw(11) << row[c];
    os << " ]\n";
  }
  os << "intensity:   min " << s.min << ", max " << s.max << ", mean " << s.mean << ", std "
     << s.stddev << "\n";
  if (s.nonfinite > 0) os << "non-finite:  " << s.nonfinite << " voxels (NaN/inf, excluded above)\n";
  return os.str();
}

// info on a NIfTI file: the header's full shape (a 4-D file holds dim[4] x ... volumes: fMRI,
// multi-echo, stacked contrasts), then volume `index` described like any other volume.
std::string describe_nifti_file(const std::string& path, int64_t index, bool json) {
  const NiftiHeader h = read_nifti_header(path);
  std::vector<int64_t> dims;
  int64_t volumes = 1;
  for (int64_t d = 1; d <= h.dim[0] && d <= 7; ++d) {
    dims.push_back(h.dim[static_cast<size_t>(d)]);
    if (d >= 4) volumes *= std::max<int64_t>(1, h.dim[static_cast<size_t>(d)]);
  }
  RG_CHECK(index < volumes, "--volume ", index, ": ", path, " holds ", volumes,
           " volume(s) (0 .. ", volumes - 1, ")");
  const std::string one = describe_volume(read_nifti(path, index), json);
  if (json) {
    nlohmann::ordered_json j = nlohmann::ordered_json::parse(one);
    j["nifti_dims"] = dims;
    j["volumes"] = volumes;
    j["volume"] = index;
    return j.dump();
  }
  if (volumes == 1) return one;
  std::string shape;
  for (size_t i = 0; i < dims.size(); ++i) shape += (i ? " x " : "") + std::to_string(dims[i]);
  return "NIfTI dims " + shape + ": " + std::to_string(volumes) + " volumes; volume " +
         std::to_string(index) + " (choose with --volume N):\n" + one;
}


}  // namespace rg::data
