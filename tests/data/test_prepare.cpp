#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <functional>
#include <fstream>
#include <map>
#include <set>

#include "data/prepare.h"
#include "data/slice_dataset.h"
#include "engine/error.h"

using namespace rg::data;
namespace fs = std::filesystem;

namespace {

fs::path temp_dir(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("rg_prepare_" + name + "_" + std::to_string(getpid()));
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

// A W x H x D volume with value f(i, j, k) and the given affine diagonal.
template <typename F>
Volume make_volume(int64_t w, int64_t h, int64_t d, F f, double sx = 1, double sy = 1, double sz = 1) {
  Volume v;
  v.dims = {w, h, d};
  v.spacing = {std::fabs(sx), std::fabs(sy), std::fabs(sz)};
  v.affine = {{{sx, 0, 0, 0}, {0, sy, 0, 0}, {0, 0, sz, 0}, {0, 0, 0, 1}}};
  v.voxels.resize(static_cast<size_t>(w * h * d));
  for (int64_t k = 0; k < d; ++k)
    for (int64_t j = 0; j < h; ++j)
      for (int64_t i = 0; i < w; ++i) v.at(i, j, k) = static_cast<float>(f(i, j, k));
  return v;
}

SubjectSource memory_subject(const std::string& name, Volume image, Volume mask) {
  SubjectSource s;
  s.name = name;
  s.load = [image, mask] { return std::make_pair(image, mask); };
  return s;
}

PrepareOptions quiet_options() {
  PrepareOptions o;
  o.progress = false;
  o.compression = 1;
  return o;
}

}  // namespace

TEST(Prepare, SubjectSplitsPartitionAndAreSeeded) {
  const auto a = assign_subject_splits(10, {0.7, 0.15, 0.15}, 1);
  const auto b = assign_subject_splits(10, {0.7, 0.15, 0.15}, 1);
  const auto c = assign_subject_splits(10, {0.7, 0.15, 0.15}, 2);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  std::map<int, int> count;
  for (int s : a) ++count[s];
  EXPECT_GE(count[0], 6);
  EXPECT_GE(count[1], 1);
  EXPECT_GE(count[2], 1);
  EXPECT_EQ(count[0] + count[1] + count[2], 10);
  // Three subjects: one each.
  const auto t = assign_subject_splits(3, {0.7, 0.15, 0.15}, 0);
  EXPECT_EQ(std::set<int>(t.begin(), t.end()), (std::set<int>{0, 1, 2}));
  // One subject: train.
  EXPECT_EQ(assign_subject_splits(1, {0.7, 0.15, 0.15}, 0), std::vector<int>{0});
}

TEST(Prepare, SlabSplitsNeverPutNeighboursInTwoSplits) {
  for (int gap : {0, 1, 2, 5}) {
    for (uint64_t seed = 0; seed < 5; ++seed) {
      const int64_t n = 137;
      const auto sp = assign_slab_splits(n, 10, gap, {0.7, 0.15, 0.15}, seed);
      ASSERT_EQ(sp.size(), static_cast<size_t>(n));
      std::set<int> present(sp.begin(), sp.end());
      EXPECT_TRUE(present.count(0) && present.count(1) && present.count(2));
      for (int64_t a = 0; a < n; ++a)
        for (int64_t b = a + 1; b < n && b <= a + gap; ++b)
          if (sp[a] >= 0 && sp[b] >= 0) {
            EXPECT_EQ(sp[a], sp[b]) << "slices " << a << "," << b << " gap " << gap;
          }
      // Slabs are contiguous: the split changes only at slab boundaries (at most 9 changes).
      int changes = 0;
      int last = -2;
      for (int s : sp)
        if (s >= 0) {
          if (last >= 0 && s != last) ++changes;
          last = s;
        }
      EXPECT_LE(changes, 9);
    }
  }
}

TEST(Prepare, PercentileAndNormalization) {
  std::vector<float> v;
  for (int i = 0; i <= 100; ++i) v.push_back(static_cast<float>(i));
  EXPECT_DOUBLE_EQ(percentile(v, 0), 0);
  EXPECT_DOUBLE_EQ(percentile(v, 50), 50);
  EXPECT_DOUBLE_EQ(percentile(v, 99.5), 99.5);
  Volume vol = make_volume(101, 1, 1, [](int64_t i, int64_t, int64_t) { return i; });
  PrepareOptions o;
  o.modality = Modality::MRI;
  o.percentiles = {10, 90};
  const auto r = normalization_range(vol, o);
  EXPECT_DOUBLE_EQ(r[0], 10);
  EXPECT_DOUBLE_EQ(r[1], 90);
  o.modality = Modality::CT;
  EXPECT_EQ(normalization_range(vol, o), (std::array<double, 2>{-1000, 400}));
}

// With no crop, no reorientation and the output size equal to the input, every slice is the
// normalized input exactly, and masks are binarized from the labels.
TEST(Prepare, RoundTripIsExactWithoutResampling) {
  const fs::path dir = temp_dir("exact");
  const int64_t W = 16, H = 16, D = 6;
  Volume img = make_volume(W, H, D, [](int64_t i, int64_t j, int64_t k) { return -1000 + 50 * i + 20 * j + 7 * k; });
  Volume msk = make_volume(W, H, D, [](int64_t i, int64_t j, int64_t) { return i < 4 ? 3 : (j < 3 ? 4 : (i > 12 ? 5 : 0)); });
  PrepareOptions o = quiet_options();
  o.crop = CropMode::None;
  o.reorient = false;
  o.size = 16;
  o.labels = {3, 4};
  o.fractions = {1, 0, 0};
  const std::string out = (dir / "exact.h5").string();
  const PrepareSummary sum = prepare_slices({memory_subject("vol", img, msk)}, o, out);
  EXPECT_EQ(sum.splits[0].slices, D);
  EXPECT_FALSE(fs::exists(out + ".tmp"));
  SliceDataset ds(out, "train");
  ASSERT_EQ(ds.size(), D);
  ASSERT_EQ(ds.height(), H);
  ASSERT_EQ(ds.width(), W);
  EXPECT_EQ(ds.attribute("modality"), "ct");
  EXPECT_EQ(ds.attribute("format"), "roentgen-slices");
  EXPECT_EQ(ds.subject_names(), std::vector<std::string>{"vol"});
  // No resampling: a prepared pixel is a voxel (1 mm), the slices 1 mm apart.
  const std::array<double, 3> mm = ds.pixel_spacing_mm(0);
  EXPECT_NEAR(mm[0], 1.0, 1e-9);
  EXPECT_NEAR(mm[1], 1.0, 1e-9);
  EXPECT_NEAR(mm[2], 1.0, 1e-9);
  EXPECT_THROW(ds.pixel_spacing_mm(1), rg::Error);
  std::vector<float> a(W * H), m(W * H);
  for (int64_t s = 0; s < D; ++s) {
    ds.read(s, a.data(), m.data());
    EXPECT_EQ(ds.slice(s), s);
    EXPECT_EQ(ds.subject(s), 0);
    for (int64_t j = 0; j < H; ++j)
      for (int64_t i = 0; i < W; ++i) {
        const double want = std::clamp((img.at(i, j, s) + 1000.0) / 1400.0 * 2.0 - 1.0, -1.0, 1.0);
        ASSERT_NEAR(a[j * W + i], want, 1e-5);
        const float l = msk.at(i, j, s);
        ASSERT_EQ(m[j * W + i], (l == 3 || l == 4) ? 1.0f : 0.0f);
      }
  }
  SliceDataset val(out, "val");
  EXPECT_EQ(val.size(), 0);
  fs::remove_all(dir);
}

// With linear mask resampling the mask is the 0/1 mask resampled like the image: on a two-valued
// image whose value follows the mask voxel for voxel, it is exactly the image below the midpoint
// of the two values. Nearest-neighbour labels break that at staircase corners.
TEST(Prepare, LinearMaskResamplingLabelsWhatTheResampledImageShows) {
  const fs::path dir = temp_dir("mask_resampling");
  const int64_t W = 40, H = 40, D = 2, S = 48;  // upsampled by 48 / 40
  auto inside = [](int64_t i, int64_t j) { return std::hypot(i - 19.3, j - 20.1) < 11.37; };
  Volume img = make_volume(W, H, D, [&](int64_t i, int64_t j, int64_t) { return inside(i, j) ? -850.0 : 40.0; });
  Volume msk = make_volume(W, H, D, [&](int64_t i, int64_t j, int64_t) { return inside(i, j) ? 1.0 : 0.0; });
  auto prepare = [&](MaskResampling how, const std::string& name) {
    PrepareOptions o = quiet_options();
    o.crop = CropMode::None;
    o.reorient = false;
    o.size = S;
    o.fractions = {1, 0, 0};
    o.mask_resampling = how;
    const std::string out = (dir / name).string();
    SubjectSource subject = memory_subject("disc", img, msk);
    subject.load_lesions = [&] { return msk; };  // lesion masks go the same way
    prepare_slices({subject}, o, out);
    return out;
  };
  const std::string nearest = prepare(MaskResampling::Nearest, "nearest.h5");
  const std::string linear = prepare(MaskResampling::Linear, "linear.h5");
  // The normalized values of inside (-850 HU) and outside (+40 HU) in the [-1000, 400] window.
  const double lo = 150.0 / 1400.0 * 2.0 - 1.0, hi = 1040.0 / 1400.0 * 2.0 - 1.0;
  auto violations = [&](const std::string& path, const char* want_attribute, int64_t* mask_pixels) {
    SliceDataset ds(path, "train");
    EXPECT_EQ(ds.attribute("mask_resampling"), want_attribute);
    std::vector<float> a(S * S), m(S * S);
    std::vector<uint8_t> lesions(S * S);
    int64_t wrong = 0, checked = 0;
    *mask_pixels = 0;
    EXPECT_TRUE(ds.has_lesions());
    for (int64_t s = 0; s < ds.size(); ++s) {
      ds.read(s, a.data(), m.data());
      ds.read_lesions(s, lesions.data());
      for (int64_t p = 0; p < S * S; ++p) EXPECT_EQ(lesions[p], m[p] > 0.5f ? 1 : 0) << p;
      for (int64_t p = 0; p < S * S; ++p) {
        const double inside_fraction = (hi - a[p]) / (hi - lo);  // the resampled mask's value
        *mask_pixels += m[p] > 0.5f;
        if (std::fabs(inside_fraction - 0.5) < 1e-4) continue;   // a tie: either label is right
        ++checked;
        wrong += (m[p] > 0.5f) != (inside_fraction > 0.5);
      }
    }
    EXPECT_GT(checked, S * S * D * 99 / 100);
    return wrong;
  };
  int64_t nearest_pixels = 0, linear_pixels = 0;
  EXPECT_EQ(violations(linear, "linear", &linear_pixels), 0);
  EXPECT_GT(violations(nearest, "nearest", &nearest_pixels), 0);
  // Both cover the disc (about pi * (11.37 * 48 / 40)^2 = 585 pixels per slice).
  EXPECT_NEAR(static_cast<double>(linear_pixels) / D, 585.0, 25.0);
  EXPECT_NEAR(static_cast<double>(nearest_pixels) / D, 585.0, 25.0);
  EXPECT_THROW(parse_mask_resampling("cubic"), rg::Error);
  fs::remove_all(dir);
}

// A RAS volume (i -> right) is shown radiologically: columns reversed (patient right on the
// left), rows reversed (anterior at the top).
TEST(Prepare, ReorientsToDisplayConvention) {
  const fs::path dir = temp_dir("orient");
  Volume img = make_volume(8, 8, 3, [](int64_t i, int64_t j, int64_t) { return 10 * i + j; });
  Volume msk = make_volume(8, 8, 3, [](int64_t i, int64_t j, int64_t) { return i == 1 && j == 2; });
  PrepareOptions o = quiet_options();
  o.modality = Modality::CT;
  o.window = {0, 100};
  o.crop = CropMode::None;
  o.size = 8;
  o.fractions = {1, 0, 0};
  const std::string out = (dir / "o.h5").string();
  prepare_slices({memory_subject("ras", img, msk)}, o, out);
  SliceDataset ds(out, "train");
  std::vector<float> a(64), m(64);
  ds.read(0, a.data(), m.data());
  for (int64_t r = 0; r < 8; ++r)
    for (int64_t c = 0; c < 8; ++c)
      EXPECT_NEAR(a[r * 8 + c], (10.0 * (7 - c) + (7 - r)) / 50.0 - 1.0, 1e-5);
  EXPECT_EQ(m[(7 - 2) * 8 + (7 - 1)], 1.0f);
  fs::remove_all(dir);
}

TEST(Prepare, PhantomSubjectsSplitBySubjectWithoutLeaks) {
  const fs::path dir = temp_dir("phantom");
  PhantomOptions po;
  po.dims = {64, 64, 10};
  po.spacing = {5.0, 5.0, 12.0};
  PrepareOptions o = quiet_options();
  o.labels = {3, 4};
  o.size = 32;
  o.seed = 4;
  const std::string out = (dir / "p.h5").string();
  const PrepareSummary sum = prepare_slices(phantom_subjects(5, 21, po), o, out);
  EXPECT_EQ(sum.subjects, 5);
  std::array<std::set<int32_t>, 3> subjects;
  int64_t total = 0;
  for (int s = 0; s < 3; ++s) {
    SliceDataset ds(out, kSplitNames[s]);
    EXPECT_EQ(ds.size(), sum.splits[s].slices);
    EXPECT_GT(ds.size(), 0) << kSplitNames[s];
    total += ds.size();
    std::vector<float> a(32 * 32), m(32 * 32);
    double mask_sum = 0;
    for (int64_t i = 0; i < ds.size(); ++i) {
      subjects[s].insert(ds.subject(i));
      ds.read(i, a.data(), m.data());
      for (float v : a) ASSERT_TRUE(v >= -1.0f && v <= 1.0f);
      for (float v : m) ASSERT_TRUE(v == 0.0f || v == 1.0f);
      for (float v : m) mask_sum += v;
    }
    EXPECT_GT(mask_sum, 0);
  }
  for (int a = 0; a < 3; ++a)
    for (int b = a + 1; b < 3; ++b)
      for (int32_t x : subjects[a]) EXPECT_EQ(subjects[b].count(x), 0u) << "subject " << x << " in two splits";
  EXPECT_EQ(subjects[0].size() + subjects[1].size() + subjects[2].size(), 5u);
  EXPECT_EQ(total, sum.splits[0].slices + sum.splits[1].slices + sum.splits[2].slices);
  // `prepare_data info` names each split's subjects: the names of the rows the slices point to.
  const SlicesFileInfo info = read_slices_info(out);
  const auto split_subjects = split_subject_names(out);
  for (int s = 0; s < 3; ++s) {
    std::set<std::string> want;
    for (int32_t x : subjects[s]) want.insert(info.subjects.at(static_cast<size_t>(x)));
    const auto& got = split_subjects[static_cast<size_t>(s)];
    EXPECT_EQ(std::set<std::string>(got.begin(), got.end()), want) << kSplitNames[s];
    EXPECT_EQ(got.size(), want.size());
  }
  EXPECT_NE(describe_slices_file(out, false).find("test subjects: " + split_subjects[2][0]), std::string::npos);
  // The same inputs give the same file contents.
  const std::string out2 = (dir / "p2.h5").string();
  prepare_slices(phantom_subjects(5, 21, po), o, out2);
  SliceDataset d1(out, "val"), d2(out2, "val");
  ASSERT_EQ(d1.size(), d2.size());
  std::vector<float> x(32 * 32), y(32 * 32);
  d1.read(0, x.data(), nullptr);
  d2.read(0, y.data(), nullptr);
  EXPECT_EQ(x, y);
  fs::remove_all(dir);
}

TEST(Prepare, SingleVolumeSplitBySlabKeepsSlabsApart) {
  const fs::path dir = temp_dir("slab");
  // MRI-like: a bright ellipsoid "head" with a "brain" mask inside.
  auto head = [](int64_t i, int64_t j, int64_t k) {
    const double x = (i - 20) / 16.0, y = (j - 22) / 18.0, z = (k - 30) / 24.0;
    return x * x + y * y + z * z < 1 ? 200.0 + i : 0.0;
  };
  Volume img = make_volume(40, 44, 60, head);
  Volume msk = make_volume(40, 44, 60, [&](int64_t i, int64_t j, int64_t k) {
    const double x = (i - 20) / 12.0, y = (j - 22) / 14.0, z = (k - 30) / 18.0;
    return x * x + y * y + z * z < 1 ? 1.0 : 0.0;
  });
  PrepareOptions o = quiet_options();
  o.modality = Modality::MRI;
  o.crop = CropMode::Body;
  o.margin_mm = 2;
  o.size = 24;
  o.split_by = SplitBy::Slab;
  o.slabs = 6;
  o.slab_gap = 3;
  const std::string out = (dir / "s.h5").string();
  const PrepareSummary sum = prepare_slices({memory_subject("head", img, msk)}, o, out);
  EXPECT_GT(sum.dropped_gap_slices, 0);
  std::array<std::vector<int32_t>, 3> slices;
  for (int s = 0; s < 3; ++s) {
    SliceDataset ds(out, kSplitNames[s]);
    EXPECT_GT(ds.size(), 0);
    for (int64_t i = 0; i < ds.size(); ++i) slices[s].push_back(ds.slice(i));
  }
  for (int a = 0; a < 3; ++a)
    for (int b = 0; b < 3; ++b)
      if (a != b) {
        for (int32_t x : slices[a])
          for (int32_t y : slices[b]) {
            ASSERT_GT(std::abs(x - y), 3) << kSplitNames[a] << " " << x << " vs " << kSplitNames[b] << " " << y;
          }
      }
  // Body crop: the z range stops where the head ends (+ margin), not at the volume's ends.
  int32_t lo = 1000, hi = -1;
  for (const auto& v : slices)
    for (int32_t x : v) lo = std::min(lo, x), hi = std::max(hi, x);
  EXPECT_GE(lo, 0);
  EXPECT_LE(hi, 59);
  EXPECT_GT(lo, 0);
  EXPECT_LT(hi, 59);
  fs::remove_all(dir);
}

TEST(Prepare, SizeMismatchThrowsAndLeavesNoOutput) {
  const fs::path dir = temp_dir("mismatch");
  Volume img = make_volume(8, 8, 4, [](int64_t, int64_t, int64_t) { return 0; });
  Volume msk = make_volume(8, 8, 5, [](int64_t, int64_t, int64_t) { return 0; });
  SubjectSource s = memory_subject("bad", img, msk);
  s.image_path = "image.nii.gz";
  s.mask_path = "mask.nii.gz";
  const std::string out = (dir / "bad.h5").string();
  try {
    prepare_slices({s}, quiet_options(), out);
    FAIL() << "expected an error";
  } catch (const rg::Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("image.nii.gz"), std::string::npos) << msg;
    EXPECT_NE(msg.find("mask.nii.gz"), std::string::npos) << msg;
    EXPECT_NE(msg.find("8x8x4"), std::string::npos) << msg;
  }
  EXPECT_FALSE(fs::exists(out));
  EXPECT_FALSE(fs::exists(out + ".tmp"));
  fs::remove_all(dir);
}

TEST(Prepare, ReadingBadFilesNamesTheFile) {
  const fs::path dir = temp_dir("badfiles");
  const std::string missing = (dir / "missing.h5").string();
  auto expect_error_naming = [](const std::string& path, const char* what) {
    try {
      SliceDataset ds(path, "train");
      ADD_FAILURE() << "expected an error for " << what;
    } catch (const rg::Error& e) {
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    }
  };
  expect_error_naming(missing, "a missing file");
  const std::string garbage = (dir / "garbage.h5").string();
  std::ofstream(garbage) << "this is not HDF5 at all";
  expect_error_naming(garbage, "a non-HDF5 file");
  // A real prepared file, truncated.
  Volume img = make_volume(8, 8, 4, [](int64_t i, int64_t, int64_t) { return i; });
  PrepareOptions o = quiet_options();
  o.crop = CropMode::None;
  o.size = 8;
  o.compression = 0;
  const std::string good = (dir / "good.h5").string();
  prepare_slices({memory_subject("v", img, img)}, o, good);
  EXPECT_THROW(SliceDataset(good, "nope"), rg::Error);
  const std::string cut = (dir / "cut.h5").string();
  fs::copy_file(good, cut);
  fs::resize_file(cut, fs::file_size(good) / 2);
  expect_error_naming(cut, "a truncated file");
  fs::remove_all(dir);
}

// Interleaved slabs: validation and test each reach from the lower third to the upper third of
// the volume, the end slabs are training slabs, different splits never touch (a gap of dropped
// slices between them), and the seed decides the layout.
TEST(Prepare, InterleavedSplitsSpreadValidationAndTestOverTheVolume) {
  const int64_t n = 150;
  const auto split = assign_interleaved_splits(n, 20, 4, {0.7, 0.15, 0.15}, 3);
  ASSERT_EQ(static_cast<int64_t>(split.size()), n);
  for (int s : {1, 2}) {
    int64_t first = n, last = -1, count = 0;
    for (int64_t z = 0; z < n; ++z) {
      if (split[static_cast<size_t>(z)] != s) continue;
      first = std::min(first, z);
      last = std::max(last, z);
      ++count;
    }
    EXPECT_GT(count, 0) << "split " << s;
    EXPECT_LT(first, n / 3) << "split " << s << " starts late";
    EXPECT_GT(last, 2 * n / 3) << "split " << s << " ends early";
  }
  for (int64_t z = 0; z + 1 < n; ++z) {
    const int a = split[static_cast<size_t>(z)], b = split[static_cast<size_t>(z + 1)];
    EXPECT_FALSE(a >= 0 && b >= 0 && a != b) << "splits " << a << " and " << b << " touch at " << z;
  }
  EXPECT_EQ(split, assign_interleaved_splits(n, 20, 4, {0.7, 0.15, 0.15}, 3));
  // The volume's ends are training slices, for every seed.
  for (uint64_t seed = 0; seed < 10; ++seed) {
    const auto sp = assign_interleaved_splits(n, 10, 4, {0.6, 0.2, 0.2}, seed);
    EXPECT_EQ(sp.front(), 0) << "seed " << seed;
    EXPECT_EQ(sp.back(), 0) << "seed " << seed;
  }
  EXPECT_THROW(assign_interleaved_splits(n, 0, 4, {0.7, 0.15, 0.15}, 3), rg::Error);
  EXPECT_EQ(parse_split_by("interleaved"), SplitBy::Interleaved);
  EXPECT_STREQ(split_by_name(SplitBy::Interleaved), "interleaved");
}

// K folds over interleaved slabs: across the folds every interior slab is tested exactly once,
// each fold's validation and test are disjoint, spread from the lower to the upper part of the
// volume and never touch each other; the end slabs always train. Colin27's table layout (181
// slices, 10 slabs, gap 4, seed 0) is fold 2 of 4, so its runs count as that fold.
TEST(Prepare, InterleavedFoldsTestEveryInteriorSlabOnce) {
  const int64_t n = 181;
  const int folds = 4;
  std::vector<int> tested(static_cast<size_t>(n), 0);
  for (int k = 0; k < folds; ++k) {
    const auto split = assign_interleaved_fold(n, 10, 4, folds, k);
    ASSERT_EQ(static_cast<int64_t>(split.size()), n);
    EXPECT_EQ(split.front(), 0) << "fold " << k;
    EXPECT_EQ(split.back(), 0) << "fold " << k;
    for (int s : {1, 2}) {
      int64_t first = n, last = -1;
      for (int64_t z = 0; z < n; ++z)
        if (split[static_cast<size_t>(z)] == s) first = std::min(first, z), last = std::max(last, z);
      EXPECT_LT(first, n / 2) << "fold " << k << " split " << s;
      EXPECT_GT(last, n / 2) << "fold " << k << " split " << s;
    }
    for (int64_t z = 0; z < n; ++z) {
      if (split[static_cast<size_t>(z)] == 2) ++tested[static_cast<size_t>(z)];
      if (z + 1 < n) {
        const int a = split[static_cast<size_t>(z)], b = split[static_cast<size_t>(z + 1)];
        EXPECT_FALSE(a >= 0 && b >= 0 && a != b) << "fold " << k << ": splits touch at " << z;
      }
    }
  }
  // The slabs start at slices 0, 18, 36, ..., 162: the end slabs are never tested, and every
  // interior slice is tested in at most one fold. A test slab's neighbours are of other splits,
  // so it loses 2 slices to the gap at each end: 144 interior slices - 8 slabs * 4 are tested.
  int64_t once = 0;
  for (int64_t z = 0; z < n; ++z) {
    EXPECT_LE(tested[static_cast<size_t>(z)], 1) << "slice " << z;
    if (z < 18 || z >= 162) {
      EXPECT_EQ(tested[static_cast<size_t>(z)], 0) << "end slice " << z;
    }
    once += tested[static_cast<size_t>(z)];
  }
  EXPECT_EQ(once, 144 - 8 * 4);
  EXPECT_EQ(assign_interleaved_fold(n, 10, 4, 4, 2), assign_interleaved_splits(n, 10, 4, {0.6, 0.2, 0.2}, 0));
  EXPECT_THROW(assign_interleaved_fold(n, 10, 4, 3, 0), rg::Error);  // 3 does not divide 8
  EXPECT_THROW(assign_interleaved_fold(n, 10, 4, 4, 4), rg::Error);
  EXPECT_THROW(assign_interleaved_fold(n, 10, 4, 2, 0), rg::Error);
  EXPECT_NO_THROW(assign_interleaved_fold(n, 11, 4, 3, 1));
}

// prepare_slices with --folds: the file records the fold (train_seg prints it) and no fractions;
// folds without the interleaved split, or a fold out of range, are refused before anything is
// written.
TEST(Prepare, FoldsAreRecordedAndNeedTheInterleavedSplit) {
  const fs::path dir = temp_dir("folds");
  Volume img = make_volume(8, 8, 40, [](int64_t i, int64_t j, int64_t k) { return i + j + k; });
  Volume msk = make_volume(8, 8, 40, [](int64_t i, int64_t, int64_t) { return i > 3; });
  PrepareOptions o = quiet_options();
  o.modality = Modality::CT;
  o.window = {0, 100};
  o.crop = CropMode::None;
  o.size = 8;
  o.split_by = SplitBy::Interleaved;
  o.slabs = 10;
  o.slab_gap = 0;
  o.folds = 4;
  o.fold = 1;
  const std::string out = (dir / "f.h5").string();
  const PrepareSummary sum = prepare_slices({memory_subject("v", img, msk)}, o, out);
  // 40 slices in 10 slabs of 4: fold 1 tests interior slabs 1 and 5 (slices 8-11, 24-27) and
  // validates on interior slabs 0 and 4 (slices 4-7, 20-23).
  EXPECT_EQ(sum.splits[0].slices, 24);
  EXPECT_EQ(sum.splits[1].slices, 8);
  EXPECT_EQ(sum.splits[2].slices, 8);
  SliceDataset ds(out, "test");
  EXPECT_EQ(ds.attribute("folds"), "4");
  EXPECT_EQ(ds.attribute("fold"), "1");
  EXPECT_EQ(ds.attribute("split_fractions"), "");
  const std::string refused = (dir / "refused.h5").string();
  for (auto bad : {std::function<void(PrepareOptions&)>([](PrepareOptions& p) { p.split_by = SplitBy::Slab; }),
                   std::function<void(PrepareOptions&)>([](PrepareOptions& p) { p.fold = 4; }),
                   std::function<void(PrepareOptions&)>([](PrepareOptions& p) { p.folds = 3; })}) {
    PrepareOptions b = o;
    bad(b);
    EXPECT_THROW(prepare_slices({memory_subject("v", img, msk)}, b, refused), rg::Error);
    EXPECT_FALSE(fs::exists(refused));
    EXPECT_FALSE(fs::exists(refused + ".tmp"));
  }
  fs::remove_all(dir);
}
