// describe_volume / volume_stats / orientation_code.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "data/volume_info.h"

namespace rg::data {
namespace {

Volume small() {
  Volume v;
  v.dims = {2, 2, 1};
  v.spacing = {0.5, 0.75, 3};
  v.affine = {{{-0.5, 0, 0, 10}, {0, -0.75, 0, 20}, {0, 0, 3, -30}, {0, 0, 0, 1}}};
  v.voxels = {-1000, 0, 40, 1000};
  v.source_dtype = "int16";
  v.source = "/data/ct.mhd";
  return v;
}

TEST(VolumeInfo, StatsSkipNonFinite) {
  Volume v = small();
  v.voxels[1] = NAN;
  const VolumeStats s = volume_stats(v);
  EXPECT_EQ(s.count, 3);
  EXPECT_EQ(s.nonfinite, 1);
  EXPECT_EQ(s.min, -1000);
  EXPECT_EQ(s.max, 1000);
  EXPECT_NEAR(s.mean, 40.0 / 3, 1e-9);
}

TEST(VolumeInfo, OrientationCodes) {
  EXPECT_EQ(orientation_code(small().affine), "LPS");
  std::array<std::array<double, 4>, 4> ras{{{1, 0, 0, 0}, {0, 1, 0, 0}, {0, 0, 1, 0}, {0, 0, 0, 1}}};
  EXPECT_EQ(orientation_code(ras), "RAS");
  std::array<std::array<double, 4>, 4> sag{{{0, 0, -2, 0}, {-0.5, 0, 0, 0}, {0, -0.6, 0, 0}, {0, 0, 0, 1}}};
  EXPECT_EQ(orientation_code(sag), "PIL");
}

TEST(VolumeInfo, TextAndJson) {
  const Volume v = small();
  const std::string text = describe_volume(v, false);
  for (const char* part : {"/data/ct.mhd", "2 x 2 x 1", "0.5 x 0.75 x 3", "int16", "LPS", "min -1000",
                           "max 1000", "mean 10"})
    EXPECT_NE(text.find(part), std::string::npos) << part << " not in\n" << text;
  const auto j = nlohmann::json::parse(describe_volume(v, true));
  EXPECT_EQ(j["dims"], nlohmann::json({2, 2, 1}));
  EXPECT_EQ(j["spacing"][1], 0.75);
  EXPECT_EQ(j["dtype"], "int16");
  EXPECT_EQ(j["affine"][1][3], 20);
  EXPECT_EQ(j["orientation"], "LPS");
  EXPECT_EQ(j["min"], -1000);
  EXPECT_EQ(j["max"], 1000);
  EXPECT_EQ(j["mean"], 10);
  EXPECT_EQ(j["voxels"], 4);
}

}  // namespace
}  // namespace rg::data
