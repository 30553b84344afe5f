#include "data/png_io.h"

#include <png.h>

#include <csetjmp>
#include <cstdio>
#include <cstring>

#include "data/format_util.h"
#include "engine/error.h"

namespace rg::data {

namespace {

// libpng reports errors by longjmp. Everything with a destructor lives in the callers of the
// functions that call setjmp, so no destructor is ever skipped.
struct PngError {
  char msg[256] = {0};
};

void on_error(png_structp png, png_const_charp msg) {
  auto* e = static_cast<PngError*>(png_get_error_ptr(png));
  std::snprintf(e->msg, sizeof(e->msg), "%s", msg ? msg : "libpng error");
  png_longjmp(png, 1);
}

void on_warning(png_structp, png_const_charp) {}

struct RawPng {
  int width = 0, height = 0, channels = 0, depth = 0;  // depth 8 or 16 after the transforms
  std::vector<uint8_t> rows;                           // height * width * channels * depth/8
};

struct MemReader {
  const uint8_t* data;
  size_t size, pos;
};

void read_from_mem(png_structp png, png_bytep out, png_size_t n) {
  auto* r = static_cast<MemReader*>(png_get_io_ptr(png));
  if (n > r->size - r->pos) png_error(png, "file is truncated");
  std::memcpy(out, r->data + r->pos, n);
  r->pos += n;
}

// Decodes a whole PNG held in memory. Returns false and fills err on failure.
bool decode_png(MemReader* src, bool alpha_from_trns, RawPng* out, std::vector<png_bytep>* row_ptrs,
                PngError* err) {
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, err, on_error, on_warning);
  if (!png) {
    std::snprintf(err->msg, sizeof(err->msg), "cannot create a libpng reader");
    return false;
  }
  png_infop info = png_create_info_struct(png);
  if (!info || setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, nullptr);
    if (!err->msg[0]) std::snprintf(err->msg, sizeof(err->msg), "libpng error");
    return false;
  }
  png_set_user_limits(png, 1u << 16, 1u << 16);
  png_set_read_fn(png, src, read_from_mem);
  png_read_info(png, info);
  const int color = png_get_color_type(png, info);
  const int bit_depth = png_get_bit_depth(png, info);
  if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (color == PNG_COLOR_TYPE_GRAY && bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  if (alpha_from_trns && png_get_valid(png, info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  out->width = static_cast<int>(png_get_image_width(png, info));
  out->height = static_cast<int>(png_get_image_height(png, info));
  out->channels = png_get_channels(png, info);
  out->depth = png_get_bit_depth(png, info);
  const size_t rowbytes = png_get_rowbytes(png, info);
  out->rows.resize(rowbytes * static_cast<size_t>(out->height));
  row_ptrs->resize(static_cast<size_t>(out->height));
  for (int y = 0; y < out->height; ++y) (*row_ptrs)[y] = out->rows.data() + rowbytes * y;
  png_read_image(png, row_ptrs->data());
  png_read_end(png, nullptr);
  png_destroy_read_struct(&png, &info, nullptr);
  return true;
}

RawPng load_png(const std::string& path, bool alpha_from_trns) {
  const auto bytes = detail::read_file(path);
  RG_CHECK(bytes.size() >= 8 && png_sig_cmp(bytes.data(), 0, 8) == 0, path,
           ": not a PNG file (wrong signature)");
  MemReader src{bytes.data(), bytes.size(), 0};
  RawPng raw;
  std::vector<png_bytep> row_ptrs;
  PngError err;
  const bool ok = decode_png(&src, alpha_from_trns, &raw, &row_ptrs, &err);
  RG_CHECK(ok, path, ": cannot decode PNG: ", err.msg);
  RG_CHECK(raw.depth == 8 || raw.depth == 16, path, ": unexpected PNG bit depth ", raw.depth);
  return raw;
}

}  // namespace

void write_png(const std::string& path, const uint8_t* pixels, int width, int height, int channels) {
  RG_CHECK(width > 0 && height > 0 && width <= (1 << 16) && height <= (1 << 16), path,
           ": bad PNG size ", width, " x ", height);
  RG_CHECK(channels >= 1 && channels <= 4, path, ": PNG channels must be 1..4, got ", channels);
  RG_CHECK(pixels != nullptr, path, ": no pixel data");
  png_image image;
  std::memset(&image, 0, sizeof(image));
  image.version = PNG_IMAGE_VERSION;
  image.width = static_cast<png_uint_32>(width);
  image.height = static_cast<png_uint_32>(height);
  static const png_uint_32 formats[] = {PNG_FORMAT_GRAY, PNG_FORMAT_GA, PNG_FORMAT_RGB, PNG_FORMAT_RGBA};
  image.format = formats[channels - 1];
  png_alloc_size_t size = 0;
  // First call: ask for the size; second: encode.
  if (!png_image_write_to_memory(&image, nullptr, &size, 0, pixels, 0, nullptr)) {
    const std::string msg = image.message;
    png_image_free(&image);
    RG_FAIL(path, ": cannot encode PNG: ", msg);
  }
  std::vector<uint8_t> out(size);
  if (!png_image_write_to_memory(&image, out.data(), &size, 0, pixels, 0, nullptr)) {
    const std::string msg = image.message;
    png_image_free(&image);
    RG_FAIL(path, ": cannot encode PNG: ", msg);
  }
  out.resize(size);
  png_image_free(&image);
  detail::write_file_atomic(path, out);
}

void write_png(const std::string& path, const Image8& img) {
  RG_CHECK(img.pixels.size() == static_cast<size_t>(img.width) * static_cast<size_t>(img.height) *
                                    static_cast<size_t>(img.channels) &&
               img.width > 0 && img.height > 0,
           path, ": image has ", img.pixels.size(), " bytes but ", img.width, " x ", img.height,
           " x ", img.channels, " channels needs ",
           static_cast<int64_t>(img.width) * img.height * img.channels);
  write_png(path, img.pixels.data(), img.width, img.height, img.channels);
}

Image8 read_png(const std::string& path) {
  const RawPng raw = load_png(path, /*alpha_from_trns=*/true);
  Image8 img;
  img.width = raw.width;
  img.height = raw.height;
  img.channels = raw.channels;
  const size_t n = static_cast<size_t>(raw.width) * raw.height * raw.channels;
  img.pixels.resize(n);
  if (raw.depth == 8) {
    std::memcpy(img.pixels.data(), raw.rows.data(), n);
  } else {
    for (size_t i = 0; i < n; ++i) img.pixels[i] = raw.rows[2 * i];  // PNG is big-endian: high byte
  }
  return img;
}

Volume read_png_volume(const std::string& path) {
  const RawPng raw = load_png(path, /*alpha_from_trns=*/false);
  RG_CHECK(raw.channels == 1, path, ": a ", raw.channels,
           "-channel PNG cannot be read as a volume; expected a gray image");
  Volume v;
  v.dims = {raw.width, raw.height, 1};
  const size_t n = static_cast<size_t>(raw.width) * raw.height;
  v.voxels.resize(n);
  if (raw.depth == 8) {
    for (size_t i = 0; i < n; ++i) v.voxels[i] = raw.rows[i];
  } else {
    for (size_t i = 0; i < n; ++i) v.voxels[i] = static_cast<float>((raw.rows[2 * i] << 8) | raw.rows[2 * i + 1]);
  }
  v.source_dtype = raw.depth == 8 ? "uint8" : "uint16";
  v.source = path;
  return v;
}

}  // namespace rg::data
