// 2-D data augmentation for (image, mask) slice pairs, deterministic under a seed.
//
// Geometry is applied identically to the image and its mask: the image is resampled bilinearly
// (or nearest, by option), the mask always nearest-neighbour so it stays binary. Flips and 90°
// rotations are exact index permutations; rotation, scaling, elastic deformation and random
// crop/pad are fused into one resampling pass (one interpolation, no accumulated blur).
// Intensity jitter and noise touch only the image.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "data/rng.h"

namespace rg::data {

// A single-channel float image, row-major: pixel (y, x) is data[y * width + x].
struct Image2D {
  int64_t height = 0, width = 0;
  std::vector<float> data;

  Image2D() = default;
  Image2D(int64_t h, int64_t w, float value = 0.0f)
      : height(h), width(w), data(static_cast<size_t>(h * w), value) {}
  float& at(int64_t y, int64_t x) { return data[static_cast<size_t>(y * width + x)]; }
  float at(int64_t y, int64_t x) const { return data[static_cast<size_t>(y * width + x)]; }
  bool same_shape(const Image2D& o) const { return height == o.height && width == o.width; }
};

enum class Interp { Nearest, Bilinear };

// Samples `img` at continuous pixel coordinates (x, y) (pixel centres at integers); points
// outside the image give `fill`.
float sample(const Image2D& img, double x, double y, Interp interp, float fill);

// ---- exact index transforms (their own inverses, or inverted by the opposite turn)
void flip_horizontal(Image2D& img);  // mirror left-right (columns reversed)
void flip_vertical(Image2D& img);    // mirror top-bottom (rows reversed)
// Rotates by quarter_turns * 90° counter-clockwise (as displayed, row 0 at the top); any
// integer, negative = clockwise. Non-square images swap height and width.
Image2D rot90(const Image2D& img, int quarter_turns);

// ---- resampling transforms (same output size unless stated)
// Rotation by `degrees` counter-clockwise about the image centre.
Image2D rotate(const Image2D& img, double degrees, Interp interp, float fill);
// Zoom about the centre by `factor` (> 1 enlarges the content).
Image2D zoom(const Image2D& img, double factor, Interp interp, float fill);
// The out_h x out_w window whose top-left pixel is (top, left) in `img`; the window may extend
// past the image (negative top/left pad before, large ones pad after) with `fill`.
Image2D crop_pad(const Image2D& img, int64_t top, int64_t left, int64_t out_h, int64_t out_w,
                 float fill);
// Resize to out_h x out_w (pixel-centre aligned), no anti-aliasing.
Image2D resize(const Image2D& img, int64_t out_h, int64_t out_w, Interp interp);

// A smooth random displacement field (pixels) for elastic deformation: Gaussian-smoothed white
// noise, normalized so its RMS displacement per axis is `alpha` pixels; `sigma` (pixels) sets
// the smoothness.
struct DisplacementField {
  int64_t height = 0, width = 0;
  std::vector<float> dx, dy;
};
DisplacementField random_displacement_field(int64_t height, int64_t width, double alpha,
                                            double sigma, Rng& rng);
// out(y, x) = img(y + dy, x + dx).
Image2D warp(const Image2D& img, const DisplacementField& field, Interp interp, float fill);

// ---- random augmentation
struct AugmentOptions {
  double p_flip_h = 0.5;      // probability of a left-right flip
  double p_flip_v = 0.0;      // probability of a top-bottom flip
  bool rot90 = false;         // random multiple of 90° (square images only, else ignored)
  double rotate_deg = 10.0;   // rotation angle uniform in [-rotate_deg, rotate_deg]
  double scale_min = 0.9;     // zoom factor uniform in [scale_min, scale_max]
  double scale_max = 1.1;
  double p_elastic = 0.0;     // probability of an elastic deformation
  double elastic_alpha = 4.0; // RMS displacement in pixels
  double elastic_sigma = 12.0;// smoothness in pixels
  int64_t crop_h = 0;         // random crop/pad to crop_h x crop_w (0 = keep the input size)
  int64_t crop_w = 0;
  double contrast = 0.1;      // image = image * U(1-contrast, 1+contrast) + U(-brightness, brightness)
  double brightness = 0.1;
  double noise_sigma = 0.02;  // additive Gaussian noise on the image
  bool clamp = true;          // clamp the image to [-1, 1] afterwards
  Interp image_interp = Interp::Bilinear;  // the mask always uses Nearest
  float image_fill = -1.0f;   // background of a [-1, 1] image
  float mask_fill = 0.0f;

  // Everything off: the identity (a convenient starting point for tests and eval loaders).
  static AugmentOptions none();
};

// The random parameters drawn for one call of augment() (for inspection and tests).
struct AugmentParams {
  bool flip_h = false, flip_v = false;
  int quarter_turns = 0;
  double angle_deg = 0, scale = 1;
  bool elastic = false;
  int64_t top = 0, left = 0;  // crop/pad offset
  double gain = 1, bias = 0;
};

// Applies one random draw of the options to image and mask (same geometry for both). The same
// seed and inputs always give the same outputs. image and mask must have the same shape
// (mask may be empty: only the image is transformed). Returns the parameters used.
AugmentParams augment(Image2D& image, Image2D& mask, const AugmentOptions& options, uint64_t seed);

// Separable Gaussian blur of an h x w row-major field in place (clamped borders; taps out to
// max(1, ceil(3 sigma)); an axis with sigma <= 0 is left alone). Elastic deformation fields and
// the phantom's MR point spread use it.
void gaussian_blur(float* field, int64_t h, int64_t w, double sigma_y, double sigma_x);

}  // namespace rg::data
