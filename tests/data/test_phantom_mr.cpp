// The phantom's tissue map and MR-like rendering, and the paired translation files.
#include <gtest/gtest.h>

#include <unistd.h>

#include <array>
#include <cmath>
#include <filesystem>

#include "data/phantom.h"
#include "data/prepare.h"
#include "data/slice_dataset.h"
#include "data/slice_geometry.h"
#include "engine/error.h"

using namespace rg::data;
namespace fs = std::filesystem;

namespace {

constexpr double kPi = 3.14159265358979323846;

PhantomOptions small() {
  PhantomOptions o;
  o.dims = {80, 80, 20};
  o.spacing = {4.0, 4.0, 8.0};
  o.lesions = 2;
  return o;
}

// Mean and count of `values` per tissue class.
std::array<std::pair<double, int64_t>, kPhantomTissueClasses> class_means(const Volume& tissue, const Volume& v) {
  std::array<std::pair<double, int64_t>, kPhantomTissueClasses> m{};
  for (size_t i = 0; i < v.voxels.size(); ++i) {
    auto& e = m[static_cast<size_t>(tissue.voxels[i])];
    e.first += v.voxels[i];
    ++e.second;
  }
  for (auto& e : m) e.first /= std::max<int64_t>(1, e.second);
  return m;
}

Volume uniform_tissue(int t, int64_t n = 40) {
  Volume v;
  v.dims = {n, n, 4};
  v.spacing = {2.0, 2.0, 4.0};
  v.voxels.assign(static_cast<size_t>(n * n * 4), static_cast<float>(t));
  return v;
}

}  // namespace

TEST(PhantomTissue, EveryClassAppearsAndMatchesTheCt) {
  const Phantom ph = make_lung_phantom(3, small());
  ASSERT_EQ(ph.tissue.dims, ph.ct.dims);
  const auto m = class_means(ph.tissue, ph.ct);
  for (int t = 0; t < kPhantomTissueClasses; ++t) EXPECT_GT(m[static_cast<size_t>(t)].second, 0) << phantom_tissue_name(t);
  EXPECT_LT(m[kTissueAir].first, -900);
  EXPECT_NEAR(m[kTissueFat].first, -100, 40);
  EXPECT_LT(m[kTissueLung].first, -700);
  EXPECT_GT(m[kTissueBone].first, 250);
  EXPECT_NEAR(m[kTissueSoft].first, 35, 40);
  // Every lung voxel of the LUNA16 mask is lung (or a vessel/lesion painted into it).
  for (size_t i = 0; i < ph.lungs.voxels.size(); ++i)
    if (ph.lungs.voxels[i] > 0) {
      const int t = static_cast<int>(ph.tissue.voxels[i]);
      ASSERT_TRUE(t == kTissueLung || t == kTissueBlood || t == kTissueLesion || t == kTissueHalo) << i;
    }
  // The halo is ground glass on CT (about -450 HU): far above lung, far below the solid core.
  EXPECT_GT(m[kTissueHalo].first, -650);
  EXPECT_LT(m[kTissueHalo].first, -250);
  EXPECT_GT(m[kTissueLesion].first, m[kTissueHalo].first + 200);
  EXPECT_THROW(phantom_tissue_name(kPhantomTissueClasses), rg::Error);
}

TEST(PhantomMr, TissueContrastOrderingT1Like) {
  const Phantom ph = make_lung_phantom(4, small());
  MrOptions clean;
  clean.psf_sigma_mm = 0;
  clean.noise_sigma = 0;
  clean.bias_amplitude = 0;
  const auto m = class_means(ph.tissue, render_phantom_mr(ph.tissue, 4, clean));
  // fat > lesion > soft tissue > blood > halo > bone > lung > air
  const int order[] = {kTissueFat,  kTissueLesion, kTissueSoft, kTissueBlood,
                       kTissueHalo, kTissueBone,   kTissueLung, kTissueAir};
  static_assert(std::size(order) == kPhantomTissueClasses);
  for (size_t i = 0; i + 1 < std::size(order); ++i)
    EXPECT_GT(m[static_cast<size_t>(order[i])].first, m[static_cast<size_t>(order[i + 1])].first)
        << phantom_tissue_name(order[i]) << " vs " << phantom_tissue_name(order[i + 1]);
  // With every effect on, the large tissues keep their order.
  const auto d = class_means(ph.tissue, render_phantom_mr(ph.tissue, 4));
  EXPECT_GT(d[kTissueFat].first, d[kTissueSoft].first);
  EXPECT_GT(d[kTissueSoft].first, d[kTissueLung].first);
  EXPECT_GT(d[kTissueLung].first, d[kTissueAir].first - 1e-9);
}

TEST(PhantomMr, T2ContrastOrderingAndOneSessionWithT1) {
  const Phantom ph = make_lung_phantom(4, small());
  MrOptions clean;
  clean.psf_sigma_mm = 0;
  clean.noise_sigma = 0;
  clean.bias_amplitude = 0;
  clean.contrast = MrContrast::T2;
  const auto m = class_means(ph.tissue, render_phantom_mr(ph.tissue, 4, clean));
  // lesion > fat > halo > soft tissue > bone > lung > blood (flow void) > air
  const int order[] = {kTissueLesion, kTissueFat,  kTissueHalo,  kTissueSoft,
                       kTissueBone,   kTissueLung, kTissueBlood, kTissueAir};
  static_assert(std::size(order) == kPhantomTissueClasses);
  for (size_t i = 0; i + 1 < std::size(order); ++i)
    EXPECT_GT(m[static_cast<size_t>(order[i])].first, m[static_cast<size_t>(order[i + 1])].first)
        << phantom_tissue_name(order[i]) << " vs " << phantom_tissue_name(order[i + 1]);
  // One session: without noise, T2 / T1 per voxel is the ratio of the two tissue tables (the
  // same bias field and jitter draws), so soft tissue's ratio is one constant everywhere.
  MrOptions t1 = clean, t2 = clean;
  t1.contrast = MrContrast::T1;
  t1.bias_amplitude = t2.bias_amplitude = 0.2;
  const Volume a = render_phantom_mr(ph.tissue, 4, t1), b = render_phantom_mr(ph.tissue, 4, t2);
  double lo = 1e9, hi = 0;
  for (size_t i = 0; i < a.voxels.size(); ++i)
    if (static_cast<int>(ph.tissue.voxels[i]) == kTissueSoft) {
      lo = std::min(lo, double(b.voxels[i]) / a.voxels[i]);
      hi = std::max(hi, double(b.voxels[i]) / a.voxels[i]);
    }
  EXPECT_NEAR(hi / lo, 1.0, 1e-5);
  // With noise: the default options render T1, and T2 draws noise of its own.
  MrOptions noisy_t2;
  noisy_t2.contrast = MrContrast::T2;
  const Volume n1 = render_phantom_mr(ph.tissue, 4), n1_again = render_phantom_mr(ph.tissue, 4, MrOptions{});
  const Volume n2 = render_phantom_mr(ph.tissue, 4, noisy_t2);
  EXPECT_EQ(n1.voxels, n1_again.voxels);
  // Air voxels (no signal in either contrast) hold noise alone: different noise, different values.
  int64_t air = 0, same = 0;
  for (size_t i = 0; i < n1.voxels.size(); ++i)
    if (static_cast<int>(ph.tissue.voxels[i]) == kTissueAir) {
      ++air;
      same += n1.voxels[i] == n2.voxels[i];
    }
  ASSERT_GT(air, 100);
  EXPECT_LT(same, air / 100);
}

TEST(PhantomMr, SubjectsDifferAndSameSeedRepeats) {
  const Phantom ph = make_lung_phantom(5, small());
  const Volume a = render_phantom_mr(ph.tissue, 5), b = render_phantom_mr(ph.tissue, 5);
  const Volume c = render_phantom_mr(ph.tissue, 6);
  EXPECT_EQ(a.voxels, b.voxels);
  const auto ma = class_means(ph.tissue, a), mc = class_means(ph.tissue, c);
  // Per-subject intensity variation: some tissue mean moves by more than 1%.
  double most = 0;
  for (int t = 1; t < kPhantomTissueClasses; ++t)
    most = std::max(most, std::fabs(ma[static_cast<size_t>(t)].first / mc[static_cast<size_t>(t)].first - 1));
  EXPECT_GT(most, 0.01);
  EXPECT_EQ(a.affine, ph.tissue.affine);
}

TEST(PhantomMr, BiasFieldIsSmoothAndBounded) {
  MrOptions o;
  o.noise_sigma = 0;
  o.psf_sigma_mm = 0;
  o.tissue_jitter = 0;
  o.bias_amplitude = 0.2;
  const Volume v = render_phantom_mr(uniform_tissue(kTissueSoft), 9, o);
  double lo = 1e9, hi = 0, step = 0;
  const int64_t n = v.dims[0];
  for (size_t i = 0; i < v.voxels.size(); ++i) {
    lo = std::min<double>(lo, v.voxels[i]);
    hi = std::max<double>(hi, v.voxels[i]);
    if (i % static_cast<size_t>(n) != 0) step = std::max(step, std::fabs(v.voxels[i] / v.voxels[i - 1] - 1.0));
  }
  const double base = phantom_mr_intensity(kTissueSoft);
  EXPECT_GE(lo, base / 1.2 - 1e-6);
  EXPECT_LE(hi, base * 1.2 + 1e-6);
  EXPECT_GT(hi / lo, 1.02);   // there is a field
  EXPECT_LT(step, 0.02);      // and it is smooth: neighbours differ by < 2%
}

TEST(PhantomMr, RicianNoiseStatistics) {
  MrOptions o;
  o.noise_sigma = 0.05;
  o.bias_amplitude = 0;
  o.tissue_jitter = 0;
  // Zero signal: Rayleigh, mean sigma sqrt(pi/2), variance (2 - pi/2) sigma^2; never negative.
  const Volume air = render_phantom_mr(uniform_tissue(kTissueAir, 64), 1, o);
  double sum = 0, sq = 0;
  for (float x : air.voxels) {
    ASSERT_GE(x, 0.0f);
    sum += x;
    sq += double(x) * x;
  }
  const double n = static_cast<double>(air.voxels.size());
  const double mean = sum / n, var = sq / n - mean * mean;
  EXPECT_NEAR(mean, 0.05 * std::sqrt(kPi / 2), 0.002);
  EXPECT_NEAR(var, (2 - kPi / 2) * 0.05 * 0.05, 0.0002);
  // High SNR (fat, A = 1): nearly Gaussian around sqrt(A^2 + sigma^2), sd ~ sigma.
  const Volume fat = render_phantom_mr(uniform_tissue(kTissueFat, 64), 1, o);
  sum = sq = 0;
  for (float x : fat.voxels) {
    sum += x;
    sq += double(x) * x;
  }
  const double fm = sum / n, fsd = std::sqrt(sq / n - fm * fm);
  EXPECT_NEAR(fm, std::sqrt(1 + 0.05 * 0.05), 0.004);
  EXPECT_NEAR(fsd, 0.05, 0.004);
}

TEST(PhantomMr, RejectsBadLabels) {
  Volume v = uniform_tissue(kTissueSoft, 8);
  v.voxels[3] = 9;
  EXPECT_THROW(render_phantom_mr(v, 1), rg::Error);
}

TEST(PhantomTranslation, FourFilesShareOneSliceGrid) {
  const fs::path dir = fs::temp_directory_path() / ("rg_translation_" + std::to_string(getpid()));
  fs::remove_all(dir);
  PhantomOptions o;
  o.dims = {48, 48, 6};
  o.spacing = {6.0, 6.0, 10.0};
  const TranslationFiles f = prepare_phantom_translation(dir.string(), "t", 4, 2, 16, 0, o, {}, false);
  for (const char* split : kSplitNames) {
    SliceDataset ct(f.ct, split), mr(f.mr, split), t2(f.mr_t2, split), tissue(f.tissue, split);
    ASSERT_EQ(ct.size(), mr.size()) << split;
    ASSERT_EQ(ct.size(), t2.size()) << split;
    ASSERT_EQ(ct.size(), tissue.size()) << split;
    ASSERT_GT(ct.size(), 0) << split;
    for (int64_t i = 0; i < ct.size(); ++i) {
      ASSERT_EQ(ct.subject(i), mr.subject(i));
      ASSERT_EQ(ct.subject(i), t2.subject(i));
      ASSERT_EQ(ct.slice(i), t2.slice(i));
      ASSERT_EQ(ct.slice(i), tissue.slice(i));
    }
  }
  EXPECT_EQ(read_slices_info(f.ct).attributes.empty(), false);
  // The split is assign_subject_splits with the default fractions and the split seed (prepare_data
  // translation --volumes relies on it to write the test subjects' volumes).
  const auto split = assign_subject_splits(4, {0.7, 0.15, 0.15}, 0);
  for (int sp = 0; sp < 3; ++sp) {
    SliceDataset ds(f.ct, kSplitNames[sp]);
    for (int64_t i = 0; i < ds.size(); ++i) ASSERT_EQ(split[static_cast<size_t>(ds.subject(i))], sp);
  }
  // The CT file maps HU by 1000 x value: air outside the body near -1 (-1000 HU).
  SliceDataset ct(f.ct, "train"), tissue(f.tissue, "train");
  std::vector<float> img(16 * 16), body(16 * 16), cls(16 * 16);
  ct.read(0, img.data(), body.data());
  tissue.read(0, cls.data(), nullptr);
  EXPECT_LT(img[0], -0.9f);
  EXPECT_EQ(body[0], 0.0f);
  // Outside the body the tissue class decodes to 0 (air); the window spans every class.
  EXPECT_NEAR(3.5 * (cls[0] + 1.0), 0.0, 1e-4);
  EXPECT_EQ(preprocessing_from_prepared_file(f.tissue).window,
            (std::array<double, 2>{0.0, static_cast<double>(kPhantomTissueClasses - 1)}));
  // The T2 file is another contrast of the same slices, not a copy of the T1 file.
  SliceDataset t1(f.mr, "train"), t2(f.mr_t2, "train");
  std::vector<float> a(16 * 16), b(16 * 16);
  t1.read(0, a.data(), nullptr);
  t2.read(0, b.data(), nullptr);
  EXPECT_NE(a, b);
  fs::remove_all(dir);
}
