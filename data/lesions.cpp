#include "data/lesions.h"

#include <algorithm>
#include <array>
#include <cmath>

#include "data/rng.h"
#include "engine/error.h"

namespace rg::data {

namespace {

constexpr double kPi = 3.141592653589793;

double percentile_of(std::vector<float> v, double p) {
  const double pos = std::clamp(p, 0.0, 100.0) / 100.0 * static_cast<double>(v.size() - 1);
  const size_t lo = static_cast<size_t>(pos);
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(lo), v.end());
  return v[lo];
}

// A blob's radius as a function of direction: r0 * (1 + a * sum of three random waves in the
// direction's angles), smooth because the waves have low frequency.
struct Blob {
  std::array<double, 3> centre_mm{};
  double radius_mm = 0;
  double amplitude = 0;
  std::array<double, 3> freq_az{}, freq_el{}, phase{};

  double radius_towards(double dx, double dy, double dz) const {
    const double az = std::atan2(dy, dx);
    const double el = std::atan2(dz, std::hypot(dx, dy));
    double w = 0;
    for (int k = 0; k < 3; ++k) w += std::sin(freq_az[k] * az + freq_el[k] * el + phase[k]);
    return radius_mm * (1.0 + amplitude * w / 3.0);
  }
};

}  // namespace

LesionResult insert_lesions(Volume& image, const Volume& organ, const LesionOptions& o) {
  RG_CHECK(image.dims == organ.dims, "lesions: image ", image.source, " and organ mask ",
           organ.source, " are on different grids (", image.dims[0], "x", image.dims[1], "x",
           image.dims[2], " vs ", organ.dims[0], "x", organ.dims[1], "x", organ.dims[2], ")");
  RG_CHECK(o.count >= 0, "lesions: count must be >= 0, got ", o.count);
  RG_CHECK(o.min_diameter_mm > 0 && o.max_diameter_mm >= o.min_diameter_mm,
           "lesions: diameters must satisfy 0 < min <= max, got ", o.min_diameter_mm, " .. ",
           o.max_diameter_mm);
  RG_CHECK(o.irregularity >= 0 && o.irregularity < 1, "lesions: irregularity must be in [0, 1), got ",
           o.irregularity);
  RG_CHECK(o.low_percentile >= 0 && o.high_percentile <= 100 && o.low_percentile <= o.high_percentile,
           "lesions: percentiles must satisfy 0 <= low <= high <= 100");
  RG_CHECK(o.edge_mm >= 0, "lesions: edge width must be >= 0, got ", o.edge_mm);

  std::vector<int64_t> inside;
  std::vector<float> tissue;
  for (int64_t i = 0; i < organ.voxel_count(); ++i) {
    if (organ.voxels[static_cast<size_t>(i)] > 0.5f) {
      inside.push_back(i);
      tissue.push_back(image.voxels[static_cast<size_t>(i)]);
    }
  }
  RG_CHECK(!inside.empty(), "lesions: organ mask ", organ.source, " is empty");
  const double lo = percentile_of(tissue, o.low_percentile);
  const double hi = percentile_of(tissue, o.high_percentile);

  LesionResult out;
  out.mask = image;
  std::fill(out.mask.voxels.begin(), out.mask.voxels.end(), 0.0f);
  out.mask.source_dtype = "uint8";
  const auto& sp = image.spacing;
  const int64_t nx = image.dims[0], ny = image.dims[1], nz = image.dims[2];
  Rng rng(derive_seed(o.seed, {0x6c6573696f6eULL}));
  for (int l = 0; l < o.count; ++l) {
    Blob b;
    const int64_t c = inside[static_cast<size_t>(rng.below(inside.size()))];
    const int64_t ci = c % nx, cj = (c / nx) % ny, ck = c / (nx * ny);
    b.centre_mm = {ci * sp[0], cj * sp[1], ck * sp[2]};
    const double diameter = rng.uniform(o.min_diameter_mm, o.max_diameter_mm);
    out.diameters_mm.push_back(diameter);
    b.radius_mm = diameter / 2;
    b.amplitude = o.irregularity;
    for (int k = 0; k < 3; ++k) {
      b.freq_az[k] = static_cast<double>(1 + rng.below(3));
      b.freq_el[k] = static_cast<double>(rng.below(3));
      b.phase[k] = rng.uniform(0.0, 2 * kPi);
    }
    const double value = rng.uniform(lo, hi);
    const double reach = b.radius_mm * (1 + o.irregularity) + o.edge_mm;
    const int64_t ri = static_cast<int64_t>(std::ceil(reach / sp[0]));
    const int64_t rj = static_cast<int64_t>(std::ceil(reach / sp[1]));
    const int64_t rk = static_cast<int64_t>(std::ceil(reach / sp[2]));
    for (int64_t k = std::max<int64_t>(0, ck - rk); k <= std::min(nz - 1, ck + rk); ++k) {
      for (int64_t j = std::max<int64_t>(0, cj - rj); j <= std::min(ny - 1, cj + rj); ++j) {
        for (int64_t i = std::max<int64_t>(0, ci - ri); i <= std::min(nx - 1, ci + ri); ++i) {
          const size_t idx = static_cast<size_t>(i + nx * (j + ny * k));
          if (organ.voxels[idx] <= 0.5f) continue;  // lesions stay inside the organ
          const double dx = i * sp[0] - b.centre_mm[0], dy = j * sp[1] - b.centre_mm[1],
                       dz = k * sp[2] - b.centre_mm[2];
          const double d = std::sqrt(dx * dx + dy * dy + dz * dz);
          const double r = b.radius_towards(dx, dy, dz);
          // 1 inside, 0 outside, linear over edge_mm centred on the border.
          const double blend =
              o.edge_mm > 0 ? std::clamp(0.5 - (d - r) / o.edge_mm, 0.0, 1.0) : (d <= r ? 1.0 : 0.0);
          if (blend <= 0) continue;
          float& v = image.voxels[idx];
          v = static_cast<float>((1 - blend) * v + blend * value);
          if (blend >= 0.5) out.mask.voxels[idx] = 1.0f;
        }
      }
    }
  }
  return out;
}

}  // namespace rg::data
