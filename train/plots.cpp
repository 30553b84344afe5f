#include "train/plots.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <limits>

#include "engine/error.h"

namespace rg::train {

namespace {

// ---- font -------------------------------------------------------------------------------------

// Each glyph: 7 rows of 5 columns ('#' = ink), drawn `dy` rows below the top of a 9-row cell
// (dy = 2 for descenders, 1 for j and ';').
struct GlyphDef {
  char c;
  int dy;
  const char* rows[7];
};

// clang-format off
const GlyphDef kGlyphs[] = {
  {' ', 0, {".....", ".....", ".....", ".....", ".....", ".....", "....."}},
  {'!', 0, {"..#..", "..#..", "..#..", "..#..", "..#..", ".....", "..#.."}},
  {'"', 0, {".#.#.", ".#.#.", ".#.#.", ".....", ".....", ".....", "....."}},
  {'#', 0, {".#.#.", ".#.#.", "#####", ".#.#.", "#####", ".#.#.", ".#.#."}},
  {'$', 0, {"..#..", ".####", "#.#..", ".###.", "..#.#", "####.", "..#.."}},
  {'%', 0, {"##...", "##..#", "...#.", "..#..", ".#...", "#..##", "...##"}},
  {'&', 0, {".##..", "#..#.", "#.#..", ".#...", "#.#.#", "#..#.", ".##.#"}},
  {'\'', 0, {"..#..", "..#..", ".#...", ".....", ".....", ".....", "....."}},
  {'(', 0, {"...#.", "..#..", ".#...", ".#...", ".#...", "..#..", "...#."}},
  {')', 0, {".#...", "..#..", "...#.", "...#.", "...#.", "..#..", ".#..."}},
  {'*', 0, {".....", "..#..", "#.#.#", ".###.", "#.#.#", "..#..", "....."}},
  {'+', 0, {".....", "..#..", "..#..", "#####", "..#..", "..#..", "....."}},
  {',', 2, {".....", ".....", ".....", ".....", ".##..", "..#..", ".#..."}},
  {'-', 0, {".....", ".....", ".....", "#####", ".....", ".....", "....."}},
  {'.', 0, {".....", ".....", ".....", ".....", ".....", ".##..", ".##.."}},
  {'/', 0, {".....", "....#", "...#.", "..#..", ".#...", "#....", "....."}},
  {'0', 0, {".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."}},
  {'1', 0, {"..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."}},
  {'2', 0, {".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"}},
  {'3', 0, {"#####", "...#.", "..#..", "...#.", "....#", "#...#", ".###."}},
  {'4', 0, {"...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."}},
  {'5', 0, {"#####", "#....", "####.", "....#", "....#", "#...#", ".###."}},
  {'6', 0, {"..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."}},
  {'7', 0, {"#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."}},
  {'8', 0, {".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."}},
  {'9', 0, {".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."}},
  {':', 0, {".....", ".##..", ".##..", ".....", ".##..", ".##..", "....."}},
  {';', 1, {".....", ".##..", ".##..", ".....", ".##..", "..#..", ".#..."}},
  {'<', 0, {"...#.", "..#..", ".#...", "#....", ".#...", "..#..", "...#."}},
  {'=', 0, {".....", ".....", "#####", ".....", "#####", ".....", "....."}},
  {'>', 0, {".#...", "..#..", "...#.", "....#", "...#.", "..#..", ".#..."}},
  {'?', 0, {".###.", "#...#", "....#", "...#.", "..#..", ".....", "..#.."}},
  {'@', 0, {".###.", "#...#", "....#", ".##.#", "#.#.#", "#.#.#", ".###."}},
  {'A', 0, {".###.", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"}},
  {'B', 0, {"####.", "#...#", "#...#", "####.", "#...#", "#...#", "####."}},
  {'C', 0, {".###.", "#...#", "#....", "#....", "#....", "#...#", ".###."}},
  {'D', 0, {"###..", "#..#.", "#...#", "#...#", "#...#", "#..#.", "###.."}},
  {'E', 0, {"#####", "#....", "#....", "####.", "#....", "#....", "#####"}},
  {'F', 0, {"#####", "#....", "#....", "####.", "#....", "#....", "#...."}},
  {'G', 0, {".###.", "#...#", "#....", "#.###", "#...#", "#...#", ".####"}},
  {'H', 0, {"#...#", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"}},
  {'I', 0, {".###.", "..#..", "..#..", "..#..", "..#..", "..#..", ".###."}},
  {'J', 0, {"..###", "...#.", "...#.", "...#.", "...#.", "#..#.", ".##.."}},
  {'K', 0, {"#...#", "#..#.", "#.#..", "##...", "#.#..", "#..#.", "#...#"}},
  {'L', 0, {"#....", "#....", "#....", "#....", "#....", "#....", "#####"}},
  {'M', 0, {"#...#", "##.##", "#.#.#", "#.#.#", "#...#", "#...#", "#...#"}},
  {'N', 0, {"#...#", "#...#", "##..#", "#.#.#", "#..##", "#...#", "#...#"}},
  {'O', 0, {".###.", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."}},
  {'P', 0, {"####.", "#...#", "#...#", "####.", "#....", "#....", "#...."}},
  {'Q', 0, {".###.", "#...#", "#...#", "#...#", "#.#.#", "#..#.", ".##.#"}},
  {'R', 0, {"####.", "#...#", "#...#", "####.", "#.#..", "#..#.", "#...#"}},
  {'S', 0, {".####", "#....", "#....", ".###.", "....#", "....#", "####."}},
  {'T', 0, {"#####", "..#..", "..#..", "..#..", "..#..", "..#..", "..#.."}},
  {'U', 0, {"#...#", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."}},
  {'V', 0, {"#...#", "#...#", "#...#", "#...#", "#...#", ".#.#.", "..#.."}},
  {'W', 0, {"#...#", "#...#", "#...#", "#.#.#", "#.#.#", "#.#.#", ".#.#."}},
  {'X', 0, {"#...#", "#...#", ".#.#.", "..#..", ".#.#.", "#...#", "#...#"}},
  {'Y', 0, {"#...#", "#...#", ".#.#.", "..#..", "..#..", "..#..", "..#.."}},
  {'Z', 0, {"#####", "....#", "...#.", "..#..", ".#...", "#....", "#####"}},
  {'[', 0, {".###.", ".#...", ".#...", ".#...", ".#...", ".#...", ".###."}},
  {'\\', 0, {".....", "#....", ".#...", "..#..", "...#.", "....#", "....."}},
  {']', 0, {".###.", "...#.", "...#.", "...#.", "...#.", "...#.", ".###."}},
  {'^', 0, {"..#..", ".#.#.", "#...#", ".....", ".....", ".....", "....."}},
  {'_', 2, {".....", ".....", ".....", ".....", ".....", ".....", "#####"}},
  {'`', 0, {".#...", "..#..", ".....", ".....", ".....", ".....", "....."}},
  {'a', 0, {".....", ".....", ".###.", "....#", ".####", "#...#", ".####"}},
  {'b', 0, {"#....", "#....", "#.##.", "##..#", "#...#", "#...#", "####."}},
  {'c', 0, {".....", ".....", ".###.", "#....", "#....", "#...#", ".###."}},
  {'d', 0, {"....#", "....#", ".##.#", "#..##", "#...#", "#...#", ".####"}},
  {'e', 0, {".....", ".....", ".###.", "#...#", "#####", "#....", ".###."}},
  {'f', 0, {"..##.", ".#..#", ".#...", "###..", ".#...", ".#...", ".#..."}},
  {'g', 2, {".####", "#...#", "#...#", "#...#", ".####", "....#", ".###."}},
  {'h', 0, {"#....", "#....", "#.##.", "##..#", "#...#", "#...#", "#...#"}},
  {'i', 0, {"..#..", ".....", ".##..", "..#..", "..#..", "..#..", ".###."}},
  {'j', 1, {"...#.", ".....", "..##.", "...#.", "...#.", "#..#.", ".##.."}},
  {'k', 0, {"#....", "#....", "#..#.", "#.#..", "##...", "#.#..", "#..#."}},
  {'l', 0, {".##..", "..#..", "..#..", "..#..", "..#..", "..#..", ".###."}},
  {'m', 0, {".....", ".....", "##.#.", "#.#.#", "#.#.#", "#...#", "#...#"}},
  {'n', 0, {".....", ".....", "#.##.", "##..#", "#...#", "#...#", "#...#"}},
  {'o', 0, {".....", ".....", ".###.", "#...#", "#...#", "#...#", ".###."}},
  {'p', 2, {"####.", "#...#", "#...#", "#...#", "####.", "#....", "#...."}},
  {'q', 2, {".####", "#...#", "#...#", "#...#", ".####", "....#", "....#"}},
  {'r', 0, {".....", ".....", "#.##.", "##..#", "#....", "#....", "#...."}},
  {'s', 0, {".....", ".....", ".####", "#....", ".###.", "....#", "####."}},
  {'t', 0, {".#...", ".#...", "###..", ".#...", ".#...", ".#..#", "..##."}},
  {'u', 0, {".....", ".....", "#...#", "#...#", "#...#", "#..##", ".##.#"}},
  {'v', 0, {".....", ".....", "#...#", "#...#", "#...#", ".#.#.", "..#.."}},
  {'w', 0, {".....", ".....", "#...#", "#...#", "#.#.#", "#.#.#", ".#.#."}},
  {'x', 0, {".....", ".....", "#...#", ".#.#.", "..#..", ".#.#.", "#...#"}},
  {'y', 2, {"#...#", "#...#", "#...#", "#...#", ".####", "....#", ".###."}},
  {'z', 0, {".....", ".....", "#####", "...#.", "..#..", ".#...", "#####"}},
  {'{', 0, {"...#.", "..#..", "..#..", ".#...", "..#..", "..#..", "...#."}},
  {'|', 0, {"..#..", "..#..", "..#..", "..#..", "..#..", "..#..", "..#.."}},
  {'}', 0, {".#...", "..#..", "..#..", "...#.", "..#..", "..#..", ".#..."}},
  {'~', 0, {".....", ".....", ".#...", "#.#.#", "...#.", ".....", "....."}},
};
// clang-format on

constexpr int kGlyphW = 5, kGlyphRows = 7, kCellH = 9, kAdvance = 6, kLineH = 10;

// 9-row bitmaps (bit 4 = leftmost column) indexed by character code 32..126.
struct Font {
  std::array<std::array<uint8_t, kCellH>, 95> bits{};
  Font() {
    for (const GlyphDef& g : kGlyphs) {
      auto& b = bits[static_cast<size_t>(g.c - 32)];
      for (int r = 0; r < kGlyphRows; ++r) {
        uint8_t v = 0;
        for (int c = 0; c < kGlyphW; ++c) v = static_cast<uint8_t>((v << 1) | (g.rows[r][c] == '#'));
        b[static_cast<size_t>(r + g.dy)] = v;
      }
    }
  }
  const std::array<uint8_t, kCellH>& glyph(char ch) const {
    const int code = static_cast<unsigned char>(ch);
    return bits[static_cast<size_t>((code < 32 || code > 126 ? '?' : code) - 32)];
  }
};

const Font& font() {
  static const Font f;
  return f;
}

// ---- canvas -----------------------------------------------------------------------------------

struct Rgb {
  uint8_t r, g, b;
};

data::Image8 make_canvas(int w, int h, Rgb fill) {
  data::Image8 img;
  img.width = w;
  img.height = h;
  img.channels = 3;
  img.pixels.resize(static_cast<size_t>(w) * static_cast<size_t>(h) * 3);
  for (size_t i = 0; i < img.pixels.size(); i += 3) {
    img.pixels[i] = fill.r;
    img.pixels[i + 1] = fill.g;
    img.pixels[i + 2] = fill.b;
  }
  return img;
}

inline void put(data::Image8& img, int x, int y, Rgb c) {
  if (x < 0 || y < 0 || x >= img.width || y >= img.height) return;
  uint8_t* p = &img.pixels[(static_cast<size_t>(y) * img.width + x) * 3];
  p[0] = c.r, p[1] = c.g, p[2] = c.b;
}

void fill_rect(data::Image8& img, int x0, int y0, int x1, int y1, Rgb c) {  // inclusive
  for (int y = std::max(0, y0); y <= std::min(img.height - 1, y1); ++y)
    for (int x = std::max(0, x0); x <= std::min(img.width - 1, x1); ++x) put(img, x, y, c);
}

void rect_outline(data::Image8& img, int x0, int y0, int x1, int y1, Rgb c) {
  for (int x = x0; x <= x1; ++x) put(img, x, y0, c), put(img, x, y1, c);
  for (int y = y0; y <= y1; ++y) put(img, x0, y, c), put(img, x1, y, c);
}

struct Clip {
  int x0, y0, x1, y1;  // inclusive
  bool inside(int x, int y) const { return x >= x0 && x <= x1 && y >= y0 && y <= y1; }
};

// A 2-px wide line: stamps a plus-shaped 3x3 brush along the segment.
void thick_line(data::Image8& img, double xa, double ya, double xb, double yb, Rgb c,
                const Clip& clip) {
  const double len = std::max(std::fabs(xb - xa), std::fabs(yb - ya));
  const int steps = std::max(1, static_cast<int>(std::ceil(len * 2)));
  for (int i = 0; i <= steps; ++i) {
    const double t = static_cast<double>(i) / steps;
    const int x = static_cast<int>(std::lround(xa + t * (xb - xa)));
    const int y = static_cast<int>(std::lround(ya + t * (yb - ya)));
    static const int kBrush[5][2] = {{0, 0}, {1, 0}, {-1, 0}, {0, 1}, {0, -1}};
    for (const auto& o : kBrush)
      if (clip.inside(x + o[0], y + o[1])) put(img, x + o[0], y + o[1], c);
  }
}

void dot(data::Image8& img, double xc, double yc, double radius, Rgb c, const Clip& clip) {
  const int r = static_cast<int>(std::ceil(radius));
  const int cx = static_cast<int>(std::lround(xc)), cy = static_cast<int>(std::lround(yc));
  for (int dy = -r; dy <= r; ++dy)
    for (int dx = -r; dx <= r; ++dx)
      if (dx * dx + dy * dy <= radius * radius + 0.5 && clip.inside(cx + dx, cy + dy))
        put(img, cx + dx, cy + dy, c);
}

// ---- ticks ------------------------------------------------------------------------------------

// 1, 2 or 5 times a power of ten, close to `raw`.
double nice_step(double raw) {
  const double p = std::pow(10.0, std::floor(std::log10(raw)));
  const double m = raw / p;
  if (m < 1.5) return p;
  if (m < 3.5) return 2 * p;
  if (m < 7.5) return 5 * p;
  return 10 * p;
}

std::string format_number(double v, double step) {
  char buf[64];
  if (v == 0.0) return "0";
  const double a = std::fabs(v);
  if (a >= 1e6 || a < 1e-4 || step < 1e-4) {
    std::snprintf(buf, sizeof(buf), "%.3g", v);
  } else {
    const int decimals = std::clamp(static_cast<int>(std::ceil(-std::log10(step) - 1e-9)), 0, 6);
    std::snprintf(buf, sizeof(buf), "%.*f", decimals, v);
  }
  std::string s = buf;
  // "-0", "0.00", "-0.0" -> "0" (built without assigning a literal: GCC 12's -Wrestrict
  // misfires on that at -O3).
  if (s.find_first_not_of("-0.") == std::string::npos) return std::string(1, '0');
  return s;
}

struct Axis {
  double lo = 0, hi = 1;
  bool log = false;
  std::vector<double> ticks;  // in data units
  std::vector<std::string> labels;
  // Maps a data value (already log10'd on a log axis) to [0, 1].
  double frac(double v) const { return (v - lo) / (hi - lo); }
};

Axis linear_axis(double lo, double hi, int max_ticks, bool pad) {
  Axis a;
  if (!(hi > lo)) {  // a single value (or none): open a window around it
    const double c = lo;
    const double half = c == 0.0 ? 1.0 : std::fabs(c) * 0.1;
    lo = c - half;
    hi = c + half;
  } else if (pad) {
    const double m = 0.05 * (hi - lo);
    lo -= m;
    hi += m;
  }
  const double step = nice_step((hi - lo) / std::max(2, max_ticks));
  a.lo = lo;
  a.hi = hi;
  const double first = std::ceil(lo / step - 1e-9) * step;
  for (int i = 0; i < 100; ++i) {
    double t = first + i * step;
    if (t > hi + 1e-9 * step) break;
    if (std::fabs(t) < 1e-12 * step) t = 0.0;
    a.ticks.push_back(t);
    a.labels.push_back(format_number(t, step));
  }
  return a;
}

std::string format_power(double log10v) {
  const double v = std::pow(10.0, log10v);
  char buf[32];
  if (v >= 1e-3 && v < 1e5) {
    std::snprintf(buf, sizeof(buf), "%g", v);
  } else {
    const double e = std::floor(log10v + 1e-9);
    const double m = std::pow(10.0, log10v - e);
    if (std::fabs(m - 1.0) < 1e-6) {
      std::snprintf(buf, sizeof(buf), "1e%d", static_cast<int>(e));
    } else {
      std::snprintf(buf, sizeof(buf), "%.0fe%d", m, static_cast<int>(e));
    }
  }
  return buf;
}

// Log axis: limits and ticks in log10 units; labels show the values. `pixels` is the axis
// length: the densest set of mantissas per decade whose ticks stay >= 16 px apart is used, and
// on long ranges only every k-th decade is labelled.
Axis log_axis(double lo_value, double hi_value, int pixels) {
  Axis a;
  a.log = true;
  double lo = std::log10(lo_value), hi = std::log10(hi_value);
  if (!(hi > lo)) {
    lo -= 0.5;
    hi += 0.5;
  } else {
    const double m = 0.05 * (hi - lo);
    lo -= m;
    hi += m;
  }
  a.lo = lo;
  a.hi = hi;
  const double px_per_decade = pixels / (hi - lo);
  static const std::vector<double> kSets[] = {
      {1, 2, 3, 4, 5, 6, 7, 8, 9}, {1, 2, 3, 5}, {1, 2, 5}, {1}};
  static const double kMinRatio[] = {10.0 / 9.0, 1.5, 2.0, 10.0};  // closest neighbours
  size_t set = 3;
  for (size_t k = 0; k < 3; ++k)
    if (std::log10(kMinRatio[k]) * px_per_decade >= 16.0) {
      set = k;
      break;
    }
  const int every = std::max(1, static_cast<int>(std::ceil(24.0 / px_per_decade)));
  const int e0 = static_cast<int>(std::floor(lo)), e1 = static_cast<int>(std::ceil(hi));
  for (int e = e0; e <= e1; ++e) {
    if (set == 3 && ((e % every) + every) % every != 0) continue;
    for (double m : kSets[set]) {
      const double t = e + std::log10(m);
      if (t < lo - 1e-12 || t > hi + 1e-12) continue;
      a.ticks.push_back(t);
      a.labels.push_back(format_power(t));
    }
  }
  return a;
}

const Rgb kPalette[] = {{31, 119, 180}, {255, 127, 14}, {44, 160, 44},  {214, 39, 40},
                        {148, 103, 189}, {140, 86, 75}, {227, 119, 194}, {127, 127, 127},
                        {188, 189, 34},  {23, 190, 207}};

const uint8_t kBlack[3] = {0, 0, 0};
const uint8_t kDarkGray[3] = {60, 60, 60};
const uint8_t kWhite[3] = {255, 255, 255};

}  // namespace

// ---- text -------------------------------------------------------------------------------------

int text_width(const std::string& text, int scale) {
  if (text.empty()) return 0;
  return (static_cast<int>(text.size()) * kAdvance - 1) * scale;
}

int text_height(int scale) { return kCellH * scale; }

void draw_text(data::Image8& img, int x, int y, const std::string& text, const uint8_t rgb[3],
               int scale) {
  RG_CHECK(img.channels == 3, "draw_text: image must be RGB, got ", img.channels, " channels");
  RG_CHECK(scale >= 1, "draw_text: scale must be >= 1, got ", scale);
  const Rgb c{rgb[0], rgb[1], rgb[2]};
  for (size_t i = 0; i < text.size(); ++i) {
    const auto& g = font().glyph(text[i]);
    const int gx = x + static_cast<int>(i) * kAdvance * scale;
    for (int r = 0; r < kCellH; ++r)
      for (int col = 0; col < kGlyphW; ++col)
        if (g[static_cast<size_t>(r)] & (1 << (kGlyphW - 1 - col)))
          fill_rect(img, gx + col * scale, y + r * scale, gx + col * scale + scale - 1,
                    y + r * scale + scale - 1, c);
  }
}

void draw_text_vertical(data::Image8& img, int x, int y, const std::string& text,
                        const uint8_t rgb[3], int scale) {
  RG_CHECK(img.channels == 3, "draw_text_vertical: image must be RGB, got ", img.channels,
           " channels");
  RG_CHECK(scale >= 1, "draw_text_vertical: scale must be >= 1, got ", scale);
  const Rgb c{rgb[0], rgb[1], rgb[2]};
  const int len = text_width(text, 1);
  // Horizontal text pixel (u, v) goes to (x + v, y + len - 1 - u).
  for (size_t i = 0; i < text.size(); ++i) {
    const auto& g = font().glyph(text[i]);
    for (int r = 0; r < kCellH; ++r)
      for (int col = 0; col < kGlyphW; ++col)
        if (g[static_cast<size_t>(r)] & (1 << (kGlyphW - 1 - col))) {
          const int u = static_cast<int>(i) * kAdvance + col;
          const int px = x + r * scale, py = y + (len - 1 - u) * scale;
          fill_rect(img, px, py, px + scale - 1, py + scale - 1, c);
        }
  }
}

// ---- line chart -------------------------------------------------------------------------------

data::Image8 render_line_chart(const std::string& title, const std::vector<Series>& series,
                               const std::string& x_label, const std::string& y_label, int width,
                               int height, bool log_y) {
  RG_CHECK(width >= 160 && width <= 8192 && height >= 120 && height <= 8192,
           "render_line_chart: size must be in [160, 8192] x [120, 8192], got ", width, " x ",
           height);
  for (const Series& s : series)
    RG_CHECK(s.x.size() == s.y.size(), "render_line_chart: series '", s.name, "' has ", s.x.size(),
             " x values but ", s.y.size(), " y values");

  auto usable = [&](double x, double y) {
    return std::isfinite(x) && std::isfinite(y) && (!log_y || y > 0.0);
  };
  double xmin = std::numeric_limits<double>::infinity(), xmax = -xmin, ymin = xmin, ymax = -xmin;
  size_t points = 0;
  for (const Series& s : series)
    for (size_t i = 0; i < s.x.size(); ++i)
      if (usable(s.x[i], s.y[i])) {
        xmin = std::min(xmin, s.x[i]), xmax = std::max(xmax, s.x[i]);
        ymin = std::min(ymin, s.y[i]), ymax = std::max(ymax, s.y[i]);
        ++points;
      }
  if (points == 0) {
    xmin = 0, xmax = 1;
    ymin = log_y ? 0.1 : 0.0, ymax = 1.0;
  }

  data::Image8 img = make_canvas(width, height, {255, 255, 255});
  const int title_scale = width >= 480 ? 2 : 1;
  const int top = 8 + (title.empty() ? 0 : text_height(title_scale) + 8);
  const int bottom = 8 + text_height(1) + 6 + (x_label.empty() ? 0 : text_height(1) + 6);
  const int right = 16;

  // The y labels decide the left margin; the tick count depends on the plot height.
  const int approx_plot_h = height - top - bottom;
  const Axis ya = log_y ? log_axis(ymin, ymax, approx_plot_h)
                        : linear_axis(ymin, ymax, std::max(2, approx_plot_h / 50), true);
  int label_w = 0;
  for (const std::string& l : ya.labels) label_w = std::max(label_w, text_width(l, 1));
  const int left = 8 + (y_label.empty() ? 0 : text_height(1) + 6) + label_w + 6;
  const Clip plot{left, top, width - 1 - right, height - 1 - bottom};
  RG_CHECK(plot.x1 - plot.x0 >= 40 && plot.y1 - plot.y0 >= 30,
           "render_line_chart: ", width, " x ", height, " leaves no room for the plot");
  const int pw = plot.x1 - plot.x0, ph = plot.y1 - plot.y0;
  const Axis xa = linear_axis(xmin, xmax, std::max(2, pw / 90), false);

  auto px = [&](double x) { return plot.x0 + xa.frac(x) * pw; };
  auto py = [&](double y) { return plot.y1 - ya.frac(log_y ? std::log10(y) : y) * ph; };

  // Grid, ticks and labels.
  const Rgb grid{230, 230, 230}, axis{60, 60, 60};
  for (size_t i = 0; i < xa.ticks.size(); ++i) {
    const int x = static_cast<int>(std::lround(plot.x0 + xa.frac(xa.ticks[i]) * pw));
    fill_rect(img, x, plot.y0, x, plot.y1, grid);
    fill_rect(img, x, plot.y1, x, plot.y1 + 4, axis);
    const int tw = text_width(xa.labels[i], 1);
    const int lx = std::clamp(x - tw / 2, 0, width - tw);
    draw_text(img, lx, plot.y1 + 7, xa.labels[i], kDarkGray, 1);
  }
  for (size_t i = 0; i < ya.ticks.size(); ++i) {
    const int y = static_cast<int>(std::lround(plot.y1 - ya.frac(ya.ticks[i]) * ph));
    fill_rect(img, plot.x0, y, plot.x1, y, grid);
    fill_rect(img, plot.x0 - 4, y, plot.x0, y, axis);
    draw_text(img, plot.x0 - 6 - text_width(ya.labels[i], 1), y - 3, ya.labels[i], kDarkGray, 1);
  }
  rect_outline(img, plot.x0, plot.y0, plot.x1, plot.y1, axis);

  if (!title.empty())
    draw_text(img, std::max(0, (width - text_width(title, title_scale)) / 2), 8, title, kBlack,
              title_scale);
  if (!x_label.empty())
    draw_text(img, plot.x0 + (pw - text_width(x_label, 1)) / 2,
              height - 8 - text_height(1), x_label, kBlack, 1);
  if (!y_label.empty())
    draw_text_vertical(img, 8, std::max(0, plot.y0 + (ph - text_width(y_label, 1)) / 2), y_label,
                       kBlack, 1);

  // Series: segments between consecutive usable points; isolated points as dots.
  const Clip inner{plot.x0 + 1, plot.y0 + 1, plot.x1 - 1, plot.y1 - 1};
  for (size_t si = 0; si < series.size(); ++si) {
    const Series& s = series[si];
    const Rgb c = kPalette[si % std::size(kPalette)];
    const size_t n = s.x.size();
    for (size_t i = 0; i < n; ++i) {
      if (!usable(s.x[i], s.y[i])) continue;
      const bool prev = i > 0 && usable(s.x[i - 1], s.y[i - 1]);
      const bool next = i + 1 < n && usable(s.x[i + 1], s.y[i + 1]);
      if (next) thick_line(img, px(s.x[i]), py(s.y[i]), px(s.x[i + 1]), py(s.y[i + 1]), c, inner);
      if (!prev && !next) dot(img, px(s.x[i]), py(s.y[i]), 2.5, c, inner);
    }
  }

  if (points == 0) {
    const std::string note = "no data";
    draw_text(img, plot.x0 + (pw - text_width(note, 2)) / 2, plot.y0 + (ph - text_height(2)) / 2,
              note, kDarkGray, 2);
  }

  // Legend (named series only), top-right inside the plot.
  std::vector<size_t> named;
  for (size_t i = 0; i < series.size(); ++i)
    if (!series[i].name.empty()) named.push_back(i);
  if (!named.empty()) {
    int name_w = 0;
    for (size_t i : named) name_w = std::max(name_w, text_width(series[i].name, 1));
    const int row_h = text_height(1) + 4;
    const int box_w = 8 + 18 + 6 + name_w + 8;
    const int box_h = 6 + static_cast<int>(named.size()) * row_h + 2;
    // The corner (top-right, top-left, bottom-right, bottom-left) covering the fewest drawn
    // series pixels.
    auto busy = [&](int x0, int y0, int x1, int y1) {
      size_t c = 0;
      for (int y = std::max(0, y0); y <= std::min(img.height - 1, y1); ++y)
        for (int x = std::max(0, x0); x <= std::min(img.width - 1, x1); ++x) {
          const uint8_t* p = &img.pixels[(static_cast<size_t>(y) * img.width + x) * 3];
          const bool plain = (p[0] == 255 && p[1] == 255 && p[2] == 255) ||
                             (p[0] == grid.r && p[1] == grid.g && p[2] == grid.b);
          c += !plain;
        }
      return c;
    };
    const int bw = std::min(box_w, pw - 8), bh = std::min(box_h, ph - 8);
    const int cand[4][2] = {{plot.x1 - 6 - bw, plot.y0 + 6},
                            {plot.x0 + 6, plot.y0 + 6},
                            {plot.x1 - 6 - bw, plot.y1 - 6 - bh},
                            {plot.x0 + 6, plot.y1 - 6 - bh}};
    size_t best = 0, best_busy = std::numeric_limits<size_t>::max();
    for (size_t k = 0; k < 4; ++k) {
      const size_t b = busy(cand[k][0], cand[k][1], cand[k][0] + bw, cand[k][1] + bh);
      if (b < best_busy) best = k, best_busy = b;
    }
    const int bx0 = cand[best][0], by0 = cand[best][1], bx1 = bx0 + bw, by1 = by0 + bh;
    fill_rect(img, bx0, by0, bx1, by1, {255, 255, 255});
    rect_outline(img, bx0, by0, bx1, by1, {180, 180, 180});
    const Clip legend_clip{bx0 + 1, by0 + 1, bx1 - 1, by1 - 1};
    for (size_t k = 0; k < named.size(); ++k) {
      const int y = by0 + 6 + static_cast<int>(k) * row_h;
      if (y + text_height(1) > by1) break;
      const Rgb c = kPalette[named[k] % std::size(kPalette)];
      thick_line(img, bx0 + 8, y + 4, bx0 + 26, y + 4, c, legend_clip);
      draw_text(img, bx0 + 32, y, series[named[k]].name, kBlack, 1);
    }
  }
  return img;
}

void write_line_chart_png(const std::string& path, const std::string& title,
                          const std::vector<Series>& series, const std::string& x_label,
                          const std::string& y_label, int width, int height, bool log_y) {
  RG_CHECK(!path.empty(), "write_line_chart_png: empty path");
  data::Image8 img;
  try {
    img = render_line_chart(title, series, x_label, y_label, width, height, log_y);
  } catch (const Error& e) {
    RG_FAIL(path, ": ", e.what());
  }
  data::write_png(path, img);
}

// ---- segmentation grid ------------------------------------------------------------------------

int seg_grid_header_height(const SegGridOptions& options) {
  return options.column_titles.empty() ? 0 : text_height(1) + 8;
}

int seg_grid_scale(const std::vector<SegGridRow>& rows, const SegGridOptions& options) {
  if (options.scale > 0) return options.scale;
  if (rows.empty()) return 1;
  const int side = std::max(1, std::max(rows[0].height, rows[0].width));
  return std::clamp((128 + side - 1) / side, 1, 8);
}

data::Image8 render_segmentation_grid(const std::vector<SegGridRow>& rows,
                                      const SegGridOptions& options) {
  RG_CHECK(!rows.empty(), "render_segmentation_grid: no rows");
  RG_CHECK(options.scale >= 0 && options.scale <= 64,
           "render_segmentation_grid: scale must be in [0, 64], got ", options.scale);
  RG_CHECK(options.alpha >= 0.0f && options.alpha <= 1.0f,
           "render_segmentation_grid: alpha must be in [0, 1], got ", options.alpha);
  const int H = rows[0].height, W = rows[0].width;
  RG_CHECK(H > 0 && W > 0, "render_segmentation_grid: row 0 has size ", H, " x ", W);
  const size_t n = static_cast<size_t>(H) * static_cast<size_t>(W);
  for (size_t r = 0; r < rows.size(); ++r) {
    const SegGridRow& row = rows[r];
    RG_CHECK(row.height == H && row.width == W, "render_segmentation_grid: row ", r, " is ",
             row.height, " x ", row.width, " but row 0 is ", H, " x ", W);
    RG_CHECK(row.image.size() == n && row.target.size() == n && row.prob.size() == n,
             "render_segmentation_grid: row ", r, " (", H, " x ", W, " = ", n,
             " pixels) has image/target/prob of ", row.image.size(), "/", row.target.size(), "/",
             row.prob.size(), " values");
  }
  const int scale = seg_grid_scale(rows, options);
  const int sep = kGridSeparatorWidth, cols = 3;
  const int cw = W * scale, ch = H * scale;
  const int header = seg_grid_header_height(options);
  const int64_t total_w = sep + static_cast<int64_t>(cols) * (cw + sep);
  const int64_t total_h = header + sep + static_cast<int64_t>(rows.size()) * (ch + sep);
  RG_CHECK(total_w <= 16384 && total_h <= 65536, "render_segmentation_grid: grid of ", total_w,
           " x ", total_h, " px is too large");
  const Rgb bg{kGridBackground[0], kGridBackground[1], kGridBackground[2]};
  data::Image8 img = make_canvas(static_cast<int>(total_w), static_cast<int>(total_h), bg);

  for (size_t c = 0; c < options.column_titles.size() && c < static_cast<size_t>(cols); ++c) {
    std::string t = options.column_titles[c];
    const size_t max_chars = static_cast<size_t>(std::max(1, (cw + 1) / kAdvance));
    if (t.size() > max_chars) t.resize(max_chars);
    const int x0 = sep + static_cast<int>(c) * (cw + sep);
    draw_text(img, x0 + (cw - text_width(t, 1)) / 2, 4, t, kWhite, 1);
  }

  const float a = options.alpha;
  auto blend = [a](uint8_t gray, const uint8_t col[3], int k) {
    const float v = (1.0f - a) * gray + a * col[k];
    return static_cast<uint8_t>(std::clamp(std::lround(v), 0L, 255L));
  };
  for (size_t r = 0; r < rows.size(); ++r) {
    const SegGridRow& row = rows[r];
    const int y0 = header + sep + static_cast<int>(r) * (ch + sep);
    for (int y = 0; y < H; ++y)
      for (int x = 0; x < W; ++x) {
        const size_t i = static_cast<size_t>(y) * W + x;
        const float v = row.image[i];
        const float g01 = std::isnan(v) ? 0.0f : std::clamp((v + 1.0f) * 0.5f, 0.0f, 1.0f);
        const uint8_t gray = static_cast<uint8_t>(std::lround(g01 * 255.0f));
        const bool t = row.target[i] >= 0.5f;
        const bool p = row.prob[i] >= options.threshold;
        uint8_t cells[3][3];
        for (int k = 0; k < 3; ++k) {
          cells[0][k] = gray;
          cells[1][k] = t ? blend(gray, kGridTargetColour, k) : gray;
          const uint8_t* col = t && p ? kGridOverlapColour : p ? kGridPredColour : kGridTargetColour;
          cells[2][k] = (t || p) ? blend(gray, col, k) : gray;
        }
        for (int c = 0; c < cols; ++c) {
          const int x0 = sep + c * (cw + sep) + x * scale, yy0 = y0 + y * scale;
          for (int dy = 0; dy < scale; ++dy) {
            uint8_t* dst = &img.pixels[(static_cast<size_t>(yy0 + dy) * img.width + x0) * 3];
            for (int dx = 0; dx < scale; ++dx, dst += 3) {
              dst[0] = cells[c][0], dst[1] = cells[c][1], dst[2] = cells[c][2];
            }
          }
        }
      }
  }
  return img;
}

void write_segmentation_grid_png(const std::string& path, const std::vector<SegGridRow>& rows,
                                 const SegGridOptions& options) {
  RG_CHECK(!path.empty(), "write_segmentation_grid_png: empty path");
  data::Image8 img;
  try {
    img = render_segmentation_grid(rows, options);
  } catch (const Error& e) {
    RG_FAIL(path, ": ", e.what());
  }
  data::write_png(path, img);
}

// ---- image grid -------------------------------------------------------------------------------

data::Image8 render_image_grid(const std::vector<std::vector<std::vector<float>>>& rows,
                               int height, int width,
                               const std::vector<std::string>& column_titles, int scale) {
  RG_CHECK(!rows.empty() && !rows[0].empty(), "render_image_grid: no cells");
  RG_CHECK(height > 0 && width > 0, "render_image_grid: cell size ", height, " x ", width);
  RG_CHECK(scale >= 0 && scale <= 64, "render_image_grid: scale must be in [0, 64], got ", scale);
  const size_t cols = rows[0].size();
  const size_t n = static_cast<size_t>(height) * static_cast<size_t>(width);
  for (size_t r = 0; r < rows.size(); ++r) {
    RG_CHECK(rows[r].size() == cols, "render_image_grid: row ", r, " has ", rows[r].size(),
             " cells, row 0 has ", cols);
    for (size_t c = 0; c < cols; ++c)
      RG_CHECK(rows[r][c].size() == n, "render_image_grid: cell (", r, ", ", c, ") has ",
               rows[r][c].size(), " values, expected ", height, " x ", width);
  }
  // The same layout rules as the segmentation grid, so the run's pictures look alike.
  SegGridOptions layout;
  layout.column_titles = column_titles;
  layout.scale = scale;
  const int s = scale > 0 ? scale : std::clamp((128 + std::max(height, width) - 1) / std::max(height, width), 1, 8);
  const int sep = kGridSeparatorWidth;
  const int cw = width * s, ch = height * s;
  const int header = seg_grid_header_height(layout);
  const int64_t total_w = sep + static_cast<int64_t>(cols) * (cw + sep);
  const int64_t total_h = header + sep + static_cast<int64_t>(rows.size()) * (ch + sep);
  RG_CHECK(total_w <= 16384 && total_h <= 65536, "render_image_grid: grid of ", total_w, " x ",
           total_h, " px is too large");
  const Rgb bg{kGridBackground[0], kGridBackground[1], kGridBackground[2]};
  data::Image8 img = make_canvas(static_cast<int>(total_w), static_cast<int>(total_h), bg);
  for (size_t c = 0; c < column_titles.size() && c < cols; ++c) {
    std::string t = column_titles[c];
    const size_t max_chars = static_cast<size_t>(std::max(1, (cw + 1) / kAdvance));
    if (t.size() > max_chars) t.resize(max_chars);
    const int x0 = sep + static_cast<int>(c) * (cw + sep);
    draw_text(img, x0 + (cw - text_width(t, 1)) / 2, 4, t, kWhite, 1);
  }
  for (size_t r = 0; r < rows.size(); ++r) {
    const int y0 = header + sep + static_cast<int>(r) * (ch + sep);
    for (size_t c = 0; c < cols; ++c) {
      const int x0 = sep + static_cast<int>(c) * (cw + sep);
      const std::vector<float>& cell = rows[r][c];
      for (int y = 0; y < height; ++y)
        for (int x = 0; x < width; ++x) {
          const float v = cell[static_cast<size_t>(y) * width + x];
          const float g01 = std::isnan(v) ? 0.0f : std::clamp((v + 1.0f) * 0.5f, 0.0f, 1.0f);
          const uint8_t gray = static_cast<uint8_t>(std::lround(g01 * 255.0f));
          for (int dy = 0; dy < s; ++dy) {
            uint8_t* dst = &img.pixels[(static_cast<size_t>(y0 + y * s + dy) * img.width +
                                        static_cast<size_t>(x0 + x * s)) * 3];
            for (int dx = 0; dx < s; ++dx, dst += 3) dst[0] = dst[1] = dst[2] = gray;
          }
        }
    }
  }
  return img;
}

void write_image_grid_png(const std::string& path,
                          const std::vector<std::vector<std::vector<float>>>& rows, int height,
                          int width, const std::vector<std::string>& column_titles, int scale) {
  RG_CHECK(!path.empty(), "write_image_grid_png: empty path");
  data::Image8 img;
  try {
    img = render_image_grid(rows, height, width, column_titles, scale);
  } catch (const Error& e) {
    RG_FAIL(path, ": ", e.what());
  }
  data::write_png(path, img);
}

}  // namespace rg::train
