// Synthetic lesions for evaluating unsupervised anomaly detection (issue 16's data): blobs
// inserted into a volume inside an organ mask, written with a lesion mask on the same grid.
//
// Each lesion is a 3-D blob of diameter `min_diameter_mm` .. `max_diameter_mm` (in mm, so
// anisotropic voxels are handled), with a smooth irregular border (the radius varies with
// direction by a few low-frequency waves, amplitude `irregularity` of the radius) and an
// intensity drawn from the organ's own intensity distribution (between the `low_percentile`
// and `high_percentile` of the voxels inside the mask): a lesion is no brighter or darker than
// normal tissue overall, so a plain intensity threshold cannot find it. Its intensity replaces
// the tissue's with a soft edge (the blend falls from 1 inside to 0 over `edge_mm`). Centres
// lie inside the mask, and lesion voxels outside the mask are cut away.
#pragma once

#include <cstdint>
#include <vector>

#include "data/volume.h"

namespace rg::data {

struct LesionOptions {
  int count = 3;                 // lesions per volume
  double min_diameter_mm = 3.0;
  double max_diameter_mm = 20.0;
  double irregularity = 0.25;    // relative radius modulation (0 = spheres)
  double low_percentile = 30.0;  // lesion intensity range within the organ's distribution
  double high_percentile = 70.0;
  double edge_mm = 1.0;          // width of the soft blend at the border
  uint64_t seed = 0;
};

struct LesionResult {
  Volume mask;  // 1 inside a lesion (blend >= 0.5), 0 elsewhere; the image's grid
  std::vector<double> diameters_mm;  // per lesion, as drawn
};

// Inserts lesions into `image` (changed in place) inside `organ` (> 0.5 = inside; same grid).
// Throws rg::Error naming the volumes' sources when the grids differ, the mask is empty, or an
// option is out of range.
LesionResult insert_lesions(Volume& image, const Volume& organ, const LesionOptions& options);

}  // namespace rg::data
