// PNG writer/reader (libpng): gray and RGB round trips, 16-bit gray as a volume, bad input.
#include <gtest/gtest.h>

#include <png.h>

#include "data/png_io.h"
#include "data/volume_io.h"
#include "tests/data/format_test_util.h"

namespace rg::data {
namespace {

using testing::expect_error;
using testing::TempDir;

Image8 pattern(int w, int h, int c) {
  Image8 img;
  img.width = w;
  img.height = h;
  img.channels = c;
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int k = 0; k < c; ++k) img.pixels.push_back(static_cast<uint8_t>(x * 7 + y * 13 + k * 50));
  return img;
}

TEST(Png, RoundTripGrayRgbAndAlpha) {
  TempDir dir;
  for (int c : {1, 2, 3, 4}) {
    const Image8 img = pattern(37, 21, c);
    std::string name = "p";
    name += std::to_string(c);
    name += ".png";
    const std::string path = dir.file(name);
    write_png(path, img);
    const auto bytes = testing::read_bytes(path);
    ASSERT_GE(bytes.size(), 8u);
    EXPECT_EQ(png_sig_cmp(bytes.data(), 0, 8), 0);
    const Image8 r = read_png(path);
    EXPECT_EQ(r.width, 37);
    EXPECT_EQ(r.height, 21);
    EXPECT_EQ(r.channels, c);
    EXPECT_EQ(r.pixels, img.pixels) << c << " channels";
  }
}

TEST(Png, GrayPngReadsAsTwoDVolume) {
  TempDir dir;
  const Image8 img = pattern(5, 4, 1);
  write_png(dir.file("g.png"), img);
  const Volume v = read_volume(dir.file("g.png"));
  EXPECT_EQ(v.dims, (std::array<int64_t, 3>{5, 4, 1}));
  EXPECT_EQ(v.at(3, 2, 0), img.pixels[2 * 5 + 3]);
  EXPECT_EQ(v.source_dtype, "uint8");
  write_png(dir.file("rgb.png"), pattern(5, 4, 3));
  expect_error([&] { read_volume(dir.file("rgb.png")); }, {"rgb.png", "gray"});
}

TEST(Png, SixteenBitGrayKeepsValues) {
  TempDir dir;
  // Write a 16-bit gray PNG with libpng's simplified API... which only writes linear 16-bit,
  // so use the low-level writer directly here.
  const std::string path = dir.file("g16.png");
  FILE* f = std::fopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png_create_info_struct(png);
  png_init_io(png, f);
  png_set_IHDR(png, info, 3, 2, 16, PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  const uint16_t vals[6] = {0, 1, 1000, 40000, 65535, 256};
  for (int y = 0; y < 2; ++y) {
    uint8_t row[6];
    for (int x = 0; x < 3; ++x) {
      row[2 * x] = static_cast<uint8_t>(vals[y * 3 + x] >> 8);
      row[2 * x + 1] = static_cast<uint8_t>(vals[y * 3 + x] & 0xff);
    }
    png_write_row(png, row);
  }
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  std::fclose(f);
  const Volume v = read_png_volume(path);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(v.voxels[i], vals[i]);
  EXPECT_EQ(v.source_dtype, "uint16");
  const Image8 img = read_png(path);
  EXPECT_EQ(img.pixels[3], 40000 >> 8);
}

TEST(Png, BadInputThrows) {
  TempDir dir;
  expect_error([&] { read_png(dir.file("none.png")); }, {"none.png"});
  testing::write_bytes(dir.file("junk.png"), std::vector<uint8_t>(100, 'x'));
  expect_error([&] { read_png(dir.file("junk.png")); }, {"junk.png", "not a PNG"});
  write_png(dir.file("t.png"), pattern(64, 64, 3));
  auto bytes = testing::read_bytes(dir.file("t.png"));
  bytes.resize(bytes.size() / 2);
  testing::write_bytes(dir.file("trunc.png"), bytes);
  expect_error([&] { read_png(dir.file("trunc.png")); }, {"trunc.png"});
  Image8 bad = pattern(4, 4, 3);
  bad.pixels.pop_back();
  expect_error([&] { write_png(dir.file("bad.png"), bad); }, {"bad.png"});
  EXPECT_FALSE(std::filesystem::exists(dir.file("bad.png")));
}

}  // namespace
}  // namespace rg::data
