#include "train/synth_metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "engine/error.h"

namespace rg::train {

namespace {

void mean_std(const std::vector<double>& v, double& mean, double& std_dev) {
  mean = 0;
  std_dev = 0;
  if (v.empty()) return;
  for (double x : v) mean += x;
  mean /= static_cast<double>(v.size());
  double ss = 0;
  for (double x : v) ss += (x - mean) * (x - mean);
  std_dev = std::sqrt(ss / static_cast<double>(v.size()));
}

}  // namespace

FidelityMetrics fidelity(const float* synthetic, const float* real, const uint8_t* region,
                         int height, int width, double data_range) {
  RG_CHECK(height > 0 && width > 0, "fidelity: image size ", height, " x ", width);
  RG_CHECK(data_range > 0, "fidelity: data range must be > 0, got ", data_range);
  const int64_t n = static_cast<int64_t>(height) * width;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  FidelityMetrics m;
  double abs_sum = 0, sq_sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (region && !region[i]) continue;
    const double d = static_cast<double>(synthetic[i]) - static_cast<double>(real[i]);
    abs_sum += std::fabs(d);
    sq_sum += d * d;
    ++m.pixels;
  }
  if (m.pixels == 0) {
    m.mae = m.psnr = m.ssim = nan;
    return m;
  }
  m.mae = abs_sum / static_cast<double>(m.pixels);
  const double mse = sq_sum / static_cast<double>(m.pixels);
  m.psnr = mse > 0 ? 10.0 * std::log10(data_range * data_range / mse)
                   : std::numeric_limits<double>::infinity();

  const double c1 = (0.01 * data_range) * (0.01 * data_range);
  const double c2 = (0.03 * data_range) * (0.03 * data_range);
  const int r = kSsimWindow / 2;
  const double inv = 1.0 / (kSsimWindow * kSsimWindow);
  double ssim_sum = 0;
  for (int y = r; y < height - r; ++y) {
    for (int x = r; x < width - r; ++x) {
      if (region && !region[static_cast<int64_t>(y) * width + x]) continue;
      double ss = 0, sr = 0, sss = 0, srr = 0, ssr = 0;
      for (int dy = -r; dy <= r; ++dy) {
        const int64_t row = static_cast<int64_t>(y + dy) * width;
        for (int dx = -r; dx <= r; ++dx) {
          const double a = synthetic[row + x + dx], b = real[row + x + dx];
          ss += a;
          sr += b;
          sss += a * a;
          srr += b * b;
          ssr += a * b;
        }
      }
      const double mu_s = ss * inv, mu_r = sr * inv;
      const double var_s = sss * inv - mu_s * mu_s, var_r = srr * inv - mu_r * mu_r;
      const double cov = ssr * inv - mu_s * mu_r;
      ssim_sum += ((2 * mu_s * mu_r + c1) * (2 * cov + c2)) /
                  ((mu_s * mu_s + mu_r * mu_r + c1) * (var_s + var_r + c2));
      ++m.ssim_pixels;
    }
  }
  m.ssim = m.ssim_pixels > 0 ? ssim_sum / static_cast<double>(m.ssim_pixels) : nan;
  return m;
}

std::vector<uint8_t> body_region(const float* real, const float* mask, int64_t pixels,
                                 float margin) {
  std::vector<uint8_t> out(static_cast<size_t>(pixels));
  for (int64_t i = 0; i < pixels; ++i) {
    out[static_cast<size_t>(i)] = real[i] > -1.0f + margin || (mask && mask[i] >= 0.5f);
  }
  return out;
}

void FidelityAccumulator::add(const FidelityMetrics& m) {
  if (m.pixels == 0) return;
  mae_.push_back(m.mae);
  psnr_.push_back(m.psnr);
  if (m.ssim_pixels > 0) ssim_.push_back(m.ssim);
}

FidelitySummary FidelityAccumulator::summary() const {
  FidelitySummary s;
  s.slices = static_cast<int64_t>(mae_.size());
  mean_std(mae_, s.mae, s.mae_std);
  mean_std(psnr_, s.psnr, s.psnr_std);
  mean_std(ssim_, s.ssim, s.ssim_std);
  return s;
}

FidelityMetrics windowed_fidelity(const float* output, const float* reference, const uint8_t* region,
                                  int height, int width, double lo, double hi) {
  RG_CHECK(hi > lo, "windowed_fidelity: window [", lo, ", ", hi, "] must have lo < hi");
  const size_t n = static_cast<size_t>(height) * static_cast<size_t>(width);
  std::vector<float> a(n), b(n);
  const float l = static_cast<float>(lo), h = static_cast<float>(hi);
  for (size_t i = 0; i < n; ++i) {
    a[i] = std::clamp(output[i], l, h);
    b[i] = std::clamp(reference[i], l, h);
  }
  return fidelity(a.data(), b.data(), region, height, width, hi - lo);
}

}  // namespace rg::train
