// Synthetic lesions: inside the organ, of the drawn size, in the organ's intensity range (not a
// threshold's job), deterministic per seed, refused on mismatched grids.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "data/lesions.h"
#include "engine/error.h"

namespace rg::data {
namespace {

// A 40^3 volume at 1 x 1 x 2 mm: a ball "organ" of radius 18 mm with a smooth intensity ramp.
void make_organ(Volume& image, Volume& organ) {
  image.dims = organ.dims = {40, 40, 40};
  image.spacing = organ.spacing = {1.0, 1.0, 2.0};
  image.voxels.assign(40 * 40 * 40, 0.0f);
  organ.voxels.assign(40 * 40 * 40, 0.0f);
  image.source = "image.nii";
  organ.source = "organ.nii";
  for (int k = 0; k < 40; ++k)
    for (int j = 0; j < 40; ++j)
      for (int i = 0; i < 40; ++i) {
        const double x = i - 20.0, y = j - 20.0, z = 2.0 * (k - 20.0);
        const size_t idx = static_cast<size_t>(i + 40 * (j + 40 * k));
        if (x * x + y * y + z * z <= 18.0 * 18.0) {
          organ.voxels[idx] = 1.0f;
          image.voxels[idx] = static_cast<float>(100 + i);  // 102 .. 138 inside
        }
      }
}

TEST(Lesions, InsideTheOrganInTheOrgansRangeAndOfTheDrawnSize) {
  Volume image, organ;
  make_organ(image, organ);
  const Volume before = image;
  LesionOptions o;
  o.count = 2;
  o.min_diameter_mm = 6;
  o.max_diameter_mm = 10;
  o.seed = 4;
  const LesionResult r = insert_lesions(image, organ, o);
  ASSERT_EQ(r.diameters_mm.size(), 2u);
  int64_t lesion_voxels = 0;
  for (size_t i = 0; i < image.voxels.size(); ++i) {
    if (r.mask.voxels[i] > 0) {
      ++lesion_voxels;
      EXPECT_GT(organ.voxels[i], 0.5f) << "lesion voxel outside the organ";
      EXPECT_GE(image.voxels[i], 102.0f - 1e-3f);
      EXPECT_LE(image.voxels[i], 138.0f + 1e-3f);
    }
    if (organ.voxels[i] <= 0.5f) {
      EXPECT_EQ(image.voxels[i], before.voxels[i]) << "outside changed";
    }
  }
  // Two blobs of 6-10 mm diameter at 1 x 1 x 2 mm voxels: between the volume of two 3 mm-radius
  // spheres shrunk by the irregularity and two 5 mm ones grown by it.
  const double voxel_mm3 = 2.0;
  const double small = 2 * 4.0 / 3 * 3.14159 * std::pow(3 * 0.75, 3) / voxel_mm3;
  const double large = 2 * 4.0 / 3 * 3.14159 * std::pow(5 * 1.25, 3) / voxel_mm3;
  EXPECT_GT(lesion_voxels, 0.5 * small);
  EXPECT_LT(lesion_voxels, large);
  EXPECT_NE(image.voxels, before.voxels);
}

TEST(Lesions, SameSeedSameLesionsOtherSeedOtherLesions) {
  Volume a, organ, b, c;
  make_organ(a, organ);
  b = a;
  c = a;
  LesionOptions o;
  o.seed = 11;
  const LesionResult ra = insert_lesions(a, organ, o);
  const LesionResult rb = insert_lesions(b, organ, o);
  EXPECT_EQ(a.voxels, b.voxels);
  EXPECT_EQ(ra.mask.voxels, rb.mask.voxels);
  o.seed = 12;
  insert_lesions(c, organ, o);
  EXPECT_NE(a.voxels, c.voxels);
}

TEST(Lesions, BadInputIsRefusedNamingTheVolumes) {
  Volume image, organ;
  make_organ(image, organ);
  Volume other = organ;
  other.dims = {40, 40, 20};
  other.voxels.resize(40 * 40 * 20);
  try {
    insert_lesions(image, other, {});
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("organ.nii"), std::string::npos) << e.what();
  }
  Volume empty = organ;
  std::fill(empty.voxels.begin(), empty.voxels.end(), 0.0f);
  EXPECT_THROW(insert_lesions(image, empty, {}), Error);
  EXPECT_THROW(insert_lesions(image, organ, {.min_diameter_mm = 5, .max_diameter_mm = 2}), Error);
}

}  // namespace
}  // namespace rg::data
