// Low-dose CT simulation on 2-D slices, the way the physics goes (issue 17):
//
//   HU -> linear attenuation mu = mu_water (1 + HU / 1000)            (per mm, >= 0)
//   parallel-beam forward projection p(theta, t) = line integral of mu  (dimensionless)
//   photon counts N ~ Poisson(I0 exp(-p)) per ray, I0 photons per ray at full dose and
//     dose_fraction * I0 at the reduced dose (N = 0 is read as 0.5 photons: a log needs > 0)
//   log: p' = -ln(N / I0)
//   filtered back-projection with a windowed ramp filter, mu -> HU.
//
// Geometry: an n x n image of square pixels `pixel_mm` wide, centred on the rotation axis;
// pixel (row r, column c) sits at x = (c - (n-1)/2) d, y = (r - (n-1)/2) d. View j has angle
// theta_j = j pi / views; detector bin k sits at t_k = (k - (bins-1)/2) d (the pixel size), and
// a ray of view j at t covers the points (t cos theta - s sin theta, t sin theta + s cos theta).
// Bins default to ceil(n sqrt 2) + 2, so every pixel of the square is seen at every angle.
//
// The projector is ours (Joseph-style: bilinear samples every half pixel along each ray), as
// is the FBP (Kak & Slaney's band-limited ramp kernel, its FFT times a window, linear
// interpolation in the back-projection). FFTs: FFTW (double precision).
// Tests compare both against analytic projections of ellipses (the Shepp-Logan phantom).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace rg::data {

inline constexpr double kMuWaterPerMm = 0.0192;  // water at about 70 keV, 1/mm

struct CtGeometry {
  int64_t n = 0;          // image is n x n
  double pixel_mm = 1.0;  // pixel (and detector bin) size
  int64_t views = 0;      // angles over [0, pi); 0 = ceil(pi n / 2)
  int64_t bins = 0;       // detector bins; 0 = ceil(n sqrt 2) + 2
  // The defaults filled in; throws rg::Error naming the bad field.
  CtGeometry resolved() const;
};

// Ramp windows of the FBP filter (multiplying |f| up to the Nyquist frequency f_N):
// ram-lak (none), shepp-logan (sinc(f / 2 f_N)), hann (0.5 (1 + cos(pi f / f_N))),
// hamming (0.54 + 0.46 cos(pi f / f_N)).
enum class RampWindow { RamLak, SheppLogan, Hann, Hamming };
RampWindow parse_ramp_window(const std::string& name);  // throws naming the value
const char* ramp_window_name(RampWindow w);

// Sinogram: views x bins, row-major (view j, bin k).
std::vector<float> forward_project(const std::vector<float>& image, const CtGeometry& g);
std::vector<float> filtered_back_projection(const std::vector<float>& sinogram, const CtGeometry& g,
                                            RampWindow window = RampWindow::Hann);

// An ellipse of constant density (added to what lies below it), in mm.
struct Ellipse {
  double density, a, b, x0, y0, phi_deg;  // semi-axes a (along x when phi = 0), b; centre; rotation
};
// The modified Shepp-Logan head phantom (Toft's contrast-enhanced densities), scaled so its
// outer ellipse fits `radius_mm` (the original's unit disk).
std::vector<Ellipse> shepp_logan(double radius_mm);
// Exact line integrals of the ellipses for the geometry's rays (views x bins).
std::vector<float> ellipse_projections(const std::vector<Ellipse>& e, const CtGeometry& g);
// The ellipses on the n x n grid, each pixel averaged over `supersample`^2 points.
std::vector<float> rasterize_ellipses(const std::vector<Ellipse>& e, const CtGeometry& g,
                                      int supersample = 4);

// Poisson sample of mean `mean` >= 0 from our own generator (data/rng.h: the same numbers
// with every standard library): multiplication of uniforms below 10, Hoermann's PTRS above.
class Rng;
int64_t poisson_sample(double mean, Rng& rng);

struct LowDoseOptions {
  double photons = 1e5;        // I0 per ray at full dose
  double dose_fraction = 0.25; // reduced dose: dose_fraction * I0 per ray
  RampWindow window = RampWindow::Hann;
  int64_t views = 0, bins = 0; // 0 = CtGeometry's defaults
  void validate() const;       // throws rg::Error naming the bad option
};

struct LowDosePair {
  std::vector<float> full, low;  // HU, n x n: FBP of the full-dose and of the reduced-dose scan
};
// Simulates both scans of one slice given in HU (noise drawn from `seed`; the two doses get
// independent noise on the same noiseless sinogram).
LowDosePair simulate_low_dose(const std::vector<float>& hu, int64_t n, double pixel_mm,
                              const LowDoseOptions& options, uint64_t seed);

}  // namespace rg::data
