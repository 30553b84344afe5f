#include "train/noise_power.h"

#include <algorithm>
#include <cmath>
#include <complex>
#include <limits>

#include "data/fft.h"
#include "engine/error.h"

namespace rg::train {

namespace {

// One 1-D Gaussian pass along `len` samples `step` apart, for `lines` lines starting `stride`
// apart, with the kernel renormalized where it leaves the image (flat stays flat at borders).
template <typename In>
void blur_pass(const In* src, double* dst, int lines, int len, int64_t stride, int64_t step,
               const std::vector<double>& k) {
  const int r = static_cast<int>(k.size() / 2);
  for (int l = 0; l < lines; ++l)
    for (int i = 0; i < len; ++i) {
      double s = 0, ws = 0;
      for (int j = std::max(0, i - r); j <= std::min(len - 1, i + r); ++j) {
        s += k[static_cast<size_t>(j - i + r)] * src[l * stride + j * step];
        ws += k[static_cast<size_t>(j - i + r)];
      }
      dst[l * stride + i * step] = s / ws;
    }
}

// Separable Gaussian blur (sigma px, radius 3 sigma) of an h x w image.
std::vector<double> gaussian_blur(const float* x, int h, int w, double sigma) {
  const int r = std::max(1, static_cast<int>(std::ceil(3 * sigma)));
  std::vector<double> k(static_cast<size_t>(2 * r + 1));
  for (int i = -r; i <= r; ++i) k[static_cast<size_t>(i + r)] = std::exp(-0.5 * i * i / (sigma * sigma));
  std::vector<double> tmp(static_cast<size_t>(h) * w), out(tmp.size());
  blur_pass(x, tmp.data(), h, w, w, 1, k);           // along rows
  blur_pass(tmp.data(), out.data(), w, h, 1, w, k);  // along columns
  return out;
}

// Radial frequency (cycles/pixel) of DFT index (u, v) of an n x n transform.
double radial_frequency(int u, int v, int n) {
  const double fu = (u <= n / 2 ? u : u - n) / static_cast<double>(n);
  const double fv = (v <= n / 2 ? v : v - n) / static_cast<double>(n);
  return std::sqrt(fu * fu + fv * fv);
}

}  // namespace

std::vector<Roi> uniform_rois(const float* reference, const uint8_t* region, int height, int width,
                              const NpsOptions& o) {
  RG_CHECK(o.roi >= 4 && o.smooth_sigma > 0 && o.max_structure >= 0, "uniform_rois: bad options");
  std::vector<Roi> rois;
  if (height < o.roi || width < o.roi) return rois;
  const std::vector<double> smooth = gaussian_blur(reference, height, width, o.smooth_sigma);
  const int stride = std::max(1, o.roi / 2);
  for (int y = 0; y + o.roi <= height; y += stride) {
    for (int x = 0; x + o.roi <= width; x += stride) {
      bool inside = true;
      double lo = std::numeric_limits<double>::infinity(), hi = -lo, sum = 0;
      for (int i = 0; i < o.roi && inside; ++i) {
        for (int j = 0; j < o.roi; ++j) {
          const size_t p = static_cast<size_t>(y + i) * width + (x + j);
          if (region && !region[p]) {
            inside = false;
            break;
          }
          lo = std::min(lo, smooth[p]);
          hi = std::max(hi, smooth[p]);
          sum += smooth[p];
        }
      }
      if (!inside) continue;
      const double mean = sum / (static_cast<double>(o.roi) * o.roi);
      if (hi - lo <= o.max_structure && mean >= o.soft_lo && mean <= o.soft_hi) rois.push_back({y, x});
    }
  }
  return rois;
}

NpsAccumulator::NpsAccumulator(NpsOptions options)
    : options_(options), sum_(static_cast<size_t>(options.roi) * options.roi, 0.0) {
  RG_CHECK(options_.roi >= 4, "NpsAccumulator: roi must be >= 4, got ", options_.roi);
}

void NpsAccumulator::add(const float* image, int height, int width, const std::vector<Roi>& rois) {
  const int n = options_.roi;
  const double area = static_cast<double>(n) * n;
  std::vector<std::complex<double>> patch(static_cast<size_t>(n) * n);
  for (const Roi& r : rois) {
    RG_CHECK(r.y >= 0 && r.x >= 0 && r.y + n <= height && r.x + n <= width, "NpsAccumulator: ROI at (",
             r.y, ", ", r.x, ") leaves the ", height, " x ", width, " image");
    double mean = 0;
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < n; ++j) mean += image[static_cast<size_t>(r.y + i) * width + (r.x + j)];
    mean /= area;
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < n; ++j)
        patch[static_cast<size_t>(i) * n + j] = image[static_cast<size_t>(r.y + i) * width + (r.x + j)] - mean;
    const std::vector<std::complex<double>> f = data::fft_2d(patch, n, n);
    for (size_t k = 0; k < f.size(); ++k) sum_[k] += std::norm(f[k]) / area;
    ++rois_;
  }
}

NpsSummary NpsAccumulator::summary() const {
  NpsSummary s;
  s.rois = rois_;
  const int n = options_.roi;
  const int rings = n / 2;
  s.radial.assign(static_cast<size_t>(rings), 0.0);
  if (rois_ == 0) {
    s.variance = s.mean_frequency = std::numeric_limits<double>::quiet_NaN();
    return s;
  }
  const double area = static_cast<double>(n) * n;
  std::vector<int64_t> counts(static_cast<size_t>(rings), 0);
  double total = 0, weighted = 0;
  for (int u = 0; u < n; ++u) {
    for (int v = 0; v < n; ++v) {
      const double nps = sum_[static_cast<size_t>(u) * n + v] / static_cast<double>(rois_);
      const double f = radial_frequency(u, v, n);
      total += nps;
      weighted += f * nps;
      const int ring = static_cast<int>(std::lround(f * n));  // nearest k / n
      if (ring >= 1 && ring <= rings) {
        s.radial[static_cast<size_t>(ring - 1)] += nps;
        ++counts[static_cast<size_t>(ring - 1)];
      }
    }
  }
  for (size_t b = 0; b < s.radial.size(); ++b)
    if (counts[b] > 0) s.radial[b] /= static_cast<double>(counts[b]);
  s.variance = total / area;
  s.mean_frequency = total > 0 ? weighted / total : 0.0;
  return s;
}

double nps_distance(const NpsSummary& a, const NpsSummary& reference) {
  if (a.rois == 0 || reference.rois == 0 || a.radial.size() != reference.radial.size())
    return std::numeric_limits<double>::quiet_NaN();
  double diff = 0, norm = 0;
  for (size_t b = 0; b < a.radial.size(); ++b) {
    diff += std::abs(a.radial[b] - reference.radial[b]);
    norm += reference.radial[b];
  }
  return norm > 0 ? diff / norm : std::numeric_limits<double>::quiet_NaN();
}

}  // namespace rg::train
