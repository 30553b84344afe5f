// Internal helpers shared by the format readers/writers: whole-file and prefix reads, zlib
// (gzip and raw zlib streams), byte swapping, typed <-> float conversion with range checks,
// and write-to-temporary-then-rename output. Not part of the public data API.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace rg::data::detail {

// Hard ceiling on the bytes a header may make us allocate for one volume (16 GiB): a corrupt
// header that implies more is rejected before any allocation.
constexpr uint64_t kMaxVolumeBytes = uint64_t(16) << 30;
// deflate cannot expand by more than ~1032x; used to reject compressed files whose header
// implies more data than they could possibly hold.
constexpr uint64_t kMaxDeflateRatio = 1100;

bool file_exists(const std::string& path);
bool is_directory(const std::string& path);
uint64_t file_size(const std::string& path);  // throws naming the file if missing
// Reads [offset, offset + max_bytes) of the file (fewer bytes at end of file).
std::vector<uint8_t> read_file(const std::string& path, uint64_t offset = 0,
                               uint64_t max_bytes = UINT64_MAX);

bool is_gzip(const uint8_t* p, size_t n);  // 1f 8b magic
// Inflates a gzip (concatenated members allowed) or zlib stream, stopping after `max_out`
// output bytes. Throws naming `name` on corrupt data. A stream that simply ends early is not an
// error here (the caller checks the size it got).
std::vector<uint8_t> inflate_bytes(const uint8_t* p, size_t n, const std::string& name,
                                   uint64_t max_out = UINT64_MAX);
// gzip (gzip=true) or zlib (gzip=false) stream of the bytes.
std::vector<uint8_t> deflate_bytes(const uint8_t* p, size_t n, bool gzip, int level = 6);

// Writes `bytes` to `path` through `path + ".tmp-<pid>"` and a rename.
void write_file_atomic(const std::string& path, const std::vector<uint8_t>& bytes);

std::string lower(std::string s);
bool ends_with(const std::string& s, const std::string& suffix);  // case-insensitive
std::string dirname_of(const std::string& path);                   // "." when none

inline bool host_is_little_endian() { return std::endian::native == std::endian::little; }

inline void swap_bytes(uint8_t* p, size_t width) {
  for (size_t a = 0, b = width - 1; a < b; ++a, --b) std::swap(p[a], p[b]);
}

// Reads a T at p (unaligned), swapping when `swap`.
template <typename T>
T load(const uint8_t* p, bool swap) {
  uint8_t tmp[sizeof(T)];
  std::memcpy(tmp, p, sizeof(T));
  if (swap) swap_bytes(tmp, sizeof(T));
  T v;
  std::memcpy(&v, tmp, sizeof(T));
  return v;
}

template <typename T>
void store(uint8_t* p, T v) {
  std::memcpy(p, &v, sizeof(T));
}

// Element types the readers understand.
enum class Elem { U8, I8, I16, U16, I32, U32, I64, U64, F32, F64 };
size_t elem_size(Elem e);
const char* elem_name(Elem e);  // "uint8", "int16", ...

// Converts `count` elements at `src` (file byte order: swap when `swap`) to float, applying
// v * slope + inter when `scale`.
void convert_to_float(const uint8_t* src, Elem e, bool swap, int64_t count, float* dst,
                      bool scale = false, double slope = 1.0, double inter = 0.0);

// Converts floats to `e` (host byte order, or big-endian when `big_endian`), rounding to
// nearest for integer types. Throws naming `what` when a value is NaN or out of range.
std::vector<uint8_t> convert_from_float(const float* src, int64_t count, Elem e,
                                        const std::string& what, bool big_endian = false);

// Multiplies sizes with overflow detection; returns false on overflow or any size <= 0.
bool checked_product(const int64_t* sizes, int n, uint64_t elem_bytes, uint64_t* out);

}  // namespace rg::data::detail
