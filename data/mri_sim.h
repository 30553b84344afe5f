// MRI super-resolution pairs from one high-resolution slice (issue 17): two ways to make the
// low-resolution acquisition, and the bicubic upsampling that puts it back on the target grid
// (both the network's input and the baseline a model has to beat).
//
//   k-space truncation by f per in-plane axis: the central (h/f) x (w/f) block of the slice's
//     2-D DFT, inverse-transformed at that size and divided by f^2 so intensities keep their
//     scale; low-resolution pixel u is centred on its f x f block (fine coordinate
//     f u + (f - 1) / 2, a phase shift in k-space), as the bicubic upsampling assumes. This is what an acquisition with f times fewer phase and frequency encodes gives.
//   Gaussian blur + downsampling by f: a Gaussian of standard deviation sigma (fine-grid
//     pixels; default f / 2), then the blurred image sampled at the centres of the f x f
//     blocks.
//   Bicubic: Keys' cubic convolution (a = -0.5), pixel centres aligned (output pixel u maps to
//     input (u + 0.5) * in / out - 0.5), edge pixels repeated outside the image.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace rg::data {

// h x w -> (h/f) x (w/f); h and w must be divisible by f (error names the sizes).
std::vector<float> kspace_truncate(const std::vector<float>& image, int64_t h, int64_t w, int factor);
std::vector<float> blur_downsample(const std::vector<float>& image, int64_t h, int64_t w, int factor,
                                   double sigma = 0);  // sigma <= 0: factor / 2
// Gaussian blur (separable, kernel truncated at 3 sigma, edges repeated).
std::vector<float> gaussian_blur(const std::vector<float>& image, int64_t h, int64_t w, double sigma);
std::vector<float> resize_bicubic(const std::vector<float>& image, int64_t h, int64_t w, int64_t out_h,
                                  int64_t out_w);

enum class SrDegradation { Kspace, Blur };
SrDegradation parse_sr_degradation(const std::string& name);  // "kspace" | "blur"
const char* sr_degradation_name(SrDegradation d);

// The network input of a super-resolution pair: degrade by `factor`, upsample back bicubically.
std::vector<float> simulate_low_resolution(const std::vector<float>& image, int64_t h, int64_t w,
                                           SrDegradation degradation, int factor, double sigma = 0);

}  // namespace rg::data
