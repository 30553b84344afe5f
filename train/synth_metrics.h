// Fidelity of a synthetic image against the real one: MAE, PSNR and SSIM, optionally restricted
// to a region (e.g. the body, or the mask), for images on the prepared files' intensity scale.
//
// Prepared images are float in [-1, 1] (docs/data_hdf5.md), so the data range L is 2 unless a
// caller says otherwise; PSNR and SSIM's constants depend on it and every caller states it.
//
//   MAE  = mean |s - r| over the region
//   PSNR = 10 log10(L^2 / MSE) over the region (dB); +inf when MSE is 0
//   SSIM = mean over the region of Wang et al.'s (2004) local index
//            ((2 mu_s mu_r + C1)(2 cov + C2)) / ((mu_s^2 + mu_r^2 + C1)(var_s + var_r + C2)),
//          C1 = (0.01 L)^2, C2 = (0.03 L)^2, with local statistics over a 7x7 uniform window
//          (population variances, i.e. divided by 49) centred on each pixel whose window lies
//          inside the image; region pixels closer than 3 px to the border are not counted.
//          (A uniform window, not Wang's 11x11 Gaussian: the same choice as scikit-image's
//          default, so the numbers are comparable to the common Python tooling up to its
//          sample-variance correction.)
#pragma once

#include <cstdint>
#include <vector>

namespace rg::train {

inline constexpr double kPreparedDataRange = 2.0;  // [-1, 1]
inline constexpr int kSsimWindow = 7;

// The three measures of one image pair; `pixels` is how many pixels the region held (0: the
// region was empty and the measures are NaN). ssim_pixels: the region pixels SSIM counted.
struct FidelityMetrics {
  double mae = 0, psnr = 0, ssim = 0;
  int64_t pixels = 0, ssim_pixels = 0;
};

// `synthetic` and `real` are height x width row-major; `region` (same size, nonzero = inside)
// may be null for the whole image. Throws rg::Error for bad sizes or a non-positive range.
FidelityMetrics fidelity(const float* synthetic, const float* real, const uint8_t* region,
                         int height, int width, double data_range = kPreparedDataRange);

// The same measures after clipping both images to [lo, hi] (a display window, e.g. CT's
// [-160, 240] HU soft-tissue window), with data range hi - lo: the "PSNR in the window" of the
// reconstruction literature. Values are in the window's units (MAE in HU for a HU window).
FidelityMetrics windowed_fidelity(const float* output, const float* reference, const uint8_t* region,
                                  int height, int width, double lo, double hi);

// The body of a prepared slice: pixels above the background level (-1 after normalization,
// also the crop's fill) by more than `margin`, united with the mask when one is given. Where a
// scan's air inside the body is as dark as the background (lungs on a CT window), the mask
// keeps it in.
std::vector<uint8_t> body_region(const float* real, const float* mask, int64_t pixels,
                                 float margin = 0.02f);

// Mean and standard deviation of per-slice measures (slices with an empty region skipped).
struct FidelitySummary {
  double mae = 0, mae_std = 0, psnr = 0, psnr_std = 0, ssim = 0, ssim_std = 0;
  int64_t slices = 0;
};
class FidelityAccumulator {
 public:
  void add(const FidelityMetrics& m);
  FidelitySummary summary() const;

 private:
  std::vector<double> mae_, psnr_, ssim_;
};

}  // namespace rg::train
