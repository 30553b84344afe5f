// PNG figures for training runs, drawn from scratch: line charts (loss and metric curves) and
// segmentation grids (image | ground truth | prediction), with a built-in 5x7 bitmap font.
//
// Files are written atomically through rg::data::write_png (a temporary file next to the target,
// then a rename), so a reader never sees a half-written PNG. Failures (bad path, bad sizes)
// throw rg::Error naming the path.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/png_io.h"

namespace rg::train {

// ---- line charts ------------------------------------------------------------------------------

struct Series {
  std::string name;
  std::vector<double> x, y;  // same length; a point with a non-finite x or y is skipped and
                             // breaks the line there (as does y <= 0 on a log axis)
};

// Renders a chart: title on top, axes with "nice" ticks (1/2/5 x 10^k; decades on a log axis),
// light grid, numeric tick labels, axis labels (y rotated), one colour per series (up to 10
// distinct, then repeating), a legend in the top-right corner, isolated points drawn as dots.
// With no drawable point at all the axes are drawn with a "no data" note. Text outside the font
// (non-ASCII) is drawn as '?'. Width and height must be in [160, 8192] x [120, 8192].
data::Image8 render_line_chart(const std::string& title, const std::vector<Series>& series,
                               const std::string& x_label, const std::string& y_label,
                               int width = 800, int height = 500, bool log_y = false);

void write_line_chart_png(const std::string& path, const std::string& title,
                          const std::vector<Series>& series, const std::string& x_label,
                          const std::string& y_label, int width = 800, int height = 500,
                          bool log_y = false);

// ---- segmentation grids -----------------------------------------------------------------------

// One row of the grid; every row must have the same height x width. Arrays are H x W row-major.
struct SegGridRow {
  int height = 0, width = 0;
  std::vector<float> image;   // intensities in [-1, 1] (clamped; NaN -> black)
  std::vector<float> target;  // ground-truth mask, foreground where >= 0.5
  std::vector<float> prob;    // predicted probability, foreground where >= threshold
};

struct SegGridOptions {
  // Column headers drawn above the first row; empty vector: no header band.
  std::vector<std::string> column_titles = {"image", "ground truth", "prediction"};
  int scale = 0;             // integer nearest-neighbour upscaling; 0: auto (cells >= 128 px)
  float threshold = 0.5f;    // for the prediction
  float alpha = 0.5f;        // overlay opacity in [0, 1]
};

// Colours of the overlays, blended with weight `alpha` over the gray image:
//   column 2 (ground truth): kGridTargetColour where the target is set;
//   column 3 (prediction vs truth): true positives kGridOverlapColour (yellow), false positives
//   kGridPredColour (red), false negatives kGridTargetColour (green).
// Cells are separated by kGridSeparatorWidth px of kGridBackground.
inline constexpr uint8_t kGridTargetColour[3] = {0, 255, 0};
inline constexpr uint8_t kGridPredColour[3] = {255, 0, 0};
inline constexpr uint8_t kGridOverlapColour[3] = {255, 255, 0};
inline constexpr uint8_t kGridBackground[3] = {24, 24, 24};
inline constexpr int kGridSeparatorWidth = 2;

// Pixel layout (for callers that want to locate a cell): the header band is
// header_height(options) px tall; cell (row r, column c) starts at
//   x = sep + c * (W * scale + sep), y = header + sep + r * (H * scale + sep), sep = separator.
int seg_grid_header_height(const SegGridOptions& options);
int seg_grid_scale(const std::vector<SegGridRow>& rows, const SegGridOptions& options);

data::Image8 render_segmentation_grid(const std::vector<SegGridRow>& rows,
                                      const SegGridOptions& options = {});

void write_segmentation_grid_png(const std::string& path, const std::vector<SegGridRow>& rows,
                                 const SegGridOptions& options = {});

// ---- image grids (e.g. synthesis: mask | real | synthetic) ---------------------------------

// rows[r][c] is one H x W gray cell, values in [-1, 1] (clamped; NaN -> black), drawn with the
// segmentation grid's separators, scale rule and header band (column_titles; empty: none).
// Every row has the same number of cells and every cell the same size.
data::Image8 render_image_grid(const std::vector<std::vector<std::vector<float>>>& rows,
                               int height, int width,
                               const std::vector<std::string>& column_titles, int scale = 0);
void write_image_grid_png(const std::string& path,
                          const std::vector<std::vector<std::vector<float>>>& rows, int height,
                          int width, const std::vector<std::string>& column_titles,
                          int scale = 0);

// ---- bitmap text (exposed for other figures) --------------------------------------------------

// Glyph cell: 5 x 7 pixels (+2 rows for descenders), advance 6 px, line height 10 px, times
// `scale`. draw_text's (x, y) is the top-left of the first cell; img must be 3-channel.
int text_width(const std::string& text, int scale = 1);
int text_height(int scale = 1);
void draw_text(data::Image8& img, int x, int y, const std::string& text, const uint8_t rgb[3],
               int scale = 1);
// Rotated 90 degrees counter-clockwise (reads bottom to top); (x, y) is the top-left of the
// rotated text's bounding box, which is text_height wide and text_width tall.
void draw_text_vertical(data::Image8& img, int x, int y, const std::string& text,
                        const uint8_t rgb[3], int scale = 1);

}  // namespace rg::train
