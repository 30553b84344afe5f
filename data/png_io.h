// PNG reading and writing (libpng): 8-bit gray / gray+alpha / RGB / RGBA.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/volume.h"

namespace rg::data {

// An 8-bit image, rows top to bottom, channels interleaved: pixel (x, y) channel c is
// pixels[(y * width + x) * channels + c]. channels: 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA.
struct Image8 {
  int width = 0, height = 0, channels = 1;
  std::vector<uint8_t> pixels;
};

// Writes an 8-bit PNG. Throws if the sizes disagree or the file cannot be written; writes a
// temporary file then renames.
void write_png(const std::string& path, const Image8& img);
void write_png(const std::string& path, const uint8_t* pixels, int width, int height, int channels);

// Reads any PNG, converted to 8 bits per channel (palette -> RGB, 16-bit -> 8-bit by dropping
// the low byte, transparency chunks -> alpha). Channels as stored (1..4).
Image8 read_png(const std::string& path);

// Reads a gray PNG as a 2-D volume (dims {width, height, 1}); 16-bit values are kept exactly.
// Voxel (i, j) is column i, row j (top row j = 0); identity affine. Colour PNGs throw.
Volume read_png_volume(const std::string& path);

}  // namespace rg::data
