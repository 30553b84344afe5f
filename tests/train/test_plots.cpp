// Plots: charts and segmentation grids are valid PNGs (read back with libpng directly), overlay
// colours sit where they should, degenerate series do not crash, bad paths throw naming the path.
#include <gtest/gtest.h>
#include <png.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "train/plots.h"
#include "engine/error.h"

namespace rg::train {
namespace {

namespace fs = std::filesystem;

struct Png {
  int width = 0, height = 0;
  std::vector<uint8_t> rgb;
  const uint8_t* at(int x, int y) const { return &rgb[(static_cast<size_t>(y) * width + x) * 3]; }
};

// Independent of data/png_io: libpng's simplified reader, converted to RGB.
Png read_rgb(const std::string& path) {
  png_image image;
  std::memset(&image, 0, sizeof(image));
  image.version = PNG_IMAGE_VERSION;
  EXPECT_TRUE(png_image_begin_read_from_file(&image, path.c_str())) << path << ": " << image.message;
  Png out;
  out.width = static_cast<int>(image.width);
  out.height = static_cast<int>(image.height);
  image.format = PNG_FORMAT_RGB;
  out.rgb.resize(PNG_IMAGE_SIZE(image));
  EXPECT_TRUE(png_image_finish_read(&image, nullptr, out.rgb.data(), 0, nullptr)) << image.message;
  return out;
}

std::string temp_dir() {
  const fs::path d = fs::temp_directory_path() / ("rg_plots_test_" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d.string();
}

class PlotsTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = temp_dir(); }
  void TearDown() override {
    // RG_KEEP_PLOTS=1 keeps the files for a look.
    if (std::getenv("RG_KEEP_PLOTS") == nullptr) fs::remove_all(dir_);
  }
  std::string path(const std::string& name) const { return dir_ + "/" + name; }
  std::string dir_;
};

std::vector<Series> loss_curves() {
  Series d{"D loss", {}, {}}, ga{"G adversarial", {}, {}}, gs{"G seg (BCE+Dice)", {}, {}};
  for (int e = 1; e <= 40; ++e) {
    d.x.push_back(e), ga.x.push_back(e), gs.x.push_back(e);
    d.y.push_back(0.69 - 0.2 * (1 - std::exp(-e / 10.0)) + 0.02 * std::sin(e));
    ga.y.push_back(0.7 + 0.5 * (1 - std::exp(-e / 8.0)) + 0.03 * std::cos(e * 1.3));
    gs.y.push_back(1.2 * std::exp(-e / 12.0) + 0.1);
  }
  return {d, ga, gs};
}

bool file_count_is(const std::string& dir, size_t n) {
  size_t c = 0;
  for (auto it = fs::directory_iterator(dir); it != fs::directory_iterator(); ++it) ++c;
  return c == n;
}

TEST_F(PlotsTest, LineChartIsValidPngWithRequestedSize) {
  const std::string p = path("loss.png");
  write_line_chart_png(p, "Training losses", loss_curves(), "epoch", "loss");
  const Png img = read_rgb(p);
  EXPECT_EQ(img.width, 800);
  EXPECT_EQ(img.height, 500);
  EXPECT_TRUE(file_count_is(dir_, 1));  // no temporary left behind
  // Corners are background white; some pixels carry the first series' colour (31, 119, 180).
  EXPECT_EQ(img.at(0, 0)[0], 255);
  EXPECT_EQ(img.at(799, 499)[2], 255);
  size_t blue = 0, orange = 0;
  for (int y = 0; y < img.height; ++y)
    for (int x = 0; x < img.width; ++x) {
      const uint8_t* c = img.at(x, y);
      blue += c[0] == 31 && c[1] == 119 && c[2] == 180;
      orange += c[0] == 255 && c[1] == 127 && c[2] == 14;
    }
  EXPECT_GT(blue, 200u);
  EXPECT_GT(orange, 200u);

  // Other sizes and a log axis.
  write_line_chart_png(p, "val Dice", {{"val Dice", {1, 2, 3, 4}, {0.2, 0.5, 0.61, 0.7}}}, "epoch",
                       "Dice", 320, 200);
  EXPECT_EQ(read_rgb(p).width, 320);
  write_line_chart_png(p, "log", loss_curves(), "epoch", "loss", 640, 400, /*log_y=*/true);
  EXPECT_EQ(read_rgb(p).height, 400);
}

TEST_F(PlotsTest, LineChartSurvivesEmptyNanInfAndDegenerateSeries) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  const std::string p = path("odd.png");
  const std::vector<std::vector<Series>> cases = {
      {},                                                  // no series at all
      {{"empty", {}, {}}},                                 // a series without points
      {{"all nan", {1, 2, 3}, {nan, nan, nan}}},           // nothing drawable
      {{"gaps", {1, 2, 3, 4, 5}, {1, nan, 2, inf, -inf}}},  // isolated points
      {{"nan x", {nan, 1, 2}, {1, 2, 3}}},
      {{"flat", {1, 2, 3}, {5, 5, 5}}},                    // zero y range
      {{"one point", {3}, {0.25}}},                        // zero x and y range
      {{"zeros", {0, 1}, {0, 0}}},
      {{"huge", {0, 1e9}, {1e-9, 1e12}}, {"", {0, 1}, {1, 2}}},  // extreme values, unnamed
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    for (bool log_y : {false, true}) {
      SCOPED_TRACE("case " + std::to_string(i) + (log_y ? " log" : ""));
      EXPECT_NO_THROW(write_line_chart_png(p, "odd", cases[i], "x", "y", 400, 300, log_y));
      const Png img = read_rgb(p);
      EXPECT_EQ(img.width, 400);
      EXPECT_EQ(img.height, 300);
    }
  }
  // Mismatched x / y lengths are an error naming the series and the path.
  try {
    write_line_chart_png(p, "bad", {{"loss", {1, 2}, {1}}}, "x", "y");
    FAIL() << "mismatched series accepted";
  } catch (const rg::Error& e) {
    EXPECT_NE(std::string(e.what()).find("loss"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
  }
  EXPECT_THROW(render_line_chart("t", {}, "x", "y", 10, 10), rg::Error);
}

TEST_F(PlotsTest, BadPathsThrowNamingThePath) {
  const std::string bad = path("no/such/dir/chart.png");
  try {
    write_line_chart_png(bad, "t", loss_curves(), "x", "y");
    FAIL() << "write to a missing directory succeeded";
  } catch (const rg::Error& e) {
    EXPECT_NE(std::string(e.what()).find(bad), std::string::npos) << e.what();
  }
  SegGridRow row{4, 4, std::vector<float>(16, 0.0f), std::vector<float>(16, 0.0f),
                 std::vector<float>(16, 0.0f)};
  const std::string bad_grid = path("missing/grid.png");
  try {
    write_segmentation_grid_png(bad_grid, {row});
    FAIL() << "write to a missing directory succeeded";
  } catch (const rg::Error& e) {
    EXPECT_NE(std::string(e.what()).find(bad_grid), std::string::npos) << e.what();
  }
  EXPECT_THROW(write_line_chart_png("", "t", {}, "x", "y"), rg::Error);
}

TEST_F(PlotsTest, SegmentationGridOverlayColours) {
  // 8 x 8 rows: image is a horizontal ramp; target = left half, prediction = top half.
  const int H = 8, W = 8;
  SegGridRow row;
  row.height = H;
  row.width = W;
  for (int y = 0; y < H; ++y)
    for (int x = 0; x < W; ++x) {
      row.image.push_back(-1.0f + 2.0f * x / (W - 1));
      row.target.push_back(x < 4 ? 1.0f : 0.0f);
      row.prob.push_back(y < 4 ? 0.9f : 0.1f);
    }
  SegGridRow second = row;
  for (float& v : second.image) v = 0.0f;  // uniform mid gray
  SegGridOptions opt;
  opt.scale = 4;
  const std::string p = path("grid.png");
  write_segmentation_grid_png(p, {row, second}, opt);
  const Png img = read_rgb(p);
  const int sep = kGridSeparatorWidth, header = seg_grid_header_height(opt);
  const int cw = W * 4, ch = H * 4;
  EXPECT_EQ(img.width, sep + 3 * (cw + sep));
  EXPECT_EQ(img.height, header + sep + 2 * (ch + sep));
  EXPECT_GT(header, 0);

  // Pixel (x, y) of cell (r, c), sampled at the centre of its scale x scale block.
  auto cell = [&](int r, int c, int x, int y) {
    return img.at(sep + c * (cw + sep) + x * 4 + 2, header + sep + r * (ch + sep) + y * 4 + 2);
  };
  auto is_gray = [](const uint8_t* p) { return p[0] == p[1] && p[1] == p[2]; };
  // Row 1 (uniform image value 0 -> gray 128).
  const uint8_t* g = cell(1, 0, 6, 6);
  EXPECT_TRUE(is_gray(g));
  EXPECT_NEAR(g[0], 128, 1);
  // Column 2 (ground truth): gray where the target is unset, green where it is set.
  EXPECT_TRUE(is_gray(cell(1, 1, 6, 6)));
  const uint8_t* gt = cell(1, 1, 1, 6);
  EXPECT_GT(gt[1], gt[0] + 60);
  EXPECT_EQ(gt[0], gt[2]);
  // Column 3: target only (bottom-left) green, prediction only (top-right) red, both
  // (top-left) yellow, neither (bottom-right) gray.
  const uint8_t* fn = cell(1, 2, 1, 6);
  EXPECT_GT(fn[1], fn[0] + 60);
  EXPECT_EQ(fn[0], fn[2]);
  const uint8_t* fp = cell(1, 2, 6, 1);
  EXPECT_GT(fp[0], fp[1] + 60);
  EXPECT_EQ(fp[1], fp[2]);
  const uint8_t* tp = cell(1, 2, 1, 1);
  EXPECT_EQ(tp[0], tp[1]);
  EXPECT_GT(tp[0], tp[2] + 60);
  EXPECT_TRUE(is_gray(cell(1, 2, 6, 6)));
  // Exact blend with alpha 0.5 over gray 128: green = (64, 192, 64).
  EXPECT_NEAR(gt[0], 64, 1);
  EXPECT_NEAR(gt[1], 192, 1);
  // Row 0: the image ramp runs from black (x = 0) to white (x = 7) in column 1.
  EXPECT_EQ(cell(0, 0, 0, 0)[0], 0);
  EXPECT_EQ(cell(0, 0, 7, 0)[0], 255);
  // Separators are background.
  EXPECT_EQ(img.at(0, header + 5)[0], kGridBackground[0]);
  EXPECT_EQ(img.at(sep + cw, header + 5)[0], kGridBackground[0]);
}

TEST_F(PlotsTest, SegmentationGridWithoutHeadersAutoScaleAndErrors) {
  SegGridRow row{16, 16, std::vector<float>(256, 0.5f), std::vector<float>(256, 0.0f),
                 std::vector<float>(256, 0.0f)};
  row.image[0] = std::nanf("");
  SegGridOptions opt;
  opt.column_titles.clear();
  const std::string p = path("grid2.png");
  write_segmentation_grid_png(p, {row}, opt);
  const Png img = read_rgb(p);
  const int scale = seg_grid_scale({row}, opt);
  EXPECT_EQ(scale, 8);  // 16 px -> 128 px cells
  EXPECT_EQ(img.width, 2 + 3 * (16 * scale + 2));
  EXPECT_EQ(img.height, 2 + 16 * scale + 2);
  EXPECT_EQ(img.at(2, 2)[0], 0);  // NaN pixel is black

  SegGridRow wrong = row;
  wrong.prob.resize(10);
  EXPECT_THROW(render_segmentation_grid({wrong}), rg::Error);
  SegGridRow other{8, 8, std::vector<float>(64), std::vector<float>(64), std::vector<float>(64)};
  EXPECT_THROW(render_segmentation_grid({row, other}), rg::Error);
  EXPECT_THROW(render_segmentation_grid({}), rg::Error);
}

TEST(BitmapFont, TextMetricsAndInk) {
  EXPECT_EQ(text_width("", 1), 0);
  EXPECT_EQ(text_width("a", 1), 5);
  EXPECT_EQ(text_width("ab", 2), 22);
  data::Image8 img;
  img.width = 40;
  img.height = 12;
  img.channels = 3;
  img.pixels.assign(40 * 12 * 3, 255);
  const uint8_t black[3] = {0, 0, 0};
  draw_text(img, 0, 0, "1", black, 1);
  // '1' has its stem in column 2, rows 0..6, and a base from column 1 to 3 on row 6.
  for (int y = 0; y < 7; ++y) EXPECT_EQ(img.pixels[(y * 40 + 2) * 3], 0) << "row " << y;
  EXPECT_EQ(img.pixels[(6 * 40 + 1) * 3], 0);
  EXPECT_EQ(img.pixels[(3 * 40 + 4) * 3], 255);
  // Every printable character has ink except space.
  for (int c = 33; c < 127; ++c) {
    img.pixels.assign(40 * 12 * 3, 255);
    draw_text(img, 0, 0, std::string(1, static_cast<char>(c)), black, 1);
    size_t ink = 0;
    for (size_t i = 0; i < img.pixels.size(); i += 3) ink += img.pixels[i] == 0;
    EXPECT_GT(ink, 0u) << "char " << static_cast<char>(c);
  }
}

}  // namespace
}  // namespace rg::train
