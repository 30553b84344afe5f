#include "data/format_util.h"

#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <type_traits>

#include "engine/error.h"

namespace fs = std::filesystem;

namespace rg::data::detail {

bool file_exists(const std::string& path) {
  std::error_code ec;
  return fs::exists(path, ec);
}

bool is_directory(const std::string& path) {
  std::error_code ec;
  return fs::is_directory(path, ec);
}

uint64_t file_size(const std::string& path) {
  std::error_code ec;
  RG_CHECK(fs::exists(path, ec), path, ": no such file");
  RG_CHECK(!fs::is_directory(path, ec), path, ": is a directory, expected a file");
  const auto n = fs::file_size(path, ec);
  RG_CHECK(!ec, path, ": cannot get the file size: ", ec.message());
  return n;
}

std::vector<uint8_t> read_file(const std::string& path, uint64_t offset, uint64_t max_bytes) {
  const uint64_t size = file_size(path);
  std::ifstream in(path, std::ios::binary);
  RG_CHECK(in.good(), path, ": cannot open for reading");
  if (offset >= size) return {};
  const uint64_t n = std::min<uint64_t>(max_bytes, size - offset);
  std::vector<uint8_t> out(n);
  in.seekg(static_cast<std::streamoff>(offset));
  in.read(reinterpret_cast<char*>(out.data()), static_cast<std::streamsize>(n));
  RG_CHECK(static_cast<uint64_t>(in.gcount()) == n, path, ": read error (got ", in.gcount(),
           " of ", n, " bytes)");
  return out;
}

bool is_gzip(const uint8_t* p, size_t n) { return n >= 2 && p[0] == 0x1f && p[1] == 0x8b; }

std::vector<uint8_t> inflate_bytes(const uint8_t* p, size_t n, const std::string& name,
                                   uint64_t max_out) {
  std::vector<uint8_t> out;
  if (n == 0 || max_out == 0) return out;
  z_stream zs{};
  // 15 + 32: accept zlib and gzip headers automatically.
  RG_CHECK(inflateInit2(&zs, 15 + 32) == Z_OK, name, ": zlib inflateInit failed");
  size_t in_pos = 0;
  const size_t chunk = 1 << 20;
  std::string error;
  while (out.size() < max_out) {
    const uint64_t want = std::min<uint64_t>(chunk, max_out - out.size());
    const size_t old = out.size();
    out.resize(old + want);
    zs.next_out = out.data() + old;
    zs.avail_out = static_cast<uInt>(want);
    const size_t in_avail = std::min<size_t>(n - in_pos, size_t(1) << 30);
    zs.next_in = const_cast<Bytef*>(p + in_pos);
    zs.avail_in = static_cast<uInt>(in_avail);
    const int rc = inflate(&zs, Z_NO_FLUSH);
    const size_t produced = want - zs.avail_out;
    in_pos += in_avail - zs.avail_in;
    out.resize(old + produced);
    if (rc == Z_STREAM_END) {
      // Another gzip member may follow (concatenated .gz files are valid gzip).
      if (in_pos + 2 <= n && is_gzip(p + in_pos, n - in_pos)) {
        inflateReset(&zs);
        continue;
      }
      break;
    }
    if (rc == Z_BUF_ERROR) {
      if (in_pos >= n) break;  // input ended early: truncated stream; caller checks the size
      if (produced == 0 && zs.avail_in == in_avail) {
        error = "zlib made no progress";
        break;
      }
      continue;
    }
    if (rc != Z_OK) {
      error = zs.msg ? zs.msg : ("zlib error " + std::to_string(rc));
      break;
    }
    if (in_pos >= n && produced < want) break;  // all input consumed, stream not ended
  }
  inflateEnd(&zs);
  RG_CHECK(error.empty(), name, ": corrupt compressed data (", error, ")");
  return out;
}

std::vector<uint8_t> deflate_bytes(const uint8_t* p, size_t n, bool gzip, int level) {
  z_stream zs{};
  RG_CHECK(deflateInit2(&zs, level, Z_DEFLATED, gzip ? 15 + 16 : 15, 8, Z_DEFAULT_STRATEGY) == Z_OK,
           "zlib deflateInit failed");
  std::vector<uint8_t> out;
  size_t in_pos = 0;
  int rc = Z_OK;
  const size_t chunk = 1 << 20;
  do {
    const size_t in_avail = std::min<size_t>(n - in_pos, size_t(1) << 30);
    zs.next_in = const_cast<Bytef*>(p + in_pos);
    zs.avail_in = static_cast<uInt>(in_avail);
    const int flush = (in_pos + in_avail == n) ? Z_FINISH : Z_NO_FLUSH;
    do {
      const size_t old = out.size();
      out.resize(old + chunk);
      zs.next_out = out.data() + old;
      zs.avail_out = static_cast<uInt>(chunk);
      rc = deflate(&zs, flush);
      out.resize(old + chunk - zs.avail_out);
    } while (zs.avail_out == 0);
    in_pos += in_avail;
  } while (rc != Z_STREAM_END && in_pos < n);
  while (rc != Z_STREAM_END) {  // finish (input already fully given)
    const size_t old = out.size();
    out.resize(old + chunk);
    zs.next_out = out.data() + old;
    zs.avail_out = static_cast<uInt>(chunk);
    rc = deflate(&zs, Z_FINISH);
    out.resize(old + chunk - zs.avail_out);
    if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR) break;
  }
  deflateEnd(&zs);
  RG_CHECK(rc == Z_STREAM_END, "zlib deflate failed (", rc, ")");
  return out;
}

void write_file_atomic(const std::string& path, const std::vector<uint8_t>& bytes) {
  const std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    RG_CHECK(out.good(), path, ": cannot open for writing");
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    out.flush();
    if (!out.good()) {
      out.close();
      std::remove(tmp.c_str());
      RG_FAIL(path, ": write failed (disk full?)");
    }
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    std::remove(tmp.c_str());
    RG_FAIL(path, ": cannot rename the temporary file into place: ", ec.message());
  }
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  if (s.size() < suffix.size()) return false;
  return lower(s.substr(s.size() - suffix.size())) == lower(suffix);
}

std::string dirname_of(const std::string& path) {
  const fs::path p(path);
  const auto parent = p.parent_path();
  return parent.empty() ? std::string(".") : parent.string();
}

size_t elem_size(Elem e) {
  switch (e) {
    case Elem::U8: case Elem::I8: return 1;
    case Elem::I16: case Elem::U16: return 2;
    case Elem::I32: case Elem::U32: case Elem::F32: return 4;
    case Elem::I64: case Elem::U64: case Elem::F64: return 8;
  }
  return 1;
}

const char* elem_name(Elem e) {
  switch (e) {
    case Elem::U8: return "uint8";
    case Elem::I8: return "int8";
    case Elem::I16: return "int16";
    case Elem::U16: return "uint16";
    case Elem::I32: return "int32";
    case Elem::U32: return "uint32";
    case Elem::I64: return "int64";
    case Elem::U64: return "uint64";
    case Elem::F32: return "float32";
    case Elem::F64: return "float64";
  }
  return "?";
}

namespace {
template <typename T>
void convert_typed(const uint8_t* src, bool swap, int64_t count, float* dst, bool scale,
                   double slope, double inter) {
  if (scale) {
    for (int64_t i = 0; i < count; ++i)
      dst[i] = static_cast<float>(static_cast<double>(load<T>(src + i * sizeof(T), swap)) * slope + inter);
  } else {
    for (int64_t i = 0; i < count; ++i)
      dst[i] = static_cast<float>(load<T>(src + i * sizeof(T), swap));
  }
}

template <typename T>
void from_float_typed(const float* src, int64_t count, uint8_t* dst, bool swap,
                      const std::string& what) {
  for (int64_t i = 0; i < count; ++i) {
    T v;
    if constexpr (std::is_floating_point_v<T>) {
      v = static_cast<T>(src[i]);
    } else {
      const double x = std::nearbyint(static_cast<double>(src[i]));
      // For 64-bit types max() is not representable: (double)max() rounds up to 2^63 / 2^64,
      // which itself must be excluded.
      constexpr double lo = static_cast<double>(std::numeric_limits<T>::min());
      constexpr double hi = static_cast<double>(std::numeric_limits<T>::max());
      const bool in_range = sizeof(T) < 8 ? (x >= lo && x <= hi) : (x >= lo && x < hi);
      RG_CHECK(!std::isnan(x) && in_range,
               what, ": voxel ", i, " value ", src[i], " does not fit the output type (range ",
               +std::numeric_limits<T>::min(), "..", +std::numeric_limits<T>::max(), ")");
      v = static_cast<T>(x);
    }
    uint8_t* p = dst + i * sizeof(T);
    std::memcpy(p, &v, sizeof(T));
    if (swap) swap_bytes(p, sizeof(T));
  }
}
}  // namespace

void convert_to_float(const uint8_t* src, Elem e, bool swap, int64_t count, float* dst, bool scale,
                      double slope, double inter) {
  switch (e) {
    case Elem::U8: return convert_typed<uint8_t>(src, false, count, dst, scale, slope, inter);
    case Elem::I8: return convert_typed<int8_t>(src, false, count, dst, scale, slope, inter);
    case Elem::I16: return convert_typed<int16_t>(src, swap, count, dst, scale, slope, inter);
    case Elem::U16: return convert_typed<uint16_t>(src, swap, count, dst, scale, slope, inter);
    case Elem::I32: return convert_typed<int32_t>(src, swap, count, dst, scale, slope, inter);
    case Elem::U32: return convert_typed<uint32_t>(src, swap, count, dst, scale, slope, inter);
    case Elem::I64: return convert_typed<int64_t>(src, swap, count, dst, scale, slope, inter);
    case Elem::U64: return convert_typed<uint64_t>(src, swap, count, dst, scale, slope, inter);
    case Elem::F32: return convert_typed<float>(src, swap, count, dst, scale, slope, inter);
    case Elem::F64: return convert_typed<double>(src, swap, count, dst, scale, slope, inter);
  }
}

std::vector<uint8_t> convert_from_float(const float* src, int64_t count, Elem e,
                                        const std::string& what, bool big_endian) {
  std::vector<uint8_t> out(static_cast<size_t>(count) * elem_size(e));
  const bool swap = big_endian == host_is_little_endian();
  uint8_t* d = out.data();
  switch (e) {
    case Elem::U8: from_float_typed<uint8_t>(src, count, d, false, what); break;
    case Elem::I8: from_float_typed<int8_t>(src, count, d, false, what); break;
    case Elem::I16: from_float_typed<int16_t>(src, count, d, swap, what); break;
    case Elem::U16: from_float_typed<uint16_t>(src, count, d, swap, what); break;
    case Elem::I32: from_float_typed<int32_t>(src, count, d, swap, what); break;
    case Elem::U32: from_float_typed<uint32_t>(src, count, d, swap, what); break;
    case Elem::I64: from_float_typed<int64_t>(src, count, d, swap, what); break;
    case Elem::U64: from_float_typed<uint64_t>(src, count, d, swap, what); break;
    case Elem::F32: from_float_typed<float>(src, count, d, swap, what); break;
    case Elem::F64: from_float_typed<double>(src, count, d, swap, what); break;
  }
  return out;
}

bool checked_product(const int64_t* sizes, int n, uint64_t elem_bytes, uint64_t* out) {
  uint64_t p = elem_bytes;
  for (int i = 0; i < n; ++i) {
    if (sizes[i] <= 0) return false;
    const uint64_t s = static_cast<uint64_t>(sizes[i]);
    if (p != 0 && s > UINT64_MAX / p) return false;
    p *= s;
  }
  *out = p;
  return true;
}

}  // namespace rg::data::detail
