#include "data/transforms.h"

#include <algorithm>
#include <cmath>

#include "engine/error.h"

namespace rg::data {
namespace {

constexpr double kDegToRad = 3.14159265358979323846 / 180.0;

// Resamples through a coordinate map: out(y, x) = img(map(x, y)).
template <typename Map>
Image2D remap(const Image2D& img, int64_t out_h, int64_t out_w, Interp interp, float fill,
              Map&& map) {
  Image2D out(out_h, out_w);
  for (int64_t y = 0; y < out_h; ++y)
    for (int64_t x = 0; x < out_w; ++x) {
      double sx, sy;
      map(static_cast<double>(x), static_cast<double>(y), sx, sy);
      out.at(y, x) = sample(img, sx, sy, interp, fill);
    }
  return out;
}

void check_image(const Image2D& img, const char* op) {
  RG_CHECK(img.height >= 0 && img.width >= 0 &&
               img.data.size() == static_cast<size_t>(img.height * img.width),
           op, ": image data has ", img.data.size(), " values for ", img.height, "x", img.width);
}

}  // namespace

namespace {
// Normalized Gaussian taps at -r..r, r = max(1, ceil(3 sigma)).
std::vector<double> gaussian_taps(double sigma) {
  const int64_t r = std::max<int64_t>(1, static_cast<int64_t>(std::ceil(3.0 * sigma)));
  std::vector<double> k(static_cast<size_t>(2 * r + 1));
  double sum = 0;
  for (int64_t i = -r; i <= r; ++i) sum += k[static_cast<size_t>(i + r)] = std::exp(-0.5 * (i * i) / (sigma * sigma));
  for (double& v : k) v /= sum;
  return k;
}
}  // namespace

void gaussian_blur(float* f, int64_t h, int64_t w, double sigma_y, double sigma_x) {
  std::vector<float> tmp(static_cast<size_t>(h * w));
  if (sigma_x > 0) {
    const std::vector<double> k = gaussian_taps(sigma_x);
    const int64_t r = static_cast<int64_t>(k.size() / 2);
    for (int64_t y = 0; y < h; ++y)
      for (int64_t x = 0; x < w; ++x) {
        double acc = 0;
        for (int64_t i = -r; i <= r; ++i)
          acc += k[static_cast<size_t>(i + r)] * f[y * w + std::clamp<int64_t>(x + i, 0, w - 1)];
        tmp[static_cast<size_t>(y * w + x)] = static_cast<float>(acc);
      }
    std::copy(tmp.begin(), tmp.end(), f);
  }
  if (sigma_y > 0) {
    const std::vector<double> k = gaussian_taps(sigma_y);
    const int64_t r = static_cast<int64_t>(k.size() / 2);
    for (int64_t y = 0; y < h; ++y)
      for (int64_t x = 0; x < w; ++x) {
        double acc = 0;
        for (int64_t i = -r; i <= r; ++i)
          acc += k[static_cast<size_t>(i + r)] * f[std::clamp<int64_t>(y + i, 0, h - 1) * w + x];
        tmp[static_cast<size_t>(y * w + x)] = static_cast<float>(acc);
      }
    std::copy(tmp.begin(), tmp.end(), f);
  }
}

float sample(const Image2D& img, double x, double y, Interp interp, float fill) {
  if (interp == Interp::Nearest) {
    const double fx = std::floor(x + 0.5), fy = std::floor(y + 0.5);
    if (fx < 0 || fy < 0 || fx >= static_cast<double>(img.width) ||
        fy >= static_cast<double>(img.height))
      return fill;
    return img.at(static_cast<int64_t>(fy), static_cast<int64_t>(fx));
  }
  // Bilinear; neighbours outside the image contribute `fill`, so edges fade to the background.
  if (x <= -1.0 || y <= -1.0 || x >= static_cast<double>(img.width) ||
      y >= static_cast<double>(img.height))
    return fill;
  const double x0f = std::floor(x), y0f = std::floor(y);
  const int64_t x0 = static_cast<int64_t>(x0f), y0 = static_cast<int64_t>(y0f);
  const double ax = x - x0f, ay = y - y0f;
  auto px = [&](int64_t yy, int64_t xx) -> double {
    if (xx < 0 || yy < 0 || xx >= img.width || yy >= img.height) return fill;
    return img.at(yy, xx);
  };
  const double top = px(y0, x0) * (1 - ax) + px(y0, x0 + 1) * ax;
  const double bot = px(y0 + 1, x0) * (1 - ax) + px(y0 + 1, x0 + 1) * ax;
  return static_cast<float>(top * (1 - ay) + bot * ay);
}

void flip_horizontal(Image2D& img) {
  check_image(img, "flip_horizontal");
  for (int64_t y = 0; y < img.height; ++y) {
    float* row = img.data.data() + y * img.width;
    std::reverse(row, row + img.width);
  }
}

void flip_vertical(Image2D& img) {
  check_image(img, "flip_vertical");
  for (int64_t y = 0; y < img.height / 2; ++y)
    std::swap_ranges(img.data.begin() + y * img.width, img.data.begin() + (y + 1) * img.width,
                     img.data.begin() + (img.height - 1 - y) * img.width);
}

Image2D rot90(const Image2D& img, int quarter_turns) {
  check_image(img, "rot90");
  const int q = ((quarter_turns % 4) + 4) % 4;
  const int64_t h = img.height, w = img.width;
  if (q == 0) return img;
  if (q == 2) {
    Image2D out = img;
    std::reverse(out.data.begin(), out.data.end());
    return out;
  }
  Image2D out(w, h);
  for (int64_t y = 0; y < w; ++y)
    for (int64_t x = 0; x < h; ++x)
      // q == 1 (counter-clockwise): the top-right corner moves to the top-left.
      out.at(y, x) = q == 1 ? img.at(x, w - 1 - y) : img.at(h - 1 - x, y);
  return out;
}

Image2D rotate(const Image2D& img, double degrees, Interp interp, float fill) {
  check_image(img, "rotate");
  const double c = std::cos(degrees * kDegToRad), s = std::sin(degrees * kDegToRad);
  const double cx = 0.5 * (img.width - 1), cy = 0.5 * (img.height - 1);
  return remap(img, img.height, img.width, interp, fill, [&](double x, double y, double& sx, double& sy) {
    const double dx = x - cx, dy = y - cy;
    sx = cx + c * dx - s * dy;
    sy = cy + s * dx + c * dy;
  });
}

Image2D zoom(const Image2D& img, double factor, Interp interp, float fill) {
  check_image(img, "zoom");
  RG_CHECK(factor > 0, "zoom: factor must be positive, got ", factor);
  const double cx = 0.5 * (img.width - 1), cy = 0.5 * (img.height - 1);
  return remap(img, img.height, img.width, interp, fill, [&](double x, double y, double& sx, double& sy) {
    sx = cx + (x - cx) / factor;
    sy = cy + (y - cy) / factor;
  });
}

Image2D crop_pad(const Image2D& img, int64_t top, int64_t left, int64_t out_h, int64_t out_w,
                 float fill) {
  check_image(img, "crop_pad");
  RG_CHECK(out_h > 0 && out_w > 0, "crop_pad: output size must be positive, got ", out_h, "x", out_w);
  Image2D out(out_h, out_w, fill);
  for (int64_t y = 0; y < out_h; ++y) {
    const int64_t sy = y + top;
    if (sy < 0 || sy >= img.height) continue;
    for (int64_t x = 0; x < out_w; ++x) {
      const int64_t sx = x + left;
      if (sx >= 0 && sx < img.width) out.at(y, x) = img.at(sy, sx);
    }
  }
  return out;
}

Image2D resize(const Image2D& img, int64_t out_h, int64_t out_w, Interp interp) {
  check_image(img, "resize");
  RG_CHECK(out_h > 0 && out_w > 0 && img.height > 0 && img.width > 0,
           "resize: sizes must be positive, got ", img.height, "x", img.width, " -> ", out_h, "x", out_w);
  const double fy = static_cast<double>(img.height) / out_h, fx = static_cast<double>(img.width) / out_w;
  return remap(img, out_h, out_w, interp, 0.0f, [&](double x, double y, double& sx, double& sy) {
    // Pixel-centre alignment, clamped so the borders never fade into a fill value.
    sx = std::clamp((x + 0.5) * fx - 0.5, 0.0, static_cast<double>(img.width - 1));
    sy = std::clamp((y + 0.5) * fy - 0.5, 0.0, static_cast<double>(img.height - 1));
  });
}

DisplacementField random_displacement_field(int64_t height, int64_t width, double alpha,
                                            double sigma, Rng& rng) {
  RG_CHECK(height > 0 && width > 0, "elastic: bad size ", height, "x", width);
  RG_CHECK(sigma > 0 && alpha >= 0, "elastic: need sigma > 0 and alpha >= 0, got sigma ", sigma,
           ", alpha ", alpha);
  // Work on a coarse grid (the field is smooth anyway), then upsample bilinearly.
  const int64_t f = std::max<int64_t>(1, static_cast<int64_t>(sigma / 3.0));
  const int64_t ch = (height + f - 1) / f + 1, cw = (width + f - 1) / f + 1;
  DisplacementField out;
  out.height = height;
  out.width = width;
  for (int axis = 0; axis < 2; ++axis) {
    std::vector<float> coarse(static_cast<size_t>(ch * cw));
    for (float& v : coarse) v = static_cast<float>(rng.normal());
    gaussian_blur(coarse.data(), ch, cw, sigma / static_cast<double>(f), sigma / static_cast<double>(f));
    double ss = 0;
    for (float v : coarse) ss += static_cast<double>(v) * v;
    const double rms = std::sqrt(ss / static_cast<double>(coarse.size()));
    const double gain = rms > 0 ? alpha / rms : 0.0;
    Image2D c(ch, cw);
    c.data = std::move(coarse);
    std::vector<float>& dst = axis == 0 ? out.dx : out.dy;
    dst.resize(static_cast<size_t>(height * width));
    for (int64_t y = 0; y < height; ++y)
      for (int64_t x = 0; x < width; ++x)
        dst[static_cast<size_t>(y * width + x)] = static_cast<float>(
            gain * sample(c, static_cast<double>(x) / f, static_cast<double>(y) / f, Interp::Bilinear, 0.0f));
  }
  return out;
}

Image2D warp(const Image2D& img, const DisplacementField& field, Interp interp, float fill) {
  check_image(img, "warp");
  RG_CHECK(field.height == img.height && field.width == img.width,
           "warp: field is ", field.height, "x", field.width, ", image ", img.height, "x", img.width);
  return remap(img, img.height, img.width, interp, fill, [&](double x, double y, double& sx, double& sy) {
    const size_t i = static_cast<size_t>(static_cast<int64_t>(y) * img.width + static_cast<int64_t>(x));
    sx = x + field.dx[i];
    sy = y + field.dy[i];
  });
}

AugmentOptions AugmentOptions::none() {
  AugmentOptions o;
  o.p_flip_h = 0;
  o.p_flip_v = 0;
  o.rot90 = false;
  o.rotate_deg = 0;
  o.scale_min = o.scale_max = 1;
  o.p_elastic = 0;
  o.crop_h = o.crop_w = 0;
  o.contrast = 0;
  o.brightness = 0;
  o.noise_sigma = 0;
  o.clamp = false;
  return o;
}

AugmentParams augment(Image2D& image, Image2D& mask, const AugmentOptions& o, uint64_t seed) {
  check_image(image, "augment");
  const bool has_mask = !mask.data.empty() || mask.height * mask.width != 0;
  if (has_mask) {
    check_image(mask, "augment");
    RG_CHECK(mask.same_shape(image), "augment: mask is ", mask.height, "x", mask.width,
             ", image ", image.height, "x", image.width);
  }
  RG_CHECK(o.scale_min > 0 && o.scale_max >= o.scale_min, "augment: bad scale range [",
           o.scale_min, ", ", o.scale_max, "]");
  RG_CHECK(o.crop_h >= 0 && o.crop_w >= 0 && (o.crop_h > 0) == (o.crop_w > 0),
           "augment: crop size must be both zero or both positive, got ", o.crop_h, "x", o.crop_w);

  // Draw every parameter first, in a fixed order.
  Rng rng(seed);
  AugmentParams p;
  p.flip_h = rng.uniform() < o.p_flip_h;
  p.flip_v = rng.uniform() < o.p_flip_v;
  const uint64_t q = rng.below(4);
  p.quarter_turns = (o.rot90 && image.height == image.width) ? static_cast<int>(q) : 0;
  const double a = rng.uniform(-1.0, 1.0);
  p.angle_deg = o.rotate_deg * a;
  const double sc = rng.uniform();
  p.scale = o.scale_min + (o.scale_max - o.scale_min) * sc;
  p.elastic = rng.uniform() < o.p_elastic && o.elastic_alpha > 0;
  const uint64_t elastic_seed = rng.next_u64();
  const int64_t h = p.quarter_turns % 2 ? image.width : image.height;
  const int64_t w = p.quarter_turns % 2 ? image.height : image.width;
  const int64_t oh = o.crop_h > 0 ? o.crop_h : h, ow = o.crop_w > 0 ? o.crop_w : w;
  auto offset = [&](int64_t have, int64_t want) -> int64_t {
    const int64_t span = std::abs(have - want);
    const int64_t r = static_cast<int64_t>(rng.below(static_cast<uint64_t>(span) + 1));
    return have >= want ? r : -r;  // crop inside, or place the image inside the padding
  };
  p.top = offset(h, oh);
  p.left = offset(w, ow);
  p.gain = 1.0 + o.contrast * rng.uniform(-1.0, 1.0);
  p.bias = o.brightness * rng.uniform(-1.0, 1.0);
  const uint64_t noise_seed = rng.next_u64();

  // ---- exact index transforms
  if (p.flip_h) {
    flip_horizontal(image);
    if (has_mask) flip_horizontal(mask);
  }
  if (p.flip_v) {
    flip_vertical(image);
    if (has_mask) flip_vertical(mask);
  }
  if (p.quarter_turns) {
    image = rot90(image, p.quarter_turns);
    if (has_mask) mask = rot90(mask, p.quarter_turns);
  }

  // ---- one fused resampling: output pixel -> crop offset -> elastic -> rotation/scale
  const bool resample = p.angle_deg != 0 || p.scale != 1 || p.elastic || oh != h || ow != w ||
                        p.top != 0 || p.left != 0;
  if (resample) {
    DisplacementField field;
    if (p.elastic) {
      Rng er(elastic_seed);
      field = random_displacement_field(oh, ow, o.elastic_alpha, o.elastic_sigma, er);
    }
    const double c = std::cos(p.angle_deg * kDegToRad), s = std::sin(p.angle_deg * kDegToRad);
    const double cx = 0.5 * (w - 1), cy = 0.5 * (h - 1);
    auto map = [&](double x, double y, double& sx, double& sy) {
      double fx = x + static_cast<double>(p.left), fy = y + static_cast<double>(p.top);
      if (p.elastic) {
        const size_t i = static_cast<size_t>(static_cast<int64_t>(y) * ow + static_cast<int64_t>(x));
        fx += field.dx[i];
        fy += field.dy[i];
      }
      const double dx = (fx - cx) / p.scale, dy = (fy - cy) / p.scale;
      sx = cx + c * dx - s * dy;
      sy = cy + s * dx + c * dy;
    };
    image = remap(image, oh, ow, o.image_interp, o.image_fill, map);
    if (has_mask) mask = remap(mask, oh, ow, Interp::Nearest, o.mask_fill, map);
  }

  // ---- intensity (image only)
  if (p.gain != 1.0 || p.bias != 0.0 || o.noise_sigma > 0 || o.clamp) {
    Rng nr(noise_seed);
    for (float& v : image.data) {
      double t = v * p.gain + p.bias;
      if (o.noise_sigma > 0) t += o.noise_sigma * nr.normal();
      if (o.clamp) t = std::clamp(t, -1.0, 1.0);
      v = static_cast<float>(t);
    }
  }
  return p;
}

}  // namespace rg::data
