// The noise power spectrum (NPS) of CT images in uniform regions: how much noise an image holds
// and at which spatial frequencies (its texture). Denoisers trained on L1/MSE are known to leave
// blotchy, low-frequency noise; adversarial ones claim a texture closer to full dose. This
// measures it (issue 17), as in the CT literature (ICRU 87 / AAPM TG-233's ROI method):
//
//  - ROIs: roi x roi squares on a grid with stride roi / 2 (50% overlap), entirely inside the
//    region, where the *reference* (full dose), smoothed with a Gaussian of sigma
//    `smooth_sigma` px to take its own noise out, spans at most `max_structure` (max - min) and
//    has a mean in [soft_lo, soft_hi]: uniform soft tissue (heart, liver, muscle on the phantom).
//    The same ROIs are used for every image of a slice (input, output, reference).
//  - NPS of one ROI: its mean subtracted, NPS(u, v) = |DFT(roi)|^2 / roi^2 in units^2 * px^2,
//    averaged over the ROIs. Its sum over all frequencies / roi^2 is the ROI's variance.
//  - Reported: the variance (integral of the NPS), the mean frequency (NPS-weighted mean of the
//    radial frequency, cycles/pixel; lower = blotchier), the radial NPS in roi / 2 rings (ring k
//    holds the frequencies within half a step of k / roi cycles/pixel, k = 1 .. roi / 2; the DC
//    term is 0 once the mean is removed), and for an image against the reference the relative L1 distance of
//    their radial NPS (sum |NPS_a - NPS_ref| / sum NPS_ref over the rings): 0 = the same noise
//    magnitude and texture.
#pragma once

#include <cstdint>
#include <vector>

namespace rg::train {

struct NpsOptions {
  int roi = 32;
  double smooth_sigma = 2.0;   // px, applied to the reference to find uniform regions
  double max_structure = 20;   // units (HU): largest span of the smoothed reference in a ROI
  double soft_lo = -100, soft_hi = 150;  // units (HU): the ROI's smoothed mean must lie here
};

struct Roi {
  int y = 0, x = 0;  // top-left corner
};

// The uniform ROIs of one slice (see above); `reference` in units (HU), `region` nonzero inside.
std::vector<Roi> uniform_rois(const float* reference, const uint8_t* region, int height, int width,
                              const NpsOptions& options = {});

struct NpsSummary {
  int64_t rois = 0;
  double variance = 0;        // units^2
  double mean_frequency = 0;  // cycles/pixel
  std::vector<double> radial; // units^2 px^2; radial[k - 1] is ring k, at k / roi cycles/pixel
};

class NpsAccumulator {
 public:
  explicit NpsAccumulator(NpsOptions options = {});
  // Adds the ROIs of one image (row-major, height x width, in units).
  void add(const float* image, int height, int width, const std::vector<Roi>& rois);
  NpsSummary summary() const;

 private:
  NpsOptions options_;
  std::vector<double> sum_;  // roi x roi NPS summed over ROIs
  int64_t rois_ = 0;
};

// sum |a - ref| / sum ref over the rings (rings where the reference is 0 count |a|); NaN if
// either has no ROI.
double nps_distance(const NpsSummary& a, const NpsSummary& reference);

}  // namespace rg::train
