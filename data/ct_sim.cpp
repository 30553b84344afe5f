#include "data/ct_sim.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "data/fft.h"
#include "data/rng.h"
#include "engine/error.h"

namespace rg::data {

namespace {
constexpr double kPi = std::numbers::pi;
}

CtGeometry CtGeometry::resolved() const {
  RG_CHECK(n >= 2, "CT geometry: image size must be >= 2, got ", n);
  RG_CHECK(pixel_mm > 0 && std::isfinite(pixel_mm), "CT geometry: pixel size must be > 0 mm, got ", pixel_mm);
  RG_CHECK(views >= 0 && bins >= 0, "CT geometry: views and bins must be >= 0 (0 = default), got ",
           views, " and ", bins);
  CtGeometry g = *this;
  if (g.views == 0) g.views = static_cast<int64_t>(std::ceil(kPi * static_cast<double>(n) / 2));
  if (g.bins == 0) g.bins = static_cast<int64_t>(std::ceil(static_cast<double>(n) * std::numbers::sqrt2)) + 2;
  return g;
}

RampWindow parse_ramp_window(const std::string& name) {
  if (name == "ram-lak") return RampWindow::RamLak;
  if (name == "shepp-logan") return RampWindow::SheppLogan;
  if (name == "hann") return RampWindow::Hann;
  if (name == "hamming") return RampWindow::Hamming;
  RG_FAIL("unknown FBP window '", name, "' (expected ram-lak, shepp-logan, hann or hamming)");
}

const char* ramp_window_name(RampWindow w) {
  switch (w) {
    case RampWindow::RamLak: return "ram-lak";
    case RampWindow::SheppLogan: return "shepp-logan";
    case RampWindow::Hann: return "hann";
    case RampWindow::Hamming: return "hamming";
  }
  return "?";
}

std::vector<float> forward_project(const std::vector<float>& image, const CtGeometry& geometry) {
  const CtGeometry g = geometry.resolved();
  const int64_t n = g.n;
  RG_CHECK(image.size() == static_cast<size_t>(n * n), "forward_project: image has ", image.size(),
           " pixels, expected ", n, " x ", n);
  const double d = g.pixel_mm, centre = 0.5 * static_cast<double>(n - 1);
  const double bin_centre = 0.5 * static_cast<double>(g.bins - 1);
  // Radius of the circle holding the whole square (plus a pixel): rays beyond it see nothing.
  const double radius = (0.5 * std::numbers::sqrt2 * static_cast<double>(n) + 1.0) * d;
  const double ds = 0.5 * d;
  std::vector<float> sino(static_cast<size_t>(g.views * g.bins), 0.0f);
  const float* img = image.data();
  // Bilinear sample with zeros outside the image.
  auto at = [&](int64_t r, int64_t c) -> double {
    return (r < 0 || c < 0 || r >= n || c >= n) ? 0.0 : static_cast<double>(img[r * n + c]);
  };
#pragma omp parallel for schedule(static)
  for (int64_t j = 0; j < g.views; ++j) {
    const double th = kPi * static_cast<double>(j) / static_cast<double>(g.views);
    const double ct = std::cos(th), st = std::sin(th);
    for (int64_t k = 0; k < g.bins; ++k) {
      const double t = (static_cast<double>(k) - bin_centre) * d;
      if (std::fabs(t) >= radius) continue;
      const double half = std::sqrt(radius * radius - t * t);
      const int64_t steps = static_cast<int64_t>(std::ceil(2 * half / ds));
      double acc = 0;
      for (int64_t q = 0; q < steps; ++q) {
        const double s = -half + (static_cast<double>(q) + 0.5) * (2 * half / static_cast<double>(steps));
        const double x = t * ct - s * st, y = t * st + s * ct;
        const double cx = x / d + centre, ry = y / d + centre;
        if (cx <= -1 || ry <= -1 || cx >= static_cast<double>(n) || ry >= static_cast<double>(n)) continue;
        const double fx = std::floor(cx), fy = std::floor(ry);
        const int64_t c0 = static_cast<int64_t>(fx), r0 = static_cast<int64_t>(fy);
        const double ax = cx - fx, ay = ry - fy;
        acc += (at(r0, c0) * (1 - ax) + at(r0, c0 + 1) * ax) * (1 - ay) +
               (at(r0 + 1, c0) * (1 - ax) + at(r0 + 1, c0 + 1) * ax) * ay;
      }
      sino[static_cast<size_t>(j * g.bins + k)] = static_cast<float>(acc * (2 * half / static_cast<double>(steps)));
    }
  }
  return sino;
}

std::vector<float> filtered_back_projection(const std::vector<float>& sinogram, const CtGeometry& geometry,
                                            RampWindow window) {
  const CtGeometry g = geometry.resolved();
  RG_CHECK(sinogram.size() == static_cast<size_t>(g.views * g.bins), "filtered_back_projection: sinogram has ",
           sinogram.size(), " values, expected ", g.views, " views x ", g.bins, " bins");
  const double d = g.pixel_mm;
  // Zero padding to at least twice the detector avoids the circular convolution's wrap-around.
  int64_t npad = 1;
  while (npad < 2 * g.bins) npad <<= 1;
  // Kak & Slaney's band-limited ramp: h(0) = 1/(4 d^2), h(m odd) = -1/(m pi d)^2, h(m even) = 0;
  // its DFT (real: h is symmetric), times d (the convolution's step) and the window.
  std::vector<double> h(static_cast<size_t>(npad), 0.0);
  h[0] = 1.0 / (4 * d * d);
  for (int64_t m = 1; m < npad / 2; m += 2) {
    const double v = -1.0 / (static_cast<double>(m * m) * kPi * kPi * d * d);
    h[static_cast<size_t>(m)] = v;
    h[static_cast<size_t>(npad - m)] = v;
  }
  const std::vector<std::complex<double>> hf = fft_real_1d(h);
  const int64_t nf = npad / 2 + 1;
  std::vector<double> filter(static_cast<size_t>(nf));
  for (int64_t k = 0; k < nf; ++k) {
    const double f = static_cast<double>(k) / static_cast<double>(npad / 2);  // f / f_Nyquist
    double w = 1.0;
    switch (window) {
      case RampWindow::RamLak: break;
      case RampWindow::SheppLogan: w = f == 0 ? 1.0 : std::sin(kPi * f / 2) / (kPi * f / 2); break;
      case RampWindow::Hann: w = 0.5 * (1 + std::cos(kPi * f)); break;
      case RampWindow::Hamming: w = 0.54 + 0.46 * std::cos(kPi * f); break;
    }
    filter[static_cast<size_t>(k)] = hf[static_cast<size_t>(k)].real() * d * w;
  }
  std::vector<float> q(sinogram.size());
  {
    std::vector<double> row(static_cast<size_t>(npad));
    for (int64_t j = 0; j < g.views; ++j) {
      std::fill(row.begin(), row.end(), 0.0);
      for (int64_t k = 0; k < g.bins; ++k) row[static_cast<size_t>(k)] = sinogram[static_cast<size_t>(j * g.bins + k)];
      std::vector<std::complex<double>> spec = fft_real_1d(row);
      for (int64_t k = 0; k < nf; ++k) spec[static_cast<size_t>(k)] *= filter[static_cast<size_t>(k)];
      const std::vector<double> back = ifft_real_1d(spec, npad);
      for (int64_t k = 0; k < g.bins; ++k) q[static_cast<size_t>(j * g.bins + k)] = static_cast<float>(back[static_cast<size_t>(k)]);
    }
  }
  const int64_t n = g.n;
  const double centre = 0.5 * static_cast<double>(n - 1), bin_centre = 0.5 * static_cast<double>(g.bins - 1);
  std::vector<double> cs(static_cast<size_t>(g.views)), sn(static_cast<size_t>(g.views));
  for (int64_t j = 0; j < g.views; ++j) {
    const double th = kPi * static_cast<double>(j) / static_cast<double>(g.views);
    cs[static_cast<size_t>(j)] = std::cos(th);
    sn[static_cast<size_t>(j)] = std::sin(th);
  }
  std::vector<float> image(static_cast<size_t>(n * n));
  const double scale = kPi / static_cast<double>(g.views);
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < n; ++r) {
    const double y = (static_cast<double>(r) - centre);  // in pixels (= bins)
    for (int64_t c = 0; c < n; ++c) {
      const double x = (static_cast<double>(c) - centre);
      double acc = 0;
      for (int64_t j = 0; j < g.views; ++j) {
        const double u = x * cs[static_cast<size_t>(j)] + y * sn[static_cast<size_t>(j)] + bin_centre;
        const double fu = std::floor(u);
        const int64_t k0 = static_cast<int64_t>(fu);
        if (k0 < 0 || k0 + 1 >= g.bins) continue;
        const double a = u - fu;
        const float* qj = q.data() + j * g.bins;
        acc += qj[k0] * (1 - a) + qj[k0 + 1] * a;
      }
      image[static_cast<size_t>(r * n + c)] = static_cast<float>(acc * scale);
    }
  }
  return image;
}

std::vector<Ellipse> shepp_logan(double radius_mm) {
  // density, a, b, x0, y0, phi (degrees) on the unit disk.
  const double t[10][6] = {
      {1.0, 0.69, 0.92, 0.0, 0.0, 0.0},          {-0.8, 0.6624, 0.8740, 0.0, -0.0184, 0.0},
      {-0.2, 0.1100, 0.3100, 0.22, 0.0, -18.0},  {-0.2, 0.1600, 0.4100, -0.22, 0.0, 18.0},
      {0.1, 0.2100, 0.2500, 0.0, 0.35, 0.0},     {0.1, 0.0460, 0.0460, 0.0, 0.1, 0.0},
      {0.1, 0.0460, 0.0460, 0.0, -0.1, 0.0},     {0.1, 0.0460, 0.0230, -0.08, -0.605, 0.0},
      {0.1, 0.0230, 0.0230, 0.0, -0.606, 0.0},   {0.1, 0.0230, 0.0460, 0.06, -0.605, 0.0}};
  std::vector<Ellipse> out;
  for (const auto& r : t)
    out.push_back({r[0], r[1] * radius_mm, r[2] * radius_mm, r[3] * radius_mm, r[4] * radius_mm, r[5]});
  return out;
}

std::vector<float> ellipse_projections(const std::vector<Ellipse>& ellipses, const CtGeometry& geometry) {
  const CtGeometry g = geometry.resolved();
  std::vector<float> sino(static_cast<size_t>(g.views * g.bins), 0.0f);
  const double bin_centre = 0.5 * static_cast<double>(g.bins - 1);
  for (int64_t j = 0; j < g.views; ++j) {
    const double th = kPi * static_cast<double>(j) / static_cast<double>(g.views);
    for (int64_t k = 0; k < g.bins; ++k) {
      const double t = (static_cast<double>(k) - bin_centre) * g.pixel_mm;
      double acc = 0;
      for (const Ellipse& e : ellipses) {
        const double phi = e.phi_deg * kPi / 180.0;
        const double ts = t - (e.x0 * std::cos(th) + e.y0 * std::sin(th));
        const double tp = th - phi;
        const double a2 = e.a * e.a * std::cos(tp) * std::cos(tp) + e.b * e.b * std::sin(tp) * std::sin(tp);
        if (ts * ts <= a2) acc += 2 * e.density * e.a * e.b * std::sqrt(a2 - ts * ts) / a2;
      }
      sino[static_cast<size_t>(j * g.bins + k)] = static_cast<float>(acc);
    }
  }
  return sino;
}

std::vector<float> rasterize_ellipses(const std::vector<Ellipse>& ellipses, const CtGeometry& geometry,
                                      int supersample) {
  RG_CHECK(supersample >= 1, "rasterize_ellipses: supersample must be >= 1, got ", supersample);
  const CtGeometry g = geometry.resolved();
  const int64_t n = g.n;
  const double centre = 0.5 * static_cast<double>(n - 1), d = g.pixel_mm;
  std::vector<float> img(static_cast<size_t>(n * n), 0.0f);
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = 0; c < n; ++c) {
      double acc = 0;
      for (int sy = 0; sy < supersample; ++sy)
        for (int sx = 0; sx < supersample; ++sx) {
          const double x = (static_cast<double>(c) - centre - 0.5 + (sx + 0.5) / supersample) * d;
          const double y = (static_cast<double>(r) - centre - 0.5 + (sy + 0.5) / supersample) * d;
          for (const Ellipse& e : ellipses) {
            const double phi = e.phi_deg * kPi / 180.0;
            const double xs = x - e.x0, ys = y - e.y0;
            const double u = (xs * std::cos(phi) + ys * std::sin(phi)) / e.a;
            const double v = (-xs * std::sin(phi) + ys * std::cos(phi)) / e.b;
            if (u * u + v * v <= 1) acc += e.density;
          }
        }
      img[static_cast<size_t>(r * n + c)] = static_cast<float>(acc / (supersample * supersample));
    }
  return img;
}

int64_t poisson_sample(double mean, Rng& rng) {
  RG_CHECK(mean >= 0 && std::isfinite(mean), "poisson_sample: mean must be finite and >= 0, got ", mean);
  if (mean == 0) return 0;
  if (mean < 10) {
    // Count uniforms until their product drops below exp(-mean).
    const double limit = std::exp(-mean);
    double prod = rng.uniform();
    int64_t k = 0;
    while (prod > limit) {
      prod *= rng.uniform();
      ++k;
    }
    return k;
  }
  // Transformed rejection with squeeze (W. Hoermann, "The transformed rejection method for
  // generating Poisson random variables", 1993).
  const double sm = std::sqrt(mean), lm = std::log(mean);
  const double b = 0.931 + 2.53 * sm, a = -0.059 + 0.02483 * b;
  const double inv_alpha = 1.1239 + 1.1328 / (b - 3.4), vr = 0.9277 - 3.6224 / (b - 2);
  for (;;) {
    const double u = rng.uniform() - 0.5, v = rng.uniform();
    const double us = 0.5 - std::fabs(u);
    const double kd = std::floor((2 * a / us + b) * u + mean + 0.43);
    if (us >= 0.07 && v <= vr) return static_cast<int64_t>(kd);
    if (kd < 0 || (us < 0.013 && v > us)) continue;
    if (std::log(v) + std::log(inv_alpha) - std::log(a / (us * us) + b) <= -mean + kd * lm - std::lgamma(kd + 1))
      return static_cast<int64_t>(kd);
  }
}

void LowDoseOptions::validate() const {
  RG_CHECK(photons > 0 && std::isfinite(photons), "low-dose CT: --photons must be > 0, got ", photons);
  RG_CHECK(dose_fraction > 0 && dose_fraction <= 1, "low-dose CT: --dose-fraction must be in (0, 1], got ",
           dose_fraction);
  RG_CHECK(views >= 0 && bins >= 0, "low-dose CT: --views and --bins must be >= 0 (0 = default)");
}

LowDosePair simulate_low_dose(const std::vector<float>& hu, int64_t n, double pixel_mm,
                              const LowDoseOptions& o, uint64_t seed) {
  o.validate();
  CtGeometry g{.n = n, .pixel_mm = pixel_mm, .views = o.views, .bins = o.bins};
  g = g.resolved();
  RG_CHECK(hu.size() == static_cast<size_t>(n * n), "simulate_low_dose: slice has ", hu.size(),
           " pixels, expected ", n, " x ", n);
  std::vector<float> mu(hu.size());
  for (size_t i = 0; i < hu.size(); ++i)
    mu[i] = static_cast<float>(std::max(0.0, kMuWaterPerMm * (1.0 + static_cast<double>(hu[i]) / 1000.0)));
  const std::vector<float> p = forward_project(mu, g);
  auto scan = [&](double i0, uint64_t key) {
    Rng rng(derive_seed(seed, {key}));
    std::vector<float> noisy(p.size());
    for (size_t i = 0; i < p.size(); ++i) {
      const double counts = static_cast<double>(poisson_sample(i0 * std::exp(-static_cast<double>(p[i])), rng));
      noisy[i] = static_cast<float>(-std::log(std::max(counts, 0.5) / i0));
    }
    std::vector<float> img = filtered_back_projection(noisy, g, o.window);
    for (float& v : img) v = static_cast<float>(1000.0 * (static_cast<double>(v) / kMuWaterPerMm - 1.0));
    return img;
  };
  LowDosePair out;
  out.full = scan(o.photons, 1);
  out.low = scan(o.photons * o.dose_fraction, 2);
  return out;
}

}  // namespace rg::data
