// The phantom's second modality: an MR-like rendering of its tissue map (data/phantom.h).
#include <algorithm>
#include <cmath>
#include <vector>

#include "data/phantom.h"
#include "data/rng.h"
#include "data/transforms.h"
#include "engine/error.h"

namespace rg::data {

const char* phantom_tissue_name(int tissue) {
  static const char* const kNames[kPhantomTissueClasses] = {"air",  "fat",  "soft",   "bone",
                                                            "blood", "lung", "lesion", "halo"};
  RG_CHECK(tissue >= 0 && tissue < kPhantomTissueClasses, "phantom tissue class ", tissue,
           " out of range [0, ", kPhantomTissueClasses, ")");
  return kNames[tissue];
}

double phantom_mr_intensity(int tissue, MrContrast contrast) {
  // T1-weighted look: fat bright; lesions (solid, slightly enhancing) above muscle and organs;
  // flowing blood and cortical bone with marrow darker; lung parenchyma and air near 0. Bone and
  // air are both dark (the classic difficulty of MR -> CT), lung is barely above air. A lesion's
  // ground-glass halo (air spaces partly filled with fluid) lies between lung and soft tissue.
  static const double kT1[kPhantomTissueClasses] = {0.0, 1.0, 0.45, 0.2, 0.3, 0.06, 0.62, 0.25};
  // T2-weighted (fast spin echo) look: lesions (water-rich, inflamed) brightest, fat still
  // bright, muscle and organs dark, flowing blood a flow void, bone dark, lung near air. Lesions
  // now stand out from blood and soft tissue, which T1 renders close together. The halo's fluid
  // makes it brighter than soft tissue but well below the solid core.
  static const double kT2[kPhantomTissueClasses] = {0.0, 0.75, 0.3, 0.15, 0.05, 0.08, 1.0, 0.5};
  phantom_tissue_name(tissue);  // range check
  return (contrast == MrContrast::T2 ? kT2 : kT1)[tissue];
}

Volume render_phantom_mr(const Volume& tissue, uint64_t seed, const MrOptions& o) {
  RG_CHECK(tissue.voxel_count() > 0 && tissue.voxels.size() == static_cast<size_t>(tissue.voxel_count()),
           "render_phantom_mr: empty or inconsistent tissue map");
  RG_CHECK(o.tissue_jitter >= 0 && o.bias_amplitude >= 0 && o.bias_amplitude < 1 && o.psf_sigma_mm >= 0 &&
               o.noise_sigma >= 0,
           "render_phantom_mr: options out of range (jitter, noise and blur >= 0, bias in [0, 1))");
  const int64_t nx = tissue.dims[0], ny = tissue.dims[1], nz = tissue.dims[2];
  Rng rng(derive_seed(seed, {0x6d72ULL}));
  // Per-subject tissue intensities (a scanner's and a subject's contrast varies). The halo class
  // came later: its draw follows the bias field's, so every other tissue and the bias field keep
  // the draws (and the volumes) they had before it existed.
  std::array<double, kPhantomTissueClasses> level{};
  auto draw_level = [&](int t) {
    level[static_cast<size_t>(t)] = phantom_mr_intensity(t, o.contrast) * std::max(0.5, 1.0 + o.tissue_jitter * rng.normal());
  };
  static_assert(kTissueHalo == kPhantomTissueClasses - 1, "every class below the halo is drawn first");
  for (int t = 0; t < kTissueHalo; ++t) draw_level(t);
  // Bias field: exp of a random quadratic in normalized coordinates u, v, w in [-1, 1], scaled
  // so that its log stays within +-log(1 + amplitude) (a receive-coil profile: smooth, no edges).
  std::array<double, 9> coef{};
  for (double& c : coef) c = rng.uniform(-1.0, 1.0);
  draw_level(kTissueHalo);
  double norm = 0;
  for (double c : coef) norm += std::fabs(c);
  const double gain = norm > 0 ? std::log1p(o.bias_amplitude) / norm : 0.0;
  auto bias = [&](double u, double v, double w) {
    const double terms[9] = {u, v, w, u * u, v * v, w * w, u * v, v * w, u * w};
    double e = 0;
    for (int q = 0; q < 9; ++q) e += coef[static_cast<size_t>(q)] * terms[q];
    return std::exp(gain * e);
  };
  const bool t2 = o.contrast == MrContrast::T2;
  Volume mr;
  mr.dims = tissue.dims;
  mr.spacing = tissue.spacing;
  mr.affine = tissue.affine;
  mr.source = tissue.source + (t2 ? " (T2 MR rendering)" : " (MR rendering)");
  mr.source_dtype = "float32";
  mr.voxels.resize(tissue.voxels.size());
  auto coord = [](int64_t i, int64_t n) { return n > 1 ? 2.0 * static_cast<double>(i) / static_cast<double>(n - 1) - 1.0 : 0.0; };
  for (int64_t k = 0; k < nz; ++k)
    for (int64_t j = 0; j < ny; ++j)
      for (int64_t i = 0; i < nx; ++i) {
        const size_t idx = static_cast<size_t>(i + nx * (j + ny * k));
        const int t = static_cast<int>(tissue.voxels[idx]);
        RG_CHECK(t >= 0 && t < kPhantomTissueClasses, "render_phantom_mr: tissue label ", tissue.voxels[idx],
                 " at voxel (", i, ", ", j, ", ", k, ") is not a phantom tissue class");
        mr.voxels[idx] = static_cast<float>(level[static_cast<size_t>(t)] *
                                            bias(coord(i, nx), coord(j, ny), coord(k, nz)));
      }
  // In-plane point spread (thick slices: none across them), then Rician noise on the magnitude.
  for (int64_t k = 0; k < nz; ++k)
    gaussian_blur(mr.voxels.data() + k * nx * ny, ny, nx, o.psf_sigma_mm / tissue.spacing[1],
                  o.psf_sigma_mm / tissue.spacing[0]);
  // T1 keeps the noise streams it always had (same volumes as before T2 existed).
  const uint64_t re = t2 ? derive_seed(seed, {0x7265ULL, 2}) : derive_seed(seed, {0x7265ULL});
  const uint64_t im = t2 ? derive_seed(seed, {0x696dULL, 2}) : derive_seed(seed, {0x696dULL});
  for (size_t idx = 0; idx < mr.voxels.size(); ++idx) {
    const double a = mr.voxels[idx] + o.noise_sigma * hashed_normal(re, idx);
    const double b = o.noise_sigma * hashed_normal(im, idx);
    mr.voxels[idx] = static_cast<float>(std::sqrt(a * a + b * b));
  }
  return mr;
}

}  // namespace rg::data
