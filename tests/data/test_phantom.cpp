#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>

#include "data/metaimage.h"
#include "data/phantom.h"
#include "engine/error.h"

using namespace rg::data;
namespace fs = std::filesystem;

namespace {

PhantomOptions small() {
  PhantomOptions o;
  o.dims = {80, 80, 20};
  o.spacing = {4.0, 4.0, 8.0};  // same field of view as a larger phantom, fewer voxels
  return o;
}

fs::path temp_dir(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("rg_phantom_" + name + "_" + std::to_string(getpid()));
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

}  // namespace

TEST(Phantom, SameSeedIsIdenticalDifferentSeedIsNot) {
  const Phantom a = make_lung_phantom(11, small());
  const Phantom b = make_lung_phantom(11, small());
  const Phantom c = make_lung_phantom(12, small());
  EXPECT_EQ(a.ct.voxels, b.ct.voxels);
  EXPECT_EQ(a.lungs.voxels, b.lungs.voxels);
  EXPECT_NE(a.ct.voxels, c.ct.voxels);
  EXPECT_NE(a.lungs.voxels, c.lungs.voxels);
  ASSERT_EQ(a.nodules.size(), b.nodules.size());
  for (size_t i = 0; i < a.nodules.size(); ++i) EXPECT_EQ(a.nodules[i].world, b.nodules[i].world);
}

TEST(Phantom, GeometryAndMetadata) {
  const Phantom p = make_lung_phantom(3, small());
  EXPECT_EQ(p.ct.dims, (std::array<int64_t, 3>{80, 80, 20}));
  EXPECT_EQ(p.lungs.dims, p.ct.dims);
  EXPECT_EQ(p.ct.spacing, (std::array<double, 3>{4.0, 4.0, 8.0}));
  // LPS-ordered voxels in a RAS+ affine: i and j point to -x and -y.
  EXPECT_LT(p.ct.affine[0][0], 0);
  EXPECT_LT(p.ct.affine[1][1], 0);
  EXPECT_GT(p.ct.affine[2][2], 0);
  EXPECT_EQ(p.ct.voxels.size(), static_cast<size_t>(80 * 80 * 20));
}

TEST(Phantom, TissueValuesAndLungLabelsArePlausible) {
  const Phantom p = make_lung_phantom(5, small());
  const auto& ct = p.ct;
  const auto& m = p.lungs;
  const int64_t nx = ct.dims[0], ny = ct.dims[1], nz = ct.dims[2];
  std::set<float> labels(m.voxels.begin(), m.voxels.end());
  EXPECT_EQ(labels, (std::set<float>{0.0f, 3.0f, 4.0f}));
  double lung_sum = 0, i3 = 0, i4 = 0;
  int64_t lung_n = 0, n3 = 0, n4 = 0, bone = 0, fat = 0;
  for (int64_t k = 0; k < nz; ++k)
    for (int64_t j = 0; j < ny; ++j)
      for (int64_t i = 0; i < nx; ++i) {
        const float hu = ct.at(i, j, k), l = m.at(i, j, k);
        bone += hu > 500;
        fat += hu > -160 && hu < -40;
        if (l == 0) continue;
        lung_sum += hu;
        ++lung_n;
        if (l == 3) i3 += i, ++n3;
        else i4 += i, ++n4;
        // Inside the body: body tissue (> -300 HU) on both sides along the row.
        bool left = false, right = false;
        for (int64_t q = 0; q < i; ++q) left |= ct.at(q, j, k) > -300;
        for (int64_t q = i + 1; q < nx; ++q) right |= ct.at(q, j, k) > -300;
        ASSERT_TRUE(left && right) << "lung voxel not enclosed by the body at " << i << "," << j << "," << k;
      }
  ASSERT_GT(n3, 100);
  ASSERT_GT(n4, 100);
  const double lung_mean = lung_sum / lung_n;
  EXPECT_GT(lung_mean, -900);  // lung parenchyma ~-850 plus some vessels
  EXPECT_LT(lung_mean, -650);
  // Label 3 (right lung) lies at lower i: voxel i runs from the patient's right to left.
  EXPECT_LT(i3 / n3, i4 / n4);
  EXPECT_GT(bone, 50);
  EXPECT_GT(fat, 50);
  // Air outside the body (a corner), within the noise.
  EXPECT_LT(std::fabs(ct.at(0, 0, nz / 2) + 1000), 100);
  for (float v : ct.voxels) {
    ASSERT_EQ(v, std::round(v));  // integer HU
    ASSERT_GE(v, -1024);
    ASSERT_LE(v, 3071);
  }
}

TEST(Phantom, LesionsAreInsideLungsAndReported) {
  PhantomOptions o = small();
  o.lesions = 3;
  o.noise_hu = 0;
  const Phantom p = make_lung_phantom(9, o);
  ASSERT_EQ(p.lesions.size(), 3u);
  for (const auto& l : p.lesions) {
    EXPECT_EQ(l.kind, "lesion");
    EXPECT_TRUE(l.lung_label == 3 || l.lung_label == 4);
    EXPECT_GE(l.diameter_mm, 10.0);
    const int64_t i = std::llround(l.voxel[0]), j = std::llround(l.voxel[1]), k = std::llround(l.voxel[2]);
    EXPECT_GT(p.ct.at(i, j, k), -200);  // solid core where the lung was ~-850
    // world = affine * voxel
    const double wx = p.ct.affine[0][0] * l.voxel[0] + p.ct.affine[0][3];
    EXPECT_NEAR(wx, l.world[0], 1e-9);
  }
  // Without lesions the same seed gives no lesions.
  EXPECT_TRUE(make_lung_phantom(9, small()).lesions.empty());
}

TEST(Phantom, WritesLuna16LayoutThatReadsBack) {
  const fs::path dir = temp_dir("luna");
  PhantomOptions o = small();
  o.lesions = 1;
  const auto files = write_phantom_luna16(dir.string(), 2, 77, o);
  ASSERT_EQ(files.size(), 2u);
  EXPECT_NE(files[0].uid, files[1].uid);
  for (int s = 0; s < 2; ++s) {
    const auto& f = files[static_cast<size_t>(s)];
    EXPECT_TRUE(fs::exists(dir / "subset0" / (f.uid + ".mhd")));
    EXPECT_TRUE(fs::exists(dir / "subset0" / (f.uid + ".raw")));
    EXPECT_TRUE(fs::exists(dir / "seg-lungs-LUNA16" / (f.uid + ".mhd")));
    EXPECT_TRUE(fs::exists(dir / "seg-lungs-LUNA16" / (f.uid + ".zraw")));
    const Phantom ref = make_lung_phantom(phantom_subject_seed(77, s), o);
    const Volume ct = read_metaimage(f.scan_mhd);
    const Volume mask = read_metaimage(f.mask_mhd);
    EXPECT_EQ(ct.dims, ref.ct.dims);
    EXPECT_EQ(ct.voxels, ref.ct.voxels);
    EXPECT_EQ(mask.voxels, ref.lungs.voxels);
    for (int r = 0; r < 3; ++r)
      for (int c = 0; c < 4; ++c) EXPECT_NEAR(ct.affine[r][c], ref.ct.affine[r][c], 1e-4);
  }
  std::ifstream ann(dir / "annotations.csv");
  std::string header;
  std::getline(ann, header);
  EXPECT_EQ(header, "seriesuid,coordX,coordY,coordZ,diameter_mm");
  EXPECT_TRUE(fs::exists(dir / "lesions.csv"));
  fs::remove_all(dir);
}

// A coarse grid keeps the default field of view, so a small phantom still shows both lungs.
TEST(Phantom, CoarseGridKeepsTheFieldOfViewAndTheLungs) {
  const PhantomOptions defaults;
  const PhantomOptions o = phantom_options_for_grid({48, 48, 12});
  for (int a = 0; a < 3; ++a)
    EXPECT_NEAR(static_cast<double>(o.dims[a]) * o.spacing[a],
                static_cast<double>(defaults.dims[a]) * defaults.spacing[a], 1e-9);
  const Phantom p = make_lung_phantom(5, o);
  std::set<float> labels(p.lungs.voxels.begin(), p.lungs.voxels.end());
  EXPECT_TRUE(labels.count(3.0f) && labels.count(4.0f)) << "both lungs on the coarse grid";
  EXPECT_THROW(phantom_options_for_grid({48, 0, 12}), rg::Error);
}
