#include "data/metaimage.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <sstream>

#include "data/format_util.h"
#include "engine/error.h"

namespace rg::data {

using detail::Elem;

namespace {

constexpr int kMaxDims = 4;

std::string trim(const std::string& s) {
  size_t a = 0, b = s.size();
  while (a < b && std::isspace(static_cast<unsigned char>(s[a]))) ++a;
  while (b > a && std::isspace(static_cast<unsigned char>(s[b - 1]))) --b;
  return s.substr(a, b - a);
}

bool key_is(const std::string& key, const char* name) { return detail::lower(key) == detail::lower(name); }

std::vector<double> parse_numbers(const std::string& value, const std::string& key,
                                  const std::string& name) {
  std::vector<double> out;
  const char* p = value.data();
  const char* end = p + value.size();
  while (p < end) {
    while (p < end && std::isspace(static_cast<unsigned char>(*p))) ++p;
    if (p >= end) break;
    double x = 0;
    auto r = std::from_chars(p, end, x);
    RG_CHECK(r.ec == std::errc(), name, ": MetaImage field ", key, " has a non-number in \"",
             value, "\"");
    RG_CHECK(std::isfinite(x), name, ": MetaImage field ", key, " has a non-finite number");
    out.push_back(x);
    RG_CHECK(out.size() <= 64, name, ": MetaImage field ", key, " has too many numbers");
    p = r.ptr;
  }
  return out;
}

bool parse_bool(const std::string& value, const std::string& key, const std::string& name) {
  const std::string v = detail::lower(value);
  if (v == "true" || v == "1" || v == "yes") return true;
  if (v == "false" || v == "0" || v == "no") return false;
  RG_FAIL(name, ": MetaImage field ", key, " should be True or False, got \"", value, "\"");
}

int64_t parse_int(const std::string& value, const std::string& key, const std::string& name) {
  const auto v = parse_numbers(value, key, name);
  RG_CHECK(v.size() == 1 && v[0] == std::floor(v[0]) && std::fabs(v[0]) < 9e15, name,
           ": MetaImage field ", key, " should be one integer, got \"", value, "\"");
  return static_cast<int64_t>(v[0]);
}

bool element_type(const std::string& t, Elem* e) {
  static const struct {
    const char* name;
    Elem e;
  } table[] = {{"MET_UCHAR", Elem::U8},       {"MET_CHAR", Elem::I8},        {"MET_SHORT", Elem::I16},
               {"MET_USHORT", Elem::U16},     {"MET_INT", Elem::I32},        {"MET_UINT", Elem::U32},
               {"MET_LONG", Elem::I32},       {"MET_ULONG", Elem::U32},      {"MET_LONG_LONG", Elem::I64},
               {"MET_ULONG_LONG", Elem::U64}, {"MET_FLOAT", Elem::F32},      {"MET_DOUBLE", Elem::F64}};
  for (const auto& row : table)
    if (t == row.name) {
      *e = row.e;
      return true;
    }
  return false;
}

const char* meta_name(Elem e) {
  switch (e) {
    case Elem::U8: return "MET_UCHAR";
    case Elem::I8: return "MET_CHAR";
    case Elem::I16: return "MET_SHORT";
    case Elem::U16: return "MET_USHORT";
    case Elem::I32: return "MET_INT";
    case Elem::U32: return "MET_UINT";
    case Elem::I64: return "MET_LONG_LONG";
    case Elem::U64: return "MET_ULONG_LONG";
    case Elem::F32: return "MET_FLOAT";
    case Elem::F64: return "MET_DOUBLE";
  }
  return "?";
}

// Builds the volume from a parsed header and the bytes of its data file (for LOCAL data: the
// bytes after the header). `data_name` names that file in messages.
Volume build_volume(const MetaHeader& h, const uint8_t* data, size_t n, const std::string& name,
                    const std::string& data_name) {
  Elem e;
  RG_CHECK(element_type(h.element_type, &e), name, ": unsupported MetaImage ElementType \"",
           h.element_type, "\"");
  Volume v;
  for (int a = 0; a < 3; ++a) v.dims[a] = a < h.ndims ? h.dim_size[a] : 1;
  uint64_t vol_bytes = 0;
  RG_CHECK(detail::checked_product(v.dims.data(), 3, detail::elem_size(e), &vol_bytes) &&
               vol_bytes <= detail::kMaxVolumeBytes,
           name, ": absurd volume size in the header (DimSize ", v.dims[0], " ", v.dims[1], " ",
           v.dims[2], ", ", h.element_type, ")");
  uint64_t all_bytes = vol_bytes;
  if (h.ndims == 4) {
    RG_CHECK(detail::checked_product(h.dim_size.data(), 4, detail::elem_size(e), &all_bytes), name,
             ": absurd DimSize");
  }
  const uint64_t count = vol_bytes / detail::elem_size(e);

  // Locate the data.
  const uint8_t* start = nullptr;
  uint64_t avail = 0;
  std::vector<uint8_t> inflated;
  if (h.compressed) {
    uint64_t off = h.header_size > 0 ? static_cast<uint64_t>(h.header_size) : 0;
    RG_CHECK(off <= n, data_name, ": HeaderSize ", h.header_size, " is past the end of the data (",
             n, " bytes)");
    uint64_t zsize = n - off;
    if (h.compressed_size >= 0) {
      RG_CHECK(static_cast<uint64_t>(h.compressed_size) <= zsize, data_name,
               ": data shorter than the header says: CompressedDataSize ", h.compressed_size,
               ", the file has ", zsize, " bytes of data");
      zsize = static_cast<uint64_t>(h.compressed_size);
    }
    RG_CHECK(vol_bytes <= zsize * detail::kMaxDeflateRatio + 4096, data_name,
             ": data shorter than the header says: need ", vol_bytes, " bytes, more than ", zsize,
             " compressed bytes can hold");
    inflated = detail::inflate_bytes(data + off, static_cast<size_t>(zsize), data_name, vol_bytes);
    start = inflated.data();
    avail = inflated.size();
    RG_CHECK(avail >= vol_bytes, data_name, ": data shorter than the header says: need ", vol_bytes,
             " bytes after decompression, got ", avail, " (truncated or corrupt compressed data)");
  } else {
    uint64_t off = 0;
    if (h.header_size == -1) {
      RG_CHECK(n >= all_bytes, data_name, ": data shorter than the header says: need ", all_bytes,
               " bytes, the file has ", n);
      off = n - all_bytes;  // HeaderSize = -1: the data is at the end of the file
    } else if (h.header_size > 0) {
      off = static_cast<uint64_t>(h.header_size);
    }
    RG_CHECK(off <= n && n - off >= vol_bytes, data_name,
             ": data shorter than the header says: need ", vol_bytes, " bytes (", v.dims[0], " x ",
             v.dims[1], " x ", v.dims[2], " ", h.element_type, ") from offset ", off,
             ", the file has ", n);
    start = data + off;
    avail = n - off;
  }
  v.voxels.resize(static_cast<size_t>(count));
  const bool swap = h.msb == detail::host_is_little_endian();
  detail::convert_to_float(start, e, swap, static_cast<int64_t>(count), v.voxels.data());

  // Geometry: LPS world = offset + D * diag(spacing) * index, D's column c is axis c's direction
  // (the c-th group of TransformMatrix). Then LPS -> RAS.
  const int n3 = std::min(h.ndims, 3);
  std::array<std::array<double, 3>, 3> D{{{1, 0, 0}, {0, 1, 0}, {0, 0, 1}}};
  for (int c = 0; c < n3; ++c)
    for (int r = 0; r < n3; ++r) D[r][c] = h.transform[c * h.ndims + r];
  for (int a = 0; a < 3; ++a) {
    const double s = a < h.ndims ? h.spacing[a] : 1.0;
    RG_CHECK(s != 0, name, ": ElementSpacing ", a, " is zero");
    v.spacing[a] = std::fabs(s);
  }
  for (int r = 0; r < 3; ++r) {
    for (int c = 0; c < 3; ++c) v.affine[r][c] = D[r][c] * v.spacing[c];
    v.affine[r][3] = r < h.ndims ? h.offset[r] : 0.0;
  }
  for (int r = 0; r < 2; ++r)
    for (int c = 0; c < 4; ++c) v.affine[r][c] = -v.affine[r][c];
  v.source_dtype = detail::elem_name(e);
  v.source = name;
  return v;
}

std::string fmt_num(double x) {
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof(buf), x);
  std::string s(buf, r.ptr);
  if (s == "-0") s = "0";
  return s;
}

}  // namespace

MetaHeader parse_metaimage_header(const uint8_t* data, size_t size, const std::string& name) {
  MetaHeader h;
  size_t pos = 0;
  bool have_ndims = false, have_type = false, have_file = false, have_spacing = false;
  std::vector<double> size_field, offset_field, transform_field, spacing_field, dims_field;
  int lines = 0;
  while (pos < size && !have_file) {
    size_t eol = pos;
    while (eol < size && data[eol] != '\n') ++eol;
    const std::string line(reinterpret_cast<const char*>(data + pos), eol - pos);
    pos = eol < size ? eol + 1 : size;
    RG_CHECK(++lines <= 1000, name, ": MetaImage header has no ElementDataFile in its first 1000 lines");
    const std::string t = trim(line);
    if (t.empty() || t[0] == '#') continue;
    const size_t eq = t.find('=');
    RG_CHECK(eq != std::string::npos, name, ": not a MetaImage header (line ", lines,
             " has no \"Key = Value\": \"", t.substr(0, 60), "\")");
    const std::string key = trim(t.substr(0, eq));
    const std::string value = trim(t.substr(eq + 1));
    if (key_is(key, "ObjectType")) {
      RG_CHECK(detail::lower(value) == "image", name, ": MetaImage ObjectType is \"", value,
               "\", only Image is supported");
    } else if (key_is(key, "NDims")) {
      h.ndims = static_cast<int>(std::clamp<int64_t>(parse_int(value, key, name), -1, 1000));
      RG_CHECK(h.ndims >= 1 && h.ndims <= kMaxDims, name, ": MetaImage NDims = ", value,
               " is not supported (1..", kMaxDims, ")");
      have_ndims = true;
    } else if (key_is(key, "DimSize")) {
      dims_field = parse_numbers(value, key, name);
    } else if (key_is(key, "ElementSpacing")) {
      spacing_field = parse_numbers(value, key, name);
      have_spacing = true;
    } else if (key_is(key, "ElementSize")) {
      if (!have_spacing) spacing_field = parse_numbers(value, key, name);
    } else if (key_is(key, "Offset") || key_is(key, "Position") || key_is(key, "Origin")) {
      offset_field = parse_numbers(value, key, name);
    } else if (key_is(key, "TransformMatrix") || key_is(key, "Rotation") || key_is(key, "Orientation")) {
      transform_field = parse_numbers(value, key, name);
    } else if (key_is(key, "ElementType")) {
      h.element_type = value;
      have_type = true;
    } else if (key_is(key, "BinaryDataByteOrderMSB") || key_is(key, "ElementByteOrderMSB")) {
      h.msb = parse_bool(value, key, name);
    } else if (key_is(key, "BinaryData")) {
      RG_CHECK(parse_bool(value, key, name), name,
               ": MetaImage with BinaryData = False (ASCII data) is not supported");
    } else if (key_is(key, "CompressedData")) {
      h.compressed = parse_bool(value, key, name);
    } else if (key_is(key, "CompressedDataSize")) {
      h.compressed_size = parse_int(value, key, name);
      RG_CHECK(h.compressed_size >= 0, name, ": negative CompressedDataSize");
    } else if (key_is(key, "HeaderSize")) {
      h.header_size = parse_int(value, key, name);
      RG_CHECK(h.header_size >= -1, name, ": bad HeaderSize ", h.header_size);
    } else if (key_is(key, "ElementNumberOfChannels")) {
      const int64_t c = parse_int(value, key, name);
      RG_CHECK(c == 1, name, ": ElementNumberOfChannels = ", c, " is not supported (only 1)");
      h.channels = 1;
    } else if (key_is(key, "AnatomicalOrientation")) {
      h.anatomical_orientation = value;
    } else if (key_is(key, "ElementDataFile")) {
      h.element_data_file = value;
      have_file = true;
    }
    // Other keys (Comment, CenterOfRotation, ElementMin/Max, ...) carry nothing we need.
  }
  h.header_bytes = pos;
  RG_CHECK(have_ndims, name, ": not a MetaImage header (no NDims)");
  RG_CHECK(have_file, name, ": MetaImage header has no ElementDataFile line");
  RG_CHECK(have_type, name, ": MetaImage header has no ElementType");
  Elem e;
  RG_CHECK(element_type(h.element_type, &e), name, ": unsupported MetaImage ElementType \"",
           h.element_type, "\" (supported: MET_UCHAR, MET_CHAR, MET_SHORT, MET_USHORT, MET_INT, "
           "MET_UINT, MET_LONG, MET_ULONG, MET_LONG_LONG, MET_ULONG_LONG, MET_FLOAT, MET_DOUBLE)");
  const size_t nd = static_cast<size_t>(h.ndims);
  RG_CHECK(dims_field.size() == nd, name, ": MetaImage DimSize has ", dims_field.size(),
           " values, NDims is ", nd);
  for (double d : dims_field) {
    RG_CHECK(d >= 1 && d == std::floor(d) && d < 9e15, name, ": bad MetaImage DimSize value ", d,
             " (sizes must be integers >= 1)");
    h.dim_size.push_back(static_cast<int64_t>(d));
  }
  if (spacing_field.empty()) spacing_field.assign(nd, 1.0);
  RG_CHECK(spacing_field.size() >= nd, name, ": MetaImage ElementSpacing has ",
           spacing_field.size(), " values, NDims is ", nd);
  spacing_field.resize(nd);
  for (double s : spacing_field)
    RG_CHECK(s != 0, name, ": MetaImage ElementSpacing has a zero value");
  h.spacing = spacing_field;
  if (offset_field.empty()) offset_field.assign(nd, 0.0);
  RG_CHECK(offset_field.size() >= nd, name, ": MetaImage Offset has ", offset_field.size(),
           " values, NDims is ", nd);
  offset_field.resize(nd);
  h.offset = offset_field;
  if (transform_field.empty()) {
    transform_field.assign(nd * nd, 0.0);
    for (size_t i = 0; i < nd; ++i) transform_field[i * nd + i] = 1.0;
  }
  RG_CHECK(transform_field.size() == nd * nd, name, ": MetaImage TransformMatrix has ",
           transform_field.size(), " values, expected ", nd * nd);
  h.transform = transform_field;
  RG_CHECK(!h.element_data_file.empty(), name, ": MetaImage ElementDataFile is empty");
  const std::string edf = detail::lower(h.element_data_file);
  RG_CHECK(edf.rfind("list", 0) != 0 && h.element_data_file.find('%') == std::string::npos, name,
           ": MetaImage ElementDataFile \"", h.element_data_file,
           "\" (a list of slice files) is not supported; use one data file");
  return h;
}

Volume read_metaimage_from_memory(const uint8_t* header, size_t header_size, const uint8_t* data_file,
                                  size_t data_file_size, const std::string& name) {
  const MetaHeader h = parse_metaimage_header(header, header_size, name);
  if (detail::lower(h.element_data_file) == "local") {
    return build_volume(h, header + h.header_bytes, header_size - h.header_bytes, name, name);
  }
  return build_volume(h, data_file, data_file_size, name, name + " (" + h.element_data_file + ")");
}

Volume read_metaimage(const std::string& path) {
  RG_CHECK(detail::file_exists(path), path, ": no such file");
  const auto bytes = detail::read_file(path);
  const MetaHeader h = parse_metaimage_header(bytes.data(), bytes.size(), path);
  if (detail::lower(h.element_data_file) == "local") {
    return build_volume(h, bytes.data() + h.header_bytes, bytes.size() - h.header_bytes, path, path);
  }
  std::filesystem::path data_path(h.element_data_file);
  if (data_path.is_relative()) data_path = std::filesystem::path(detail::dirname_of(path)) / data_path;
  const std::string dp = data_path.string();
  RG_CHECK(detail::file_exists(dp), path, ": the data file ", dp,
           " (ElementDataFile) does not exist");
  const auto data = detail::read_file(dp);
  Volume v = build_volume(h, data.data(), data.size(), path, dp);
  return v;
}

void write_metaimage(const std::string& mhd_path, const Volume& vol, MetaOut dtype, bool compressed) {
  RG_CHECK(detail::ends_with(mhd_path, ".mhd"), mhd_path,
           ": write_metaimage writes a .mhd header (with a .raw/.zraw data file beside it)");
  uint64_t count = 0;
  RG_CHECK(detail::checked_product(vol.dims.data(), 3, 1, &count), mhd_path,
           ": cannot write a volume with dims ", vol.dims[0], " x ", vol.dims[1], " x ", vol.dims[2]);
  RG_CHECK(vol.voxels.size() == count, mhd_path, ": volume has ", vol.voxels.size(),
           " voxels but dims ", vol.dims[0], " x ", vol.dims[1], " x ", vol.dims[2], " need ", count);
  for (int a = 0; a < 3; ++a) {
    RG_CHECK(std::isfinite(vol.spacing[a]) && vol.spacing[a] > 0, mhd_path, ": bad spacing[", a,
             "] = ", vol.spacing[a]);
    for (int c = 0; c < 4; ++c)
      RG_CHECK(std::isfinite(vol.affine[a][c]), mhd_path, ": affine has a non-finite entry");
  }
  Elem e = Elem::I16;
  switch (dtype) {
    case MetaOut::UChar: e = Elem::U8; break;
    case MetaOut::Char: e = Elem::I8; break;
    case MetaOut::Short: e = Elem::I16; break;
    case MetaOut::UShort: e = Elem::U16; break;
    case MetaOut::Int: e = Elem::I32; break;
    case MetaOut::UInt: e = Elem::U32; break;
    case MetaOut::Float: e = Elem::F32; break;
    case MetaOut::Double: e = Elem::F64; break;
  }
  auto data = detail::convert_from_float(vol.voxels.data(), static_cast<int64_t>(count), e, mhd_path,
                                         /*big_endian=*/false);
  if (compressed) data = detail::deflate_bytes(data.data(), data.size(), /*gzip=*/false);

  // RAS -> LPS, then split into unit direction columns (D) and the spacing.
  std::array<std::array<double, 4>, 3> M{};
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 4; ++c) M[r][c] = (r < 2 ? -1.0 : 1.0) * vol.affine[r][c];
  double D[3][3];
  for (int c = 0; c < 3; ++c) {
    const double n = std::sqrt(M[0][c] * M[0][c] + M[1][c] * M[1][c] + M[2][c] * M[2][c]);
    for (int r = 0; r < 3; ++r) D[r][c] = n > 0 ? M[r][c] / n : (r == c ? 1.0 : 0.0);
  }
  // ITK's orientation letters name where each axis comes from: +x (towards L) is "R", etc.
  std::string orient;
  for (int c = 0; c < 3; ++c) {
    int best = 0;
    for (int r = 1; r < 3; ++r)
      if (std::fabs(D[r][c]) > std::fabs(D[best][c])) best = r;
    const char* from_pos = "RAI";  // an axis pointing to +L / +P / +S runs from R / A / I
    const char* from_neg = "LPS";
    orient += D[best][c] >= 0 ? from_pos[best] : from_neg[best];
  }

  const std::filesystem::path p(mhd_path);
  const std::string stem = p.stem().string();
  const std::string data_name = stem + (compressed ? ".zraw" : ".raw");
  const std::string data_path = (p.parent_path() / data_name).string();

  std::ostringstream os;
  os << "ObjectType = Image\n"
     << "NDims = 3\n"
     << "BinaryData = True\n"
     << "BinaryDataByteOrderMSB = False\n"
     << "CompressedData = " << (compressed ? "True" : "False") << "\n";
  if (compressed) os << "CompressedDataSize = " << data.size() << "\n";
  os << "TransformMatrix =";
  for (int c = 0; c < 3; ++c)
    for (int r = 0; r < 3; ++r) os << ' ' << fmt_num(D[r][c]);
  os << "\nOffset = " << fmt_num(M[0][3]) << ' ' << fmt_num(M[1][3]) << ' ' << fmt_num(M[2][3]) << "\n"
     << "CenterOfRotation = 0 0 0\n"
     << "AnatomicalOrientation = " << orient << "\n"
     << "ElementSpacing = " << fmt_num(vol.spacing[0]) << ' ' << fmt_num(vol.spacing[1]) << ' '
     << fmt_num(vol.spacing[2]) << "\n"
     << "DimSize = " << vol.dims[0] << ' ' << vol.dims[1] << ' ' << vol.dims[2] << "\n"
     << "ElementType = " << meta_name(e) << "\n"
     << "ElementDataFile = " << data_name << "\n";
  const std::string text = os.str();
  detail::write_file_atomic(data_path, data);
  detail::write_file_atomic(mhd_path, std::vector<uint8_t>(text.begin(), text.end()));
}

}  // namespace rg::data
