// Paired-data simulation for reconstruction (issue 17): the CT projector and FBP against
// analytic projections of ellipses (Shepp-Logan), Poisson statistics, low-dose noise, k-space
// truncation against a direct DFT, bicubic on known functions, and pair files written by
// prepare_slices (simulated and the user's own) read back.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <complex>
#include <filesystem>
#include <numbers>
#include <numeric>

#include "data/ct_sim.h"
#include "data/mri_sim.h"
#include "data/nifti.h"
#include "data/recon_pairs.h"
#include "data/rng.h"
#include "data/slice_dataset.h"
#include "data/slice_writer.h"
#include "engine/error.h"

using namespace rg::data;
namespace fs = std::filesystem;

namespace {

fs::path temp_dir(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("rg_recon_" + name + "_" + std::to_string(getpid()));
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

double rms(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += (a[i] - b[i]) * static_cast<double>(a[i] - b[i]);
  return std::sqrt(s / static_cast<double>(a.size()));
}

// Mean of a (2r+1)^2 patch of an n x n image centred at (x, y) mm (geometry of ct_sim.h).
double patch_mean(const std::vector<float>& img, int64_t n, double d, double x, double y, int r = 2) {
  const int64_t c = std::lround(x / d + 0.5 * (n - 1)), row = std::lround(y / d + 0.5 * (n - 1));
  double s = 0;
  for (int dy = -r; dy <= r; ++dy)
    for (int dx = -r; dx <= r; ++dx) s += img[static_cast<size_t>((row + dy) * n + c + dx)];
  return s / ((2 * r + 1) * (2 * r + 1));
}

double sd_in_disk(const std::vector<float>& img, int64_t n, double radius_px, double* mean_out = nullptr) {
  double s = 0, s2 = 0;
  int64_t k = 0;
  const double c = 0.5 * (n - 1);
  for (int64_t r = 0; r < n; ++r)
    for (int64_t q = 0; q < n; ++q)
      if ((r - c) * (r - c) + (q - c) * (q - c) <= radius_px * radius_px) {
        s += img[static_cast<size_t>(r * n + q)];
        s2 += img[static_cast<size_t>(r * n + q)] * static_cast<double>(img[static_cast<size_t>(r * n + q)]);
        ++k;
      }
  const double m = s / k;
  if (mean_out) *mean_out = m;
  return std::sqrt(std::max(0.0, s2 / k - m * m));
}

}  // namespace

TEST(CtSim, ProjectorMatchesAnalyticSheppLoganProjections) {
  const CtGeometry g = CtGeometry{.n = 128, .pixel_mm = 1.0}.resolved();
  const auto phantom = shepp_logan(60.0);
  const std::vector<float> analytic = ellipse_projections(phantom, g);
  const std::vector<float> ours = forward_project(rasterize_ellipses(phantom, g, 4), g);
  ASSERT_EQ(ours.size(), analytic.size());
  const float peak = *std::max_element(analytic.begin(), analytic.end());
  // The outer ellipse's longest chord is 2 * 0.92 * 60 mm of density 1 (minus the inner one).
  EXPECT_GT(peak, 20.0f);
  // Pixelization: the bilinear image differs from the ellipses along their edges, most for rays
  // tangent to the thin skull (long chords through partial-volume pixels).
  EXPECT_LT(rms(ours, analytic) / peak, 0.02);
  double max_err = 0;
  for (size_t i = 0; i < ours.size(); ++i) max_err = std::max(max_err, std::fabs(static_cast<double>(ours[i] - analytic[i])));
  EXPECT_LT(max_err / peak, 0.3);
  // A transposed or mirrored angle convention would put a rotated, off-centre ellipse elsewhere:
  // the right convention must fit far better than the mirrored one.
  const CtGeometry g2 = CtGeometry{.n = 64, .pixel_mm = 2.0, .views = 90}.resolved();
  const std::vector<Ellipse> one{{1.0, 40, 10, 15, -5, 30}}, mirrored{{1.0, 40, 10, 15, -5, -30}},
      moved{{1.0, 40, 10, -5, 15, 30}};
  const std::vector<float> p1 = forward_project(rasterize_ellipses(one, g2, 4), g2);
  const double err = rms(p1, ellipse_projections(one, g2));
  EXPECT_LT(err, 0.2 * rms(p1, ellipse_projections(mirrored, g2)));
  EXPECT_LT(err, 0.2 * rms(p1, ellipse_projections(moved, g2)));
  EXPECT_LT(err / *std::max_element(p1.begin(), p1.end()), 0.02);
}

TEST(CtSim, FbpOfAnalyticProjectionsReconstructsSheppLogan) {
  const CtGeometry g = CtGeometry{.n = 128, .pixel_mm = 1.0}.resolved();
  const auto phantom = shepp_logan(60.0);
  const std::vector<float> truth = rasterize_ellipses(phantom, g, 4);
  const std::vector<float> sino = ellipse_projections(phantom, g);
  for (RampWindow w : {RampWindow::RamLak, RampWindow::Hann}) {
    SCOPED_TRACE(ramp_window_name(w));
    const std::vector<float> rec = filtered_back_projection(sino, g, w);
    // Uniform regions of known density (modified Shepp-Logan): brain 0.2, the top ellipse 0.3,
    // the right ventricle 0.0.
    EXPECT_NEAR(patch_mean(rec, g.n, 1.0, 0, 0), 0.2, 0.01);
    EXPECT_NEAR(patch_mean(rec, g.n, 1.0, 0, 0.35 * 60), 0.3, 0.01);
    EXPECT_NEAR(patch_mean(rec, g.n, 1.0, 0.22 * 60, 0), 0.0, 0.015);
    EXPECT_NEAR(patch_mean(rec, g.n, 1.0, 0, 0.7 * 60), 0.2, 0.015);
    EXPECT_NEAR(patch_mean(rec, g.n, 1.0, -58, -58), 0.0, 0.01);  // outside the head
    EXPECT_LT(rms(rec, truth), w == RampWindow::RamLak ? 0.06 : 0.08);  // edges blur, most under the skull
  }
  // The projector and the FBP together.
  const std::vector<float> rec2 = filtered_back_projection(forward_project(truth, g), g, RampWindow::RamLak);
  EXPECT_NEAR(patch_mean(rec2, g.n, 1.0, 0, 0), 0.2, 0.015);
  EXPECT_LT(rms(rec2, truth), 0.07);
}

TEST(CtSim, PoissonSamplesHaveTheRightMeanAndVariance) {
  Rng rng(7);
  for (double mean : {0.5, 3.0, 25.0, 400.0, 50000.0}) {
    SCOPED_TRACE(mean);
    const int n = 40000;
    double s = 0, s2 = 0;
    for (int i = 0; i < n; ++i) {
      const double k = static_cast<double>(poisson_sample(mean, rng));
      ASSERT_GE(k, 0);
      s += k;
      s2 += k * k;
    }
    const double m = s / n, var = s2 / n - m * m;
    EXPECT_NEAR(m, mean, 5 * std::sqrt(mean / n));
    EXPECT_NEAR(var / mean, 1.0, 0.05);
  }
  EXPECT_EQ(poisson_sample(0, rng), 0);
  EXPECT_THROW(poisson_sample(-1, rng), rg::Error);
}

TEST(CtSim, QuarterDoseDoublesTheNoise) {
  // A water disk (0 HU) in air: FBP noise sd scales as 1/sqrt(dose), so 25% dose gives 2x.
  const int64_t n = 64;
  const double d = 4.0, c = 0.5 * (n - 1);
  std::vector<float> hu(static_cast<size_t>(n * n), -1000.0f);
  for (int64_t r = 0; r < n; ++r)
    for (int64_t q = 0; q < n; ++q)
      if ((r - c) * (r - c) + (q - c) * (q - c) <= 26.0 * 26.0) hu[static_cast<size_t>(r * n + q)] = 0.0f;
  LowDoseOptions o;
  o.photons = 2e4;
  double ratio_sum = 0;
  for (uint64_t seed = 1; seed <= 3; ++seed) {
    const LowDosePair p = simulate_low_dose(hu, n, d, o, seed);
    double mf = 0, ml = 0;
    const double sf = sd_in_disk(p.full, n, 16, &mf), sl = sd_in_disk(p.low, n, 16, &ml);
    EXPECT_NEAR(mf, 0.0, 15.0);  // water stays water (a few HU of beam-free bias at most)
    EXPECT_NEAR(ml, 0.0, 25.0);
    EXPECT_GT(sf, 2.0);  // there is noise at full dose too
    ratio_sum += sl / sf;
  }
  EXPECT_NEAR(ratio_sum / 3, 2.0, 0.25);
  // Same seed, same scans; another seed, other noise.
  const LowDosePair a = simulate_low_dose(hu, n, d, o, 5), b = simulate_low_dose(hu, n, d, o, 5),
                    e = simulate_low_dose(hu, n, d, o, 6);
  EXPECT_EQ(a.low, b.low);
  EXPECT_NE(a.low, e.low);
  o.dose_fraction = 0;
  EXPECT_THROW(simulate_low_dose(hu, n, d, o, 1), rg::Error);
}

TEST(MriSim, KspaceTruncationMatchesADirectDft) {
  const int64_t h = 8, w = 6;
  const int f = 2;
  std::vector<float> img(static_cast<size_t>(h * w));
  Rng rng(3);
  for (float& v : img) v = static_cast<float>(rng.uniform(-1, 1));
  const std::vector<float> ours = kspace_truncate(img, h, w, f);
  const int64_t lh = h / f, lw = w / f;
  ASSERT_EQ(ours.size(), static_cast<size_t>(lh * lw));
  // Direct: X[ky, kx] = sum x e^{-2 pi i (ky y / h + kx x / w)} over the kept frequencies
  // (signed, [-floor(l/2), ceil(l/2) - 1]), evaluated at the low-resolution pixel centres
  // (fine coordinates f v + (f - 1)/2), divided by h w (inverse) and multiplied by f^2 / f^2.
  const double pi2 = 2 * std::numbers::pi;
  for (int64_t v = 0; v < lh; ++v)
    for (int64_t u = 0; u < lw; ++u) {
      const double yv = f * v + 0.5 * (f - 1), xu = f * u + 0.5 * (f - 1);
      std::complex<double> acc = 0;
      for (int64_t ky = -lh / 2; ky < (lh + 1) / 2; ++ky)
        for (int64_t kx = -lw / 2; kx < (lw + 1) / 2; ++kx) {
          std::complex<double> X = 0;
          for (int64_t y = 0; y < h; ++y)
            for (int64_t x = 0; x < w; ++x)
              X += static_cast<double>(img[static_cast<size_t>(y * w + x)]) *
                   std::polar(1.0, -pi2 * (static_cast<double>(ky * y) / h + static_cast<double>(kx * x) / w));
          acc += X * std::polar(1.0, pi2 * (ky * yv / h + kx * xu / w));
        }
      EXPECT_NEAR(ours[static_cast<size_t>(v * lw + u)], acc.real() / (h * w), 1e-5) << v << "," << u;
    }
  EXPECT_THROW(kspace_truncate(img, h, w, 4), rg::Error);  // 6 is not divisible by 4
}

TEST(MriSim, KspaceTruncationKeepsBandLimitedContentAndRemovesTheRest) {
  const int64_t n = 32;
  const int f = 4;  // low-resolution grid 8 x 8: frequencies up to 3 cycles per image survive
  const double pi2 = 2 * std::numbers::pi;
  auto low_part = [&](double x, double y) { return 0.3 + 0.5 * std::cos(pi2 * 2 * x / n + 0.4) * std::sin(pi2 * 3 * y / n); };
  std::vector<float> img(static_cast<size_t>(n * n));
  for (int64_t y = 0; y < n; ++y)
    for (int64_t x = 0; x < n; ++x)
      img[static_cast<size_t>(y * n + x)] =
          static_cast<float>(low_part(x, y) + 0.4 * std::cos(pi2 * 9 * x / n) + 0.2 * std::sin(pi2 * 7 * y / n));
  const std::vector<float> low = kspace_truncate(img, n, n, f);
  double max_err = 0;
  for (int64_t v = 0; v < n / f; ++v)
    for (int64_t u = 0; u < n / f; ++u)
      max_err = std::max(max_err, std::fabs(low[static_cast<size_t>(v * (n / f) + u)] -
                                            low_part(f * u + 0.5 * (f - 1), f * v + 0.5 * (f - 1))));
  EXPECT_LT(max_err, 1e-5);  // the 7- and 9-cycle terms (above the 4-cycle cutoff) are gone
}

TEST(MriSim, BicubicReproducesQuadraticsAndBlurDownsampleKeepsConstants) {
  const int64_t n = 16, m = 64;
  auto f = [](double x, double y) { return 0.5 + 0.25 * x - 0.1 * y + 0.02 * x * x - 0.03 * x * y + 0.01 * y * y; };
  std::vector<float> img(static_cast<size_t>(n * n));
  for (int64_t y = 0; y < n; ++y)
    for (int64_t x = 0; x < n; ++x) img[static_cast<size_t>(y * n + x)] = static_cast<float>(f(x, y));
  const std::vector<float> up = resize_bicubic(img, n, n, m, m);
  const double s = static_cast<double>(n) / m;
  for (int64_t v = 12; v < m - 12; ++v)  // away from the repeated edges
    for (int64_t u = 12; u < m - 12; ++u)
      ASSERT_NEAR(up[static_cast<size_t>(v * m + u)], f((u + 0.5) * s - 0.5, (v + 0.5) * s - 0.5), 2e-4) << u << "," << v;
  // Same size: the identity.
  EXPECT_EQ(resize_bicubic(img, n, n, n, n), img);
  // Blur + downsample of a constant is the constant; of a ramp, the ramp at the block centres.
  std::vector<float> ramp(static_cast<size_t>(m * m));
  for (int64_t y = 0; y < m; ++y)
    for (int64_t x = 0; x < m; ++x) ramp[static_cast<size_t>(y * m + x)] = static_cast<float>(0.01 * x);
  const std::vector<float> low = blur_downsample(ramp, m, m, 4);
  EXPECT_NEAR(low[static_cast<size_t>(5 * 16 + 7)], 0.01 * (4 * 7 + 1.5), 1e-5);
  EXPECT_THROW(blur_downsample(ramp, m, m, 3), rg::Error);
}

TEST(ReconPairs, LowDosePhantomPairFileRoundTrip) {
  const fs::path dir = temp_dir("lowdose");
  PhantomOptions po;
  po.dims = {64, 64, 12};
  po.spacing = {5.0, 5.0, 5.0};
  auto subjects = with_body_masks(phantom_subjects(1, 3, po), -500.0);
  PrepareOptions o;
  o.modality = Modality::CT;
  o.window = {kReconHuLow, kReconHuHigh};
  o.crop = CropMode::Body;
  o.size = 32;
  o.split_by = SplitBy::Slab;
  o.slabs = 3;
  o.slab_gap = 0;
  o.progress = false;
  LowDoseOptions ld;
  ld.photons = 5e4;
  o.make_pair = low_dose_ct_pairs(ld);
  o.pairs = "low-dose-ct";
  o.pair_attributes = low_dose_ct_attributes(ld);
  const std::string out = (dir / "ld.h5").string();
  prepare_slices(subjects, o, out);
  SliceDataset ds(out, "train");
  ASSERT_TRUE(ds.has_targets());
  ASSERT_GT(ds.size(), 0);
  EXPECT_EQ(ds.attribute("pairs"), "low-dose-ct");
  EXPECT_EQ(ds.attribute("photons_per_ray"), "50000");
  const int64_t hw = ds.height() * ds.width();
  std::vector<float> in(static_cast<size_t>(hw)), mask(static_cast<size_t>(hw)), ref(static_cast<size_t>(hw));
  double diff = 0, inside = 0;
  for (int64_t i = 0; i < ds.size(); ++i) {
    ds.read(i, in.data(), mask.data(), ref.data());
    for (int64_t k = 0; k < hw; ++k)
      if (mask[static_cast<size_t>(k)] > 0.5f) {
        diff += std::fabs(in[static_cast<size_t>(k)] - ref[static_cast<size_t>(k)]);
        inside += 1;
        // Body tissue in the [-1024, 3072] HU -> [-1, 1] scale: well inside the range.
        ASSERT_GT(ref[static_cast<size_t>(k)], -1.0f);
      }
  }
  ASSERT_GT(inside, 0);
  const double mean_hu = diff / inside * 2048.0;  // |input - reference| in HU
  EXPECT_GT(mean_hu, 3.0);    // the quarter dose is noisier than the full dose...
  EXPECT_LT(mean_hu, 300.0);  // ...but the same anatomy
  // The same file through the preloaded path.
  ds.preload();
  std::vector<float> ref2(static_cast<size_t>(hw));
  ds.read(ds.size() - 1, in.data(), nullptr, ref2.data());
  EXPECT_EQ(ref2, ref);
  // A plain slices file has no targets, and asking for them says so.
  SlicesFile plain;
  plain.height = plain.width = 4;
  plain.subjects = {"a"};
  plain.splits[0].images.assign(16, 0.0f);
  plain.splits[0].masks.assign(16, 0);
  plain.splits[0].subject = {0};
  plain.splits[0].slice = {0};
  write_slices_file((dir / "plain.h5").string(), plain);
  SliceDataset p((dir / "plain.h5").string(), "train");
  EXPECT_FALSE(p.has_targets());
  try {
    p.read(0, in.data(), nullptr, ref.data());
    FAIL() << "expected an error";
  } catch (const rg::Error& e) {
    EXPECT_NE(std::string(e.what()).find("not a pair file"), std::string::npos) << e.what();
  }
  // write_slices_file writes pairs too, and refuses inconsistent targets.
  plain.pairs = true;
  EXPECT_THROW(write_slices_file((dir / "bad.h5").string(), plain), rg::Error);
  EXPECT_FALSE(fs::exists(dir / "bad.h5"));
  plain.splits[0].targets.assign(16, 0.5f);
  write_slices_file((dir / "pairs.h5").string(), plain);
  SliceDataset q((dir / "pairs.h5").string(), "train");
  ASSERT_TRUE(q.has_targets());
  q.read(0, in.data(), nullptr, ref.data());
  EXPECT_EQ(ref[3], 0.5f);
  fs::remove_all(dir);
}

TEST(ReconPairs, SuperresAndUserPairsFromNifti) {
  const fs::path dir = temp_dir("pairs");
  Volume ref;
  ref.dims = {32, 32, 6};
  ref.spacing = {1, 1, 2};
  ref.affine = {{{1, 0, 0, 0}, {0, 1, 0, 0}, {0, 0, 2, 0}, {0, 0, 0, 1}}};
  ref.voxels.resize(32 * 32 * 6);
  for (int64_t k = 0; k < 6; ++k)
    for (int64_t j = 0; j < 32; ++j)
      for (int64_t i = 0; i < 32; ++i)
        ref.at(i, j, k) = (i - 16) * (i - 16) + (j - 16) * (j - 16) < 144 ? static_cast<float>(100 + 3 * i + (i * j) % 7) : 0.0f;
  Volume in = ref;
  for (float& v : in.voxels) v *= 0.9f;
  write_nifti((dir / "ref.nii.gz").string(), ref);
  write_nifti((dir / "in.nii.gz").string(), in);
  PrepareOptions o;
  o.modality = Modality::MRI;
  o.crop = CropMode::None;
  o.size = 32;
  o.split_by = SplitBy::Slab;
  o.slabs = 3;
  o.slab_gap = 0;
  o.progress = false;
  o.pairs = "volume-pairs";
  const std::string out = (dir / "pairs.h5").string();
  prepare_slices(paired_volume_subjects({(dir / "in.nii.gz").string()}, {(dir / "ref.nii.gz").string()}, {}, 0.0), o, out);
  SliceDataset ds(out, "train");
  ASSERT_TRUE(ds.has_targets());
  std::vector<float> a(32 * 32), m(32 * 32), b(32 * 32);
  ds.read(0, a.data(), m.data(), b.data());
  // Both normalized with the reference's range: the input is the darker one inside the body.
  EXPECT_LT(a[16 * 32 + 20], b[16 * 32 + 20]);
  EXPECT_EQ(m[0], 0.0f);
  EXPECT_EQ(m[16 * 32 + 16], 1.0f);

  // A grid mismatch is an error naming both files, and nothing is written.
  Volume small = in;
  small.dims = {32, 32, 5};
  small.voxels.resize(32 * 32 * 5);
  write_nifti((dir / "small.nii.gz").string(), small);
  const std::string bad = (dir / "bad.h5").string();
  try {
    prepare_slices(paired_volume_subjects({(dir / "small.nii.gz").string()}, {(dir / "ref.nii.gz").string()}, {}, 0.0), o, bad);
    FAIL() << "expected an error";
  } catch (const rg::Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("small.nii.gz"), std::string::npos) << msg;
    EXPECT_NE(msg.find("ref.nii.gz"), std::string::npos) << msg;
  }
  EXPECT_FALSE(fs::exists(bad));
  EXPECT_FALSE(fs::exists(bad + ".tmp"));
  // A missing reference names the file.
  EXPECT_THROW(paired_volume_subjects({(dir / "in.nii.gz").string()}, {(dir / "nope.nii.gz").string()}, {}, 0.0), rg::Error);
  EXPECT_THROW(paired_volume_subjects({(dir / "in.nii.gz").string()}, {}, {}, 0.0), rg::Error);

  // Super-resolution: the input is the bicubic upsampling of the truncated slice.
  PrepareOptions s = o;
  s.make_pair = superres_pairs(SrDegradation::Kspace, 4);
  s.pairs = "superres";
  const std::string sr = (dir / "sr.h5").string();
  prepare_slices(with_body_masks(volume_pair_subjects({(dir / "ref.nii.gz").string()}, {(dir / "ref.nii.gz").string()}), 0.0), s, sr);
  SliceDataset d2(sr, "train");
  d2.read(0, a.data(), m.data(), b.data());
  EXPECT_EQ(a, simulate_low_resolution(b, 32, 32, SrDegradation::Kspace, 4));
  EXPECT_GT(rms(a, b), 0.01);
  s.size = 30;
  EXPECT_THROW(prepare_slices(with_body_masks(volume_pair_subjects({(dir / "ref.nii.gz").string()}, {(dir / "ref.nii.gz").string()}), 0.0), s,
                              (dir / "sr30.h5").string()),
               rg::Error);
  EXPECT_FALSE(fs::exists(dir / "sr30.h5"));
  fs::remove_all(dir);
}
