#include "data/mri_sim.h"

#include <algorithm>
#include <cmath>
#include <complex>

#include "data/fft.h"
#include "engine/error.h"

namespace rg::data {

namespace {

void check_factor(int64_t h, int64_t w, int factor, const char* what) {
  RG_CHECK(factor >= 1, what, ": factor must be >= 1, got ", factor);
  RG_CHECK(h > 0 && w > 0 && h % factor == 0 && w % factor == 0, what, ": the slice size ", h, " x ", w,
           " is not divisible by the factor ", factor);
}

// Signed frequency of DFT index k of length n: 0, 1, ..., ceil(n/2)-1, -floor(n/2), ..., -1.
int64_t signed_freq(int64_t k, int64_t n) { return k < (n + 1) / 2 ? k : k - n; }

}  // namespace

std::vector<float> kspace_truncate(const std::vector<float>& image, int64_t h, int64_t w, int factor) {
  check_factor(h, w, factor, "k-space truncation");
  RG_CHECK(image.size() == static_cast<size_t>(h * w), "k-space truncation: ", image.size(), " pixels for ", h,
           " x ", w);
  const int64_t lh = h / factor, lw = w / factor;
  std::vector<std::complex<double>> x(image.begin(), image.end());
  const std::vector<std::complex<double>> k = fft_2d(x, h, w);
  // Keep the frequencies the low-resolution grid represents: signed index in
  // [-floor(l/2), ceil(l/2) - 1] per axis. A plain inverse DFT of that block would sample the
  // image at fine pixels f u; the low-resolution pixel's centre is the centre of its f x f
  // block, f u + (f - 1) / 2, so each coefficient gets the phase of that half-block shift.
  const double delta = 0.5 * static_cast<double>(factor - 1);
  constexpr double kTwoPi = 6.283185307179586476925286766559;
  std::vector<std::complex<double>> low(static_cast<size_t>(lh * lw));
  for (int64_t v = 0; v < lh; ++v) {
    const int64_t fv = signed_freq(v, lh);
    const int64_t sv = fv < 0 ? fv + h : fv;
    for (int64_t u = 0; u < lw; ++u) {
      const int64_t fu = signed_freq(u, lw);
      const int64_t su = fu < 0 ? fu + w : fu;
      const double phase = kTwoPi * delta * (static_cast<double>(fv) / static_cast<double>(h) +
                                             static_cast<double>(fu) / static_cast<double>(w));
      low[static_cast<size_t>(v * lw + u)] = k[static_cast<size_t>(sv * w + su)] * std::polar(1.0, phase);
    }
  }
  const std::vector<std::complex<double>> back = ifft_2d(low, lh, lw);
  const double scale = 1.0 / (static_cast<double>(factor) * static_cast<double>(factor));
  std::vector<float> out(back.size());
  for (size_t i = 0; i < back.size(); ++i) out[i] = static_cast<float>(back[i].real() * scale);
  return out;
}

std::vector<float> gaussian_blur(const std::vector<float>& image, int64_t h, int64_t w, double sigma) {
  RG_CHECK(image.size() == static_cast<size_t>(h * w), "gaussian_blur: ", image.size(), " pixels for ", h, " x ", w);
  RG_CHECK(sigma > 0 && std::isfinite(sigma), "gaussian_blur: sigma must be > 0, got ", sigma);
  const int64_t radius = static_cast<int64_t>(std::ceil(3 * sigma));
  std::vector<double> kern(static_cast<size_t>(2 * radius + 1));
  double sum = 0;
  for (int64_t i = -radius; i <= radius; ++i)
    sum += kern[static_cast<size_t>(i + radius)] = std::exp(-0.5 * static_cast<double>(i * i) / (sigma * sigma));
  for (double& v : kern) v /= sum;
  std::vector<float> tmp(image.size()), out(image.size());
  for (int64_t r = 0; r < h; ++r)
    for (int64_t c = 0; c < w; ++c) {
      double acc = 0;
      for (int64_t i = -radius; i <= radius; ++i)
        acc += kern[static_cast<size_t>(i + radius)] * image[static_cast<size_t>(r * w + std::clamp<int64_t>(c + i, 0, w - 1))];
      tmp[static_cast<size_t>(r * w + c)] = static_cast<float>(acc);
    }
  for (int64_t r = 0; r < h; ++r)
    for (int64_t c = 0; c < w; ++c) {
      double acc = 0;
      for (int64_t i = -radius; i <= radius; ++i)
        acc += kern[static_cast<size_t>(i + radius)] * tmp[static_cast<size_t>(std::clamp<int64_t>(r + i, 0, h - 1) * w + c)];
      out[static_cast<size_t>(r * w + c)] = static_cast<float>(acc);
    }
  return out;
}

std::vector<float> blur_downsample(const std::vector<float>& image, int64_t h, int64_t w, int factor, double sigma) {
  check_factor(h, w, factor, "blur + downsampling");
  if (sigma <= 0) sigma = 0.5 * factor;
  const std::vector<float> blurred = gaussian_blur(image, h, w, sigma);
  const int64_t lh = h / factor, lw = w / factor;
  // The centre of block (v, u) lies at fine coordinate v f + (f - 1) / 2: between pixels for even
  // f, so average the (one, two or four) nearest pixels.
  std::vector<float> out(static_cast<size_t>(lh * lw));
  const int64_t lo = (factor - 1) / 2, hi = factor / 2;
  for (int64_t v = 0; v < lh; ++v)
    for (int64_t u = 0; u < lw; ++u) {
      const int64_t r0 = v * factor + lo, r1 = v * factor + hi, c0 = u * factor + lo, c1 = u * factor + hi;
      out[static_cast<size_t>(v * lw + u)] =
          0.25f * (blurred[static_cast<size_t>(r0 * w + c0)] + blurred[static_cast<size_t>(r0 * w + c1)] +
                   blurred[static_cast<size_t>(r1 * w + c0)] + blurred[static_cast<size_t>(r1 * w + c1)]);
    }
  return out;
}

namespace {

double keys(double x) {
  constexpr double a = -0.5;
  x = std::fabs(x);
  if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a;
  return 0;
}

// Per output index: the 4 input indices (clamped) and weights.
struct Taps {
  std::vector<int64_t> idx;
  std::vector<double> wt;
};
Taps cubic_taps(int64_t in, int64_t out) {
  Taps t;
  t.idx.resize(static_cast<size_t>(out * 4));
  t.wt.resize(static_cast<size_t>(out * 4));
  for (int64_t o = 0; o < out; ++o) {
    const double x = (static_cast<double>(o) + 0.5) * static_cast<double>(in) / static_cast<double>(out) - 0.5;
    const double f = std::floor(x);
    for (int k = 0; k < 4; ++k) {
      const int64_t i = static_cast<int64_t>(f) - 1 + k;
      t.idx[static_cast<size_t>(o * 4 + k)] = std::clamp<int64_t>(i, 0, in - 1);
      t.wt[static_cast<size_t>(o * 4 + k)] = keys(x - static_cast<double>(i));
    }
  }
  return t;
}

}  // namespace

std::vector<float> resize_bicubic(const std::vector<float>& image, int64_t h, int64_t w, int64_t out_h, int64_t out_w) {
  RG_CHECK(h > 0 && w > 0 && out_h > 0 && out_w > 0 && image.size() == static_cast<size_t>(h * w),
           "resize_bicubic: ", image.size(), " pixels for ", h, " x ", w, " -> ", out_h, " x ", out_w);
  const Taps tr = cubic_taps(h, out_h), tc = cubic_taps(w, out_w);
  std::vector<double> rows(static_cast<size_t>(h * out_w));
  for (int64_t r = 0; r < h; ++r)
    for (int64_t u = 0; u < out_w; ++u) {
      double acc = 0;
      for (int k = 0; k < 4; ++k)
        acc += tc.wt[static_cast<size_t>(u * 4 + k)] * image[static_cast<size_t>(r * w + tc.idx[static_cast<size_t>(u * 4 + k)])];
      rows[static_cast<size_t>(r * out_w + u)] = acc;
    }
  std::vector<float> out(static_cast<size_t>(out_h * out_w));
  for (int64_t v = 0; v < out_h; ++v)
    for (int64_t u = 0; u < out_w; ++u) {
      double acc = 0;
      for (int k = 0; k < 4; ++k)
        acc += tr.wt[static_cast<size_t>(v * 4 + k)] * rows[static_cast<size_t>(tr.idx[static_cast<size_t>(v * 4 + k)] * out_w + u)];
      out[static_cast<size_t>(v * out_w + u)] = static_cast<float>(acc);
    }
  return out;
}

SrDegradation parse_sr_degradation(const std::string& name) {
  if (name == "kspace") return SrDegradation::Kspace;
  if (name == "blur") return SrDegradation::Blur;
  RG_FAIL("unknown super-resolution degradation '", name, "' (expected kspace or blur)");
}
const char* sr_degradation_name(SrDegradation d) { return d == SrDegradation::Kspace ? "kspace" : "blur"; }

std::vector<float> simulate_low_resolution(const std::vector<float>& image, int64_t h, int64_t w,
                                           SrDegradation degradation, int factor, double sigma) {
  const std::vector<float> low = degradation == SrDegradation::Kspace ? kspace_truncate(image, h, w, factor)
                                                                      : blur_downsample(image, h, w, factor, sigma);
  return resize_bicubic(low, h / factor, w / factor, h, w);
}

}  // namespace rg::data
