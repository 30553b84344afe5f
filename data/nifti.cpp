#include "data/nifti.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "data/format_util.h"
#include "engine/error.h"

namespace rg::data {

using detail::Elem;
using detail::load;

namespace {

constexpr int kDT_UINT8 = 2, kDT_INT16 = 4, kDT_INT32 = 8, kDT_FLOAT32 = 16, kDT_COMPLEX64 = 32,
              kDT_FLOAT64 = 64, kDT_RGB24 = 128, kDT_INT8 = 256, kDT_UINT16 = 512,
              kDT_UINT32 = 768, kDT_INT64 = 1024, kDT_UINT64 = 1280, kDT_FLOAT128 = 1536,
              kDT_COMPLEX128 = 1792, kDT_COMPLEX256 = 2048, kDT_RGBA32 = 2304, kDT_BINARY = 1;

bool datatype_elem(int dt, Elem* e) {
  switch (dt) {
    case kDT_UINT8: *e = Elem::U8; return true;
    case kDT_INT8: *e = Elem::I8; return true;
    case kDT_INT16: *e = Elem::I16; return true;
    case kDT_UINT16: *e = Elem::U16; return true;
    case kDT_INT32: *e = Elem::I32; return true;
    case kDT_UINT32: *e = Elem::U32; return true;
    case kDT_INT64: *e = Elem::I64; return true;
    case kDT_UINT64: *e = Elem::U64; return true;
    case kDT_FLOAT32: *e = Elem::F32; return true;
    case kDT_FLOAT64: *e = Elem::F64; return true;
    default: return false;
  }
}

int out_datatype(NiftiOut o, Elem* e) {
  switch (o) {
    case NiftiOut::UInt8: *e = Elem::U8; return kDT_UINT8;
    case NiftiOut::Int8: *e = Elem::I8; return kDT_INT8;
    case NiftiOut::Int16: *e = Elem::I16; return kDT_INT16;
    case NiftiOut::UInt16: *e = Elem::U16; return kDT_UINT16;
    case NiftiOut::Int32: *e = Elem::I32; return kDT_INT32;
    case NiftiOut::Float32: *e = Elem::F32; return kDT_FLOAT32;
    case NiftiOut::Float64: *e = Elem::F64; return kDT_FLOAT64;
  }
  RG_FAIL("write_nifti: unknown output datatype");
}

std::string fixed_string(const uint8_t* p, size_t n) {
  size_t len = 0;
  while (len < n && p[len] != 0) ++len;
  return std::string(reinterpret_cast<const char*>(p), len);
}

double units_to_mm(int xyzt_units) {
  switch (xyzt_units & 0x07) {
    case 1: return 1000.0;  // meters
    case 3: return 0.001;   // microns
    default: return 1.0;    // mm, or unknown (assume mm)
  }
}

// Where one volume's bytes are, relative to the start of the data file.
struct Layout {
  Elem elem;
  std::array<int64_t, 3> dims;
  int64_t count = 0;      // voxels in one 3-D volume
  uint64_t vol_bytes = 0;
  uint64_t start = 0;     // byte offset of the chosen volume (vox_offset included)
  uint64_t end = 0;       // start + vol_bytes
};

Layout compute_layout(const NiftiHeader& h, int64_t volume_index, const std::string& name) {
  Layout L;
  RG_CHECK(datatype_elem(h.datatype, &L.elem), name, ": unsupported NIfTI datatype ",
           nifti_datatype_name(h.datatype), " (supported: uint8, int8, int16, uint16, int32, "
           "uint32, int64, uint64, float32, float64)");
  L.dims = {h.dim[1], h.dim[2], h.dim[3]};
  uint64_t vol_bytes = 0;
  RG_CHECK(detail::checked_product(L.dims.data(), 3, detail::elem_size(L.elem), &vol_bytes) &&
               vol_bytes <= detail::kMaxVolumeBytes,
           name, ": absurd volume size in the header (dims ", L.dims[0], " x ", L.dims[1], " x ",
           L.dims[2], ", datatype ", nifti_datatype_name(h.datatype), ")");
  uint64_t nvol = 0;
  RG_CHECK(detail::checked_product(h.dim.data() + 4, 4, 1, &nvol), name,
           ": absurd number of volumes in the header (dim[4..7] = ", h.dim[4], ", ", h.dim[5], ", ",
           h.dim[6], ", ", h.dim[7], ")");
  RG_CHECK(volume_index >= 0 && static_cast<uint64_t>(volume_index) < nvol, name,
           ": volume index ", volume_index, " out of range (the file has ", nvol, " volumes)");
  L.count = L.dims[0] * L.dims[1] * L.dims[2];
  L.vol_bytes = vol_bytes;
  const uint64_t skip = static_cast<uint64_t>(volume_index) * vol_bytes;  // < nvol * vol_bytes
  RG_CHECK(vol_bytes == 0 || static_cast<uint64_t>(volume_index) <= (UINT64_MAX / 2) / vol_bytes,
           name, ": absurd volume offset");
  L.start = static_cast<uint64_t>(h.vox_offset) + skip;
  L.end = L.start + vol_bytes;
  return L;
}

// `bytes` holds the data file's bytes from file offset `base` on.
Volume build_volume(const NiftiHeader& h, const Layout& L, const uint8_t* bytes, size_t n,
                    uint64_t base, const std::string& name, const std::string& data_name) {
  const uint64_t avail = base + n;
  RG_CHECK(L.start >= base && avail >= L.end, data_name,
           ": data shorter than the header says: need ", L.end, " bytes (", L.dims[0], " x ",
           L.dims[1], " x ", L.dims[2], " ", detail::elem_name(L.elem), " from offset ", L.start,
           "), the data has ", avail);
  Volume v;
  v.dims = L.dims;
  v.affine = nifti_affine(h);
  const double unit = units_to_mm(h.xyzt_units);
  for (int a = 0; a < 3; ++a) {
    double s = std::fabs(h.pixdim[a + 1]) * unit;
    if (!(s > 0) || !std::isfinite(s)) {
      // Fall back to the affine's column length, then to 1 mm.
      s = std::sqrt(v.affine[0][a] * v.affine[0][a] + v.affine[1][a] * v.affine[1][a] +
                    v.affine[2][a] * v.affine[2][a]);
      if (!(s > 0) || !std::isfinite(s)) s = 1.0;
    }
    v.spacing[a] = s;
  }
  v.voxels.resize(static_cast<size_t>(L.count));
  const bool scale = h.scl_slope != 0 && std::isfinite(h.scl_slope) && std::isfinite(h.scl_inter) &&
                     !(h.scl_slope == 1 && h.scl_inter == 0);
  detail::convert_to_float(bytes + (L.start - base), L.elem, h.swapped, L.count, v.voxels.data(),
                           scale, h.scl_slope, h.scl_inter);
  v.source_dtype = detail::elem_name(L.elem);
  v.source = name;
  return v;
}

// Upper bound on the header size we need to see (the larger of the two versions).
constexpr size_t kMaxHeader = 540;

std::vector<uint8_t> maybe_inflate(const uint8_t* p, size_t n, const std::string& name,
                                   uint64_t max_out) {
  if (detail::is_gzip(p, n)) return detail::inflate_bytes(p, n, name, max_out);
  return std::vector<uint8_t>(p, p + std::min<uint64_t>(n, max_out));
}

// Reads the bytes of the chosen volume from a (possibly gzip) data file, checking the sizes
// before allocating, and builds the volume.
Volume read_volume_data(const NiftiHeader& h, const Layout& L, const std::string& data_path,
                        const std::string& name) {
  const uint64_t fsize = detail::file_size(data_path);
  const auto head = detail::read_file(data_path, 0, 2);
  if (detail::is_gzip(head.data(), head.size())) {
    RG_CHECK(L.end <= fsize * detail::kMaxDeflateRatio + 4096, data_path,
             ": data shorter than the header says: need ", L.end,
             " bytes, more than a gzip file of ", fsize, " bytes can hold");
    const auto z = detail::read_file(data_path);
    const auto bytes = detail::inflate_bytes(z.data(), z.size(), data_path, L.end);
    return build_volume(h, L, bytes.data(), bytes.size(), 0, name, data_path);
  }
  RG_CHECK(L.end <= fsize, data_path, ": data shorter than the header says: need ", L.end,
           " bytes (", L.dims[0], " x ", L.dims[1], " x ", L.dims[2], " ",
           detail::elem_name(L.elem), " from offset ", L.start, "), the file has ", fsize);
  const auto bytes = detail::read_file(data_path, L.start, L.vol_bytes);
  return build_volume(h, L, bytes.data(), bytes.size(), L.start, name, data_path);
}

// For a .hdr/.img name, the partner file (trying gzip and plain variants).
std::string partner_of(const std::string& path, bool want_img) {
  const char* exts[] = {".hdr.gz", ".img.gz", ".hdr", ".img"};
  for (const char* e : exts) {
    if (!detail::ends_with(path, e)) continue;
    const std::string base = path.substr(0, path.size() - std::strlen(e));
    const bool upper = std::isupper(static_cast<unsigned char>(path.back())) ||
                       (detail::ends_with(path, ".gz") &&
                        std::isupper(static_cast<unsigned char>(path[path.size() - 4])));
    const std::string x = want_img ? (upper ? ".IMG" : ".img") : (upper ? ".HDR" : ".hdr");
    const std::string candidates[] = {base + x, base + x + ".gz", base + x + ".GZ"};
    for (const auto& c : candidates)
      if (detail::file_exists(c)) return c;
    return base + x;  // nonexistent: the caller reports it
  }
  return {};
}

bool is_pair_name(const std::string& path) {
  return detail::ends_with(path, ".hdr") || detail::ends_with(path, ".img") ||
         detail::ends_with(path, ".hdr.gz") || detail::ends_with(path, ".img.gz");
}

}  // namespace

std::string nifti_datatype_name(int dt) {
  switch (dt) {
    case kDT_BINARY: return "binary";
    case kDT_UINT8: return "uint8";
    case kDT_INT8: return "int8";
    case kDT_INT16: return "int16";
    case kDT_UINT16: return "uint16";
    case kDT_INT32: return "int32";
    case kDT_UINT32: return "uint32";
    case kDT_INT64: return "int64";
    case kDT_UINT64: return "uint64";
    case kDT_FLOAT32: return "float32";
    case kDT_FLOAT64: return "float64";
    case kDT_FLOAT128: return "float128";
    case kDT_COMPLEX64: return "complex64";
    case kDT_COMPLEX128: return "complex128";
    case kDT_COMPLEX256: return "complex256";
    case kDT_RGB24: return "rgb24";
    case kDT_RGBA32: return "rgba32";
    default: return "unknown(" + std::to_string(dt) + ")";
  }
}

NiftiHeader parse_nifti_header(const uint8_t* b, size_t size, const std::string& name) {
  RG_CHECK(size >= 4, name, ": file too short for a NIfTI header (", size, " bytes)");
  NiftiHeader h;
  const int32_t raw = load<int32_t>(b, false);
  const int32_t swapped = load<int32_t>(b, true);
  if (raw == 348 || raw == 540) {
    h.version = raw == 348 ? 1 : 2;
    h.swapped = false;
  } else if (swapped == 348 || swapped == 540) {
    h.version = swapped == 348 ? 1 : 2;
    h.swapped = true;
  } else {
    RG_FAIL(name, ": not a NIfTI file (sizeof_hdr is ", raw, ", expected 348 for NIfTI-1 or 540 "
            "for NIfTI-2, in either byte order)");
  }
  const bool sw = h.swapped;
  const size_t hsize = h.version == 1 ? 348 : 540;
  RG_CHECK(size >= hsize, name, ": truncated NIfTI-", h.version, " header (", size, " of ", hsize,
           " bytes)");
  if (h.version == 1) {
    const uint8_t* m = b + 344;
    if (std::memcmp(m, "n+1\0", 4) == 0) {
      h.single_file = true;
    } else if (std::memcmp(m, "ni1\0", 4) == 0) {
      h.single_file = false;
    } else if (m[0] == 0 && m[1] == 0 && m[2] == 0 && m[3] == 0) {
      h.single_file = false;
      h.analyze = true;
    } else {
      RG_FAIL(name, ": wrong NIfTI-1 magic \"", fixed_string(m, 4), "\" (expected \"n+1\" or \"ni1\")");
    }
    for (int i = 0; i < 8; ++i) h.dim[i] = load<int16_t>(b + 40 + 2 * i, sw);
    h.datatype = load<int16_t>(b + 70, sw);
    h.bitpix = load<int16_t>(b + 72, sw);
    for (int i = 0; i < 8; ++i) h.pixdim[i] = load<float>(b + 76 + 4 * i, sw);
    const double vo = load<float>(b + 108, sw);
    RG_CHECK(std::isfinite(vo) && vo >= 0 && vo < 9e15, name, ": bad vox_offset ", vo);
    h.vox_offset = static_cast<int64_t>(vo);
    h.scl_slope = load<float>(b + 112, sw);
    h.scl_inter = load<float>(b + 116, sw);
    h.xyzt_units = b[123];
    h.descrip = fixed_string(b + 148, 80);
    if (!h.analyze) {
      h.qform_code = load<int16_t>(b + 252, sw);
      h.sform_code = load<int16_t>(b + 254, sw);
      h.quatern_b = load<float>(b + 256, sw);
      h.quatern_c = load<float>(b + 260, sw);
      h.quatern_d = load<float>(b + 264, sw);
      h.qoffset_x = load<float>(b + 268, sw);
      h.qoffset_y = load<float>(b + 272, sw);
      h.qoffset_z = load<float>(b + 276, sw);
      for (int r = 0; r < 3; ++r)
        for (int c = 0; c < 4; ++c) h.srow[r][c] = load<float>(b + 280 + 16 * r + 4 * c, sw);
    } else {
      h.scl_slope = 0;  // ANALYZE 7.5 has no scaling fields we trust
      h.scl_inter = 0;
    }
  } else {
    const uint8_t* m = b + 4;
    if (std::memcmp(m, "n+2\0", 4) == 0) {
      h.single_file = true;
    } else if (std::memcmp(m, "ni2\0", 4) == 0) {
      h.single_file = false;
    } else {
      RG_FAIL(name, ": wrong NIfTI-2 magic \"", fixed_string(m, 4), "\" (expected \"n+2\" or \"ni2\")");
    }
    h.datatype = load<int16_t>(b + 12, sw);
    h.bitpix = load<int16_t>(b + 14, sw);
    for (int i = 0; i < 8; ++i) h.dim[i] = load<int64_t>(b + 16 + 8 * i, sw);
    for (int i = 0; i < 8; ++i) h.pixdim[i] = load<double>(b + 104 + 8 * i, sw);
    h.vox_offset = load<int64_t>(b + 168, sw);
    RG_CHECK(h.vox_offset >= 0 && h.vox_offset < (int64_t(1) << 53), name, ": bad vox_offset ",
             h.vox_offset);
    h.scl_slope = load<double>(b + 176, sw);
    h.scl_inter = load<double>(b + 184, sw);
    h.descrip = fixed_string(b + 240, 80);
    h.qform_code = load<int32_t>(b + 344, sw);
    h.sform_code = load<int32_t>(b + 348, sw);
    h.quatern_b = load<double>(b + 352, sw);
    h.quatern_c = load<double>(b + 360, sw);
    h.quatern_d = load<double>(b + 368, sw);
    h.qoffset_x = load<double>(b + 376, sw);
    h.qoffset_y = load<double>(b + 384, sw);
    h.qoffset_z = load<double>(b + 392, sw);
    for (int r = 0; r < 3; ++r)
      for (int c = 0; c < 4; ++c) h.srow[r][c] = load<double>(b + 400 + 32 * r + 8 * c, sw);
    h.xyzt_units = load<int32_t>(b + 500, sw);
  }
  RG_CHECK(h.dim[0] >= 1 && h.dim[0] <= 7, name, ": bad dim[0] = ", h.dim[0],
           " (the number of dimensions must be 1..7)");
  for (int i = 1; i <= 7; ++i) {
    if (i > h.dim[0]) {
      h.dim[i] = 1;
      continue;
    }
    RG_CHECK(h.dim[i] >= 1, name, ": bad dim[", i, "] = ", h.dim[i], " (sizes must be >= 1)");
  }
  Elem e;
  RG_CHECK(datatype_elem(h.datatype, &e), name, ": unsupported NIfTI datatype ",
           nifti_datatype_name(h.datatype),
           (h.datatype == kDT_RGB24 || h.datatype == kDT_RGBA32 ? " (colour images are not volumes)"
            : h.datatype == kDT_COMPLEX64 || h.datatype == kDT_COMPLEX128 ||
                    h.datatype == kDT_COMPLEX256
                ? " (complex data is not supported)"
                : ""),
           "; supported: uint8, int8, int16, uint16, int32, uint32, int64, uint64, float32, float64");
  if (h.single_file && h.vox_offset < static_cast<int64_t>(hsize)) {
    // Some writers leave vox_offset 0 in single files; the data then follows the header and
    // the 4 extension bytes.
    h.vox_offset = static_cast<int64_t>(hsize) + 4;
  }
  return h;
}

std::array<std::array<double, 4>, 4> nifti_affine(const NiftiHeader& h) {
  std::array<std::array<double, 4>, 4> A{{{1, 0, 0, 0}, {0, 1, 0, 0}, {0, 0, 1, 0}, {0, 0, 0, 1}}};
  auto finite_rows = [&]() {
    for (const auto& r : h.srow)
      for (double x : r)
        if (!std::isfinite(x)) return false;
    return true;
  };
  auto pix = [&](int i) {
    const double p = h.pixdim[i];
    return (p > 0 && std::isfinite(p)) ? p : (p < 0 && std::isfinite(p) ? -p : 1.0);
  };
  if (h.sform_code > 0 && finite_rows()) {
    for (int r = 0; r < 3; ++r)
      for (int c = 0; c < 4; ++c) A[r][c] = h.srow[r][c];
  } else if (h.qform_code > 0 && std::isfinite(h.quatern_b) && std::isfinite(h.quatern_c) &&
             std::isfinite(h.quatern_d) && std::isfinite(h.qoffset_x) &&
             std::isfinite(h.qoffset_y) && std::isfinite(h.qoffset_z)) {
    double b = h.quatern_b, c = h.quatern_c, d = h.quatern_d;
    double a = 1.0 - (b * b + c * c + d * d);
    if (a < 1e-7) {  // b, c, d describe a 180-degree rotation (a = 0): renormalize them
      const double n = std::sqrt(b * b + c * c + d * d);
      if (n > 0) {
        b /= n;
        c /= n;
        d /= n;
      }
      a = 0;
    } else {
      a = std::sqrt(a);
    }
    const double R[3][3] = {{a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)},
                            {2 * (b * c + a * d), a * a + c * c - b * b - d * d, 2 * (c * d - a * b)},
                            {2 * (b * d - a * c), 2 * (c * d + a * b), a * a + d * d - c * c - b * b}};
    const double qfac = h.pixdim[0] < 0 ? -1.0 : 1.0;
    const double s[3] = {pix(1), pix(2), pix(3) * qfac};
    for (int r = 0; r < 3; ++r)
      for (int col = 0; col < 3; ++col) A[r][col] = R[r][col] * s[col];
    A[0][3] = h.qoffset_x;
    A[1][3] = h.qoffset_y;
    A[2][3] = h.qoffset_z;
  } else {
    for (int i = 0; i < 3; ++i) A[i][i] = pix(i + 1);
  }
  const double unit = units_to_mm(h.xyzt_units);
  if (unit != 1.0)
    for (int r = 0; r < 3; ++r)
      for (int c = 0; c < 4; ++c) A[r][c] *= unit;
  return A;
}

NiftiHeader read_nifti_header(const std::string& path) {
  std::string hdr_path = path;
  if (detail::ends_with(path, ".img") || detail::ends_with(path, ".img.gz")) {
    hdr_path = partner_of(path, /*want_img=*/false);
    RG_CHECK(detail::file_exists(hdr_path), path, ": the matching header ", hdr_path,
             " does not exist");
  }
  const uint64_t fsize = detail::file_size(hdr_path);
  const auto z = detail::read_file(hdr_path, 0, std::min<uint64_t>(fsize, 1 << 20));
  std::vector<uint8_t> head;
  if (detail::is_gzip(z.data(), z.size())) {
    const auto all = detail::read_file(hdr_path);
    head = detail::inflate_bytes(all.data(), all.size(), hdr_path, kMaxHeader);
  } else {
    head.assign(z.begin(), z.begin() + std::min<size_t>(z.size(), kMaxHeader));
  }
  return parse_nifti_header(head.data(), head.size(), hdr_path);
}

Volume read_nifti(const std::string& path, int64_t volume_index) {
  RG_CHECK(detail::file_exists(path), path, ": no such file");
  const bool img_name = detail::ends_with(path, ".img") || detail::ends_with(path, ".img.gz");
  const std::string hdr_path = img_name ? partner_of(path, /*want_img=*/false) : path;
  const NiftiHeader h = read_nifti_header(path);
  std::string data_path = hdr_path;
  if (!h.single_file) {
    RG_CHECK(is_pair_name(path), path, ": the header says the data is in a separate .img file ",
             "(magic \"ni", h.version, "\"), but the file is not named .hdr/.img");
    data_path = img_name ? path : partner_of(path, /*want_img=*/true);
    RG_CHECK(detail::file_exists(data_path), path, ": the image data file ", data_path,
             " does not exist");
  }
  const Layout L = compute_layout(h, volume_index, hdr_path);
  return read_volume_data(h, L, data_path, path);
}

Volume read_nifti_from_memory(const uint8_t* data, size_t size, const std::string& name,
                              int64_t volume_index) {
  const bool gz = detail::is_gzip(data, size);
  std::vector<uint8_t> head = maybe_inflate(data, size, name, kMaxHeader);
  const NiftiHeader h = parse_nifti_header(head.data(), head.size(), name);
  RG_CHECK(h.single_file, name, ": header says the data is in a separate .img file; an in-memory "
           "read needs a single-file .nii (magic \"n+", h.version, "\")");
  const Layout L = compute_layout(h, volume_index, name);
  if (!gz) return build_volume(h, L, data, size, 0, name, name);
  RG_CHECK(L.end <= static_cast<uint64_t>(size) * detail::kMaxDeflateRatio + 4096, name,
           ": data shorter than the header says: need ", L.end, " bytes, more than ", size,
           " gzip bytes can hold");
  const auto all = detail::inflate_bytes(data, size, name, L.end);
  return build_volume(h, L, all.data(), all.size(), 0, name, name);
}

// ---------------------------------------------------------------------------------------------
// Writing

namespace {

using Mat3 = std::array<std::array<double, 3>, 3>;

double det3(const Mat3& m) {
  return m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) -
         m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0]) +
         m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
}

bool inverse3(const Mat3& m, Mat3* out) {
  const double d = det3(m);
  if (!(std::fabs(d) > 1e-300)) return false;
  Mat3& r = *out;
  r[0][0] = (m[1][1] * m[2][2] - m[1][2] * m[2][1]) / d;
  r[0][1] = (m[0][2] * m[2][1] - m[0][1] * m[2][2]) / d;
  r[0][2] = (m[0][1] * m[1][2] - m[0][2] * m[1][1]) / d;
  r[1][0] = (m[1][2] * m[2][0] - m[1][0] * m[2][2]) / d;
  r[1][1] = (m[0][0] * m[2][2] - m[0][2] * m[2][0]) / d;
  r[1][2] = (m[0][2] * m[1][0] - m[0][0] * m[1][2]) / d;
  r[2][0] = (m[1][0] * m[2][1] - m[1][1] * m[2][0]) / d;
  r[2][1] = (m[0][1] * m[2][0] - m[0][0] * m[2][1]) / d;
  r[2][2] = (m[0][0] * m[1][1] - m[0][1] * m[1][0]) / d;
  return true;
}

struct Quatern {
  double b = 0, c = 0, d = 0, qfac = 1;
};

// The rotation closest to the affine's (normalized) direction columns, as a quaternion + qfac.
Quatern affine_to_quatern(const std::array<std::array<double, 4>, 4>& A) {
  Mat3 Q{};
  for (int col = 0; col < 3; ++col) {
    double n = 0;
    for (int r = 0; r < 3; ++r) n += A[r][col] * A[r][col];
    n = std::sqrt(n);
    for (int r = 0; r < 3; ++r) Q[r][col] = (n > 0 && std::isfinite(n)) ? A[r][col] / n : (r == col);
  }
  // Polar decomposition by Newton iteration Q <- (Q + Q^-T) / 2: converges to the orthogonal
  // factor, i.e. the nearest rotation (or reflection).
  for (int it = 0; it < 50; ++it) {
    Mat3 inv;
    if (!inverse3(Q, &inv)) {
      Q = Mat3{{{1, 0, 0}, {0, 1, 0}, {0, 0, 1}}};
      break;
    }
    double change = 0;
    for (int r = 0; r < 3; ++r)
      for (int c = 0; c < 3; ++c) {
        const double nv = 0.5 * (Q[r][c] + inv[c][r]);
        change = std::max(change, std::fabs(nv - Q[r][c]));
        Q[r][c] = nv;
      }
    if (change < 1e-14) break;
  }
  Quatern q;
  if (det3(Q) < 0) {
    q.qfac = -1;
    for (int r = 0; r < 3; ++r) Q[r][2] = -Q[r][2];
  }
  const double r11 = Q[0][0], r12 = Q[0][1], r13 = Q[0][2];
  const double r21 = Q[1][0], r22 = Q[1][1], r23 = Q[1][2];
  const double r31 = Q[2][0], r32 = Q[2][1], r33 = Q[2][2];
  double a = r11 + r22 + r33 + 1.0, b, c, d;
  if (a > 0.5) {
    a = 0.5 * std::sqrt(a);
    b = 0.25 * (r32 - r23) / a;
    c = 0.25 * (r13 - r31) / a;
    d = 0.25 * (r21 - r12) / a;
  } else {
    const double xd = 1.0 + r11 - (r22 + r33);
    const double yd = 1.0 + r22 - (r11 + r33);
    const double zd = 1.0 + r33 - (r11 + r22);
    if (xd > 1.0) {
      b = 0.5 * std::sqrt(xd);
      c = 0.25 * (r12 + r21) / b;
      d = 0.25 * (r13 + r31) / b;
      a = 0.25 * (r32 - r23) / b;
    } else if (yd > 1.0) {
      c = 0.5 * std::sqrt(yd);
      b = 0.25 * (r12 + r21) / c;
      d = 0.25 * (r23 + r32) / c;
      a = 0.25 * (r13 - r31) / c;
    } else {
      d = 0.5 * std::sqrt(zd);
      b = 0.25 * (r13 + r31) / d;
      c = 0.25 * (r23 + r32) / d;
      a = 0.25 * (r21 - r12) / d;
    }
    if (a < 0) {
      b = -b;
      c = -c;
      d = -d;
    }
  }
  q.b = b;
  q.c = c;
  q.d = d;
  return q;
}

template <typename T>
void put(std::vector<uint8_t>& h, size_t off, T v) {
  detail::store<T>(h.data() + off, v);
}

}  // namespace

void write_nifti(const std::string& path, const Volume& vol, NiftiOut dtype, int version) {
  const bool gz = detail::ends_with(path, ".nii.gz");
  RG_CHECK(gz || detail::ends_with(path, ".nii"), path,
           ": write_nifti writes .nii or .nii.gz files only");
  RG_CHECK(version == 1 || version == 2, path, ": NIfTI version must be 1 or 2, got ", version);
  uint64_t count = 0;
  RG_CHECK(detail::checked_product(vol.dims.data(), 3, 1, &count), path,
           ": cannot write a volume with dims ", vol.dims[0], " x ", vol.dims[1], " x ", vol.dims[2]);
  RG_CHECK(vol.voxels.size() == count, path, ": volume has ", vol.voxels.size(),
           " voxels but dims ", vol.dims[0], " x ", vol.dims[1], " x ", vol.dims[2], " need ", count);
  for (int a = 0; a < 3; ++a) {
    RG_CHECK(std::isfinite(vol.spacing[a]) && vol.spacing[a] > 0, path, ": bad spacing[", a,
             "] = ", vol.spacing[a]);
    for (int c = 0; c < 4; ++c)
      RG_CHECK(std::isfinite(vol.affine[a][c]), path, ": affine has a non-finite entry");
  }
  if (version == 1 && (vol.dims[0] > 32767 || vol.dims[1] > 32767 || vol.dims[2] > 32767)) version = 2;

  Elem e;
  const int dt = out_datatype(dtype, &e);
  const auto data = detail::convert_from_float(vol.voxels.data(), static_cast<int64_t>(count), e,
                                               path, !detail::host_is_little_endian());
  const Quatern q = affine_to_quatern(vol.affine);
  const auto& A = vol.affine;
  const size_t hsize = version == 1 ? 348 : 540;
  const size_t vox_offset = hsize + 4;  // header + 4 zero extension bytes
  std::vector<uint8_t> out(vox_offset, 0);
  // The in-memory form is little-endian; the store<> calls write host order, which matches
  // because we converted the data for the host too (on a big-endian host everything is BE and
  // the sizeof_hdr tells readers so).
  if (version == 1) {
    put<int32_t>(out, 0, 348);
    out[38] = 'r';  // "regular" (ANALYZE compatibility)
    const int64_t dims[8] = {3, vol.dims[0], vol.dims[1], vol.dims[2], 1, 1, 1, 1};
    for (int i = 0; i < 8; ++i) put<int16_t>(out, 40 + 2 * i, static_cast<int16_t>(dims[i]));
    put<int16_t>(out, 70, static_cast<int16_t>(dt));
    put<int16_t>(out, 72, static_cast<int16_t>(8 * detail::elem_size(e)));
    const float pix[8] = {static_cast<float>(q.qfac), static_cast<float>(vol.spacing[0]),
                          static_cast<float>(vol.spacing[1]), static_cast<float>(vol.spacing[2]),
                          1, 1, 1, 1};
    for (int i = 0; i < 8; ++i) put<float>(out, 76 + 4 * i, pix[i]);
    put<float>(out, 108, static_cast<float>(vox_offset));
    put<float>(out, 112, 1.0f);
    put<float>(out, 116, 0.0f);
    out[123] = 2 | 8;  // mm, seconds
    std::memcpy(out.data() + 148, "roentgen", 8);
    put<int16_t>(out, 252, 1);
    put<int16_t>(out, 254, 1);
    put<float>(out, 256, static_cast<float>(q.b));
    put<float>(out, 260, static_cast<float>(q.c));
    put<float>(out, 264, static_cast<float>(q.d));
    put<float>(out, 268, static_cast<float>(A[0][3]));
    put<float>(out, 272, static_cast<float>(A[1][3]));
    put<float>(out, 276, static_cast<float>(A[2][3]));
    for (int r = 0; r < 3; ++r)
      for (int c = 0; c < 4; ++c) put<float>(out, 280 + 16 * r + 4 * c, static_cast<float>(A[r][c]));
    std::memcpy(out.data() + 344, "n+1\0", 4);
  } else {
    put<int32_t>(out, 0, 540);
    std::memcpy(out.data() + 4, "n+2\0\r\n\032\n", 8);
    put<int16_t>(out, 12, static_cast<int16_t>(dt));
    put<int16_t>(out, 14, static_cast<int16_t>(8 * detail::elem_size(e)));
    const int64_t dims[8] = {3, vol.dims[0], vol.dims[1], vol.dims[2], 1, 1, 1, 1};
    for (int i = 0; i < 8; ++i) put<int64_t>(out, 16 + 8 * i, dims[i]);
    const double pix[8] = {q.qfac, vol.spacing[0], vol.spacing[1], vol.spacing[2], 1, 1, 1, 1};
    for (int i = 0; i < 8; ++i) put<double>(out, 104 + 8 * i, pix[i]);
    put<int64_t>(out, 168, static_cast<int64_t>(vox_offset));
    put<double>(out, 176, 1.0);
    put<double>(out, 184, 0.0);
    std::memcpy(out.data() + 240, "roentgen", 8);
    put<int32_t>(out, 344, 1);
    put<int32_t>(out, 348, 1);
    put<double>(out, 352, q.b);
    put<double>(out, 360, q.c);
    put<double>(out, 368, q.d);
    put<double>(out, 376, A[0][3]);
    put<double>(out, 384, A[1][3]);
    put<double>(out, 392, A[2][3]);
    for (int r = 0; r < 3; ++r)
      for (int c = 0; c < 4; ++c) put<double>(out, 400 + 32 * r + 8 * c, A[r][c]);
    put<int32_t>(out, 500, 2 | 8);
  }
  out.insert(out.end(), data.begin(), data.end());
  if (gz) {
    detail::write_file_atomic(path, detail::deflate_bytes(out.data(), out.size(), true));
  } else {
    detail::write_file_atomic(path, out);
  }
}

}  // namespace rg::data
