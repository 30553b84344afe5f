// NIfTI-1/2 reader and writer: round trips, hand-made files in both byte orders, every
// datatype, scaling, extensions, qform/sform, .hdr/.img pairs, 4-D, bad input, Colin27.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <random>

#include "data/format_util.h"
#include "data/nifti.h"
#include "data/volume_info.h"
#include "data/volume_io.h"
#include "tests/data/format_test_util.h"

namespace rg::data {
namespace {

using testing::Bytes;
using testing::expect_error;
using testing::TempDir;

using Affine = std::array<std::array<double, 4>, 4>;

// An oblique affine: rotation about z by 30 degrees then about x by 10, spacing (0.8, 0.9, 2.5).
Affine oblique_affine(const std::array<double, 3>& sp) {
  const double a = 30 * M_PI / 180, b = 10 * M_PI / 180;
  const double Rz[3][3] = {{std::cos(a), -std::sin(a), 0}, {std::sin(a), std::cos(a), 0}, {0, 0, 1}};
  const double Rx[3][3] = {{1, 0, 0}, {0, std::cos(b), -std::sin(b)}, {0, std::sin(b), std::cos(b)}};
  Affine A{};
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 3; ++c) {
      double v = 0;
      for (int k = 0; k < 3; ++k) v += Rx[r][k] * Rz[k][c];
      A[r][c] = v * sp[c];
    }
  A[0][3] = -91.5;
  A[1][3] = 12.25;
  A[2][3] = -70;
  A[3] = {0, 0, 0, 1};
  return A;
}

Volume test_volume(std::array<int64_t, 3> dims, bool integral, uint32_t seed = 1) {
  Volume v;
  v.dims = dims;
  v.spacing = {0.8, 0.9, 2.5};
  v.affine = oblique_affine(v.spacing);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(-1000.f, 3000.f);
  v.voxels.resize(static_cast<size_t>(v.voxel_count()));
  for (auto& x : v.voxels) x = integral ? std::round(d(rng)) : d(rng);
  return v;
}

void expect_affine_near(const Affine& a, const Affine& b, double tol) {
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 4; ++c) EXPECT_NEAR(a[r][c], b[r][c], tol) << "affine[" << r << "][" << c << "]";
}

// A hand-made NIfTI-1 header.
struct N1 {
  std::array<int16_t, 8> dim{3, 1, 1, 1, 1, 1, 1, 1};
  int16_t datatype = 16, bitpix = 32;
  std::array<float, 8> pixdim{1, 1, 1, 1, 0, 0, 0, 0};
  float vox_offset = 352, slope = 0, inter = 0;
  int16_t qform_code = 0, sform_code = 0;
  float qb = 0, qc = 0, qd = 0, qx = 0, qy = 0, qz = 0;
  float srow[3][4] = {{1, 0, 0, 0}, {0, 1, 0, 0}, {0, 0, 1, 0}};
  const char* magic = "n+1";
  uint8_t units = 2;
};

Bytes nifti1_header(const N1& n, bool big) {
  Bytes b(348, big);
  b.put<int32_t>(0, 348);
  for (int i = 0; i < 8; ++i) b.put<int16_t>(40 + 2 * i, n.dim[i]);
  b.put<int16_t>(70, n.datatype);
  b.put<int16_t>(72, n.bitpix);
  for (int i = 0; i < 8; ++i) b.put<float>(76 + 4 * i, n.pixdim[i]);
  b.put<float>(108, n.vox_offset);
  b.put<float>(112, n.slope);
  b.put<float>(116, n.inter);
  b.vec()[123] = n.units;
  b.put<int16_t>(252, n.qform_code);
  b.put<int16_t>(254, n.sform_code);
  b.put<float>(256, n.qb);
  b.put<float>(260, n.qc);
  b.put<float>(264, n.qd);
  b.put<float>(268, n.qx);
  b.put<float>(272, n.qy);
  b.put<float>(276, n.qz);
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 4; ++c) b.put<float>(280 + 16 * r + 4 * c, n.srow[r][c]);
  b.put_str(344, n.magic, 4);
  return b;
}

// Appends values as T in the buffer's byte order.
template <typename T>
void append_values(Bytes& b, const std::vector<double>& values) {
  for (double v : values) b.append<T>(static_cast<T>(v));
}

TEST(Nifti, RoundTripFloat32KeepsValuesAffineAndSpacing) {
  TempDir dir;
  const Volume v = test_volume({7, 5, 4}, false);
  const std::string path = dir.file("v.nii");
  write_nifti(path, v, NiftiOut::Float32);
  const Volume r = read_nifti(path);
  EXPECT_EQ(r.dims, v.dims);
  for (int a = 0; a < 3; ++a) EXPECT_NEAR(r.spacing[a], v.spacing[a], 1e-6);
  expect_affine_near(r.affine, v.affine, 1e-5);
  EXPECT_EQ(r.voxels, v.voxels);
  EXPECT_EQ(r.source_dtype, "float32");
  EXPECT_EQ(r.source, path);
  // The qform written beside the sform describes the same geometry.
  NiftiHeader h = read_nifti_header(path);
  EXPECT_EQ(h.version, 1);
  EXPECT_EQ(h.sform_code, 1);
  EXPECT_EQ(h.qform_code, 1);
  h.sform_code = 0;
  expect_affine_near(nifti_affine(h), v.affine, 1e-4);
}

TEST(Nifti, RoundTripGzipIntegerTypes) {
  TempDir dir;
  const Volume v = test_volume({9, 6, 3}, true);
  for (auto [dt, name] : {std::pair{NiftiOut::Int16, "int16"}, std::pair{NiftiOut::Int32, "int32"},
                          std::pair{NiftiOut::Float64, "float64"}}) {
    const std::string path = dir.file(std::string("v_") + name + ".nii.gz");
    write_nifti(path, v, dt);
    const auto raw = testing::read_bytes(path);
    ASSERT_GE(raw.size(), 2u);
    EXPECT_EQ(raw[0], 0x1f);  // really gzip
    const Volume r = read_volume(path);
    EXPECT_EQ(r.voxels, v.voxels) << name;
    EXPECT_EQ(r.source_dtype, name);
    expect_affine_near(r.affine, v.affine, 1e-5);
  }
}

TEST(Nifti, RoundTripUInt8MaskAndNifti2) {
  TempDir dir;
  Volume m = test_volume({4, 4, 2}, true);
  for (size_t i = 0; i < m.voxels.size(); ++i) m.voxels[i] = static_cast<float>(i % 3 == 0 ? 4 : i % 2);
  write_nifti(dir.file("m.nii"), m, NiftiOut::UInt8);
  EXPECT_EQ(read_nifti(dir.file("m.nii")).voxels, m.voxels);
  write_nifti(dir.file("m2.nii.gz"), m, NiftiOut::UInt8, 2);
  EXPECT_EQ(read_nifti_header(dir.file("m2.nii.gz")).version, 2);
  const Volume r = read_nifti(dir.file("m2.nii.gz"));
  EXPECT_EQ(r.voxels, m.voxels);
  expect_affine_near(r.affine, m.affine, 1e-12);  // NIfTI-2 stores doubles
  for (int a = 0; a < 3; ++a) EXPECT_DOUBLE_EQ(r.spacing[a], m.spacing[a]);
}

TEST(Nifti, WriterRejectsValuesOutsideTheType) {
  TempDir dir;
  Volume v = test_volume({2, 2, 1}, true);
  v.voxels = {0, 1, 2, 300};
  expect_error([&] { write_nifti(dir.file("bad.nii"), v, NiftiOut::UInt8); }, {"bad.nii", "300"});
  EXPECT_FALSE(std::filesystem::exists(dir.file("bad.nii")));
  v.voxels = {0, 1, 2, NAN};
  expect_error([&] { write_nifti(dir.file("nan.nii"), v, NiftiOut::Int16); }, {"nan.nii"});
  expect_error([&] { write_nifti(dir.file("x.mhd"), v); }, {"x.mhd", ".nii"});
}

// Every datatype, in both byte orders, hand-written.
template <typename T>
void check_datatype(int16_t code, const char* name, const std::vector<double>& vals) {
  for (bool big : {false, true}) {
    TempDir dir;
    N1 n;
    n.dim = {3, static_cast<int16_t>(vals.size()), 1, 1, 1, 1, 1, 1};
    n.datatype = code;
    n.bitpix = static_cast<int16_t>(8 * sizeof(T));
    Bytes b = nifti1_header(n, big);
    b.vec().resize(352, 0);
    append_values<T>(b, vals);
    const std::string path = dir.file(std::string(name) + (big ? "_be" : "_le") + ".nii");
    testing::write_bytes(path, b.vec());
    const NiftiHeader h = read_nifti_header(path);
    EXPECT_EQ(h.swapped, big == (std::endian::native == std::endian::little)) << name;
    const Volume v = read_nifti(path);
    ASSERT_EQ(v.voxels.size(), vals.size()) << name;
    for (size_t i = 0; i < vals.size(); ++i)
      EXPECT_EQ(v.voxels[i], static_cast<float>(vals[i])) << name << (big ? " BE" : " LE") << " at " << i;
    EXPECT_EQ(v.source_dtype, name);
  }
}

TEST(Nifti, EveryDatatypeBothByteOrders) {
  check_datatype<uint8_t>(2, "uint8", {0, 1, 127, 255});
  check_datatype<int8_t>(256, "int8", {-128, -1, 0, 127});
  check_datatype<int16_t>(4, "int16", {-32768, -1024, 0, 3071, 32767});
  check_datatype<uint16_t>(512, "uint16", {0, 1, 40000, 65535});
  check_datatype<int32_t>(8, "int32", {-2000000, -1, 0, 16777216});
  check_datatype<uint32_t>(768, "uint32", {0, 1, 4000000, 16777216});
  check_datatype<int64_t>(1024, "int64", {-4096, 0, 1, 1 << 24});
  check_datatype<uint64_t>(1280, "uint64", {0, 1, 65536, 1 << 24});
  check_datatype<float>(16, "float32", {-1.5, 0, 3.25, 1e30});
  check_datatype<double>(64, "float64", {-1.5, 0, 3.25, 1e-3});
}

TEST(Nifti, SclSlopeAndInterApplied) {
  TempDir dir;
  N1 n;
  n.dim = {3, 3, 1, 1, 1, 1, 1, 1};
  n.datatype = 4;
  n.bitpix = 16;
  n.slope = 2;
  n.inter = -1024;
  Bytes b = nifti1_header(n, false);
  b.vec().resize(352, 0);
  append_values<int16_t>(b, {0, 512, 1000});
  testing::write_bytes(dir.file("s.nii"), b.vec());
  const Volume v = read_nifti(dir.file("s.nii"));
  EXPECT_EQ(v.voxels, (std::vector<float>{-1024, 0, 976}));
  // slope 0 means "no scaling", whatever the intercept says.
  n.slope = 0;
  n.inter = 5;
  Bytes c = nifti1_header(n, true);
  c.vec().resize(352, 0);
  append_values<int16_t>(c, {0, 512, 1000});
  testing::write_bytes(dir.file("s0.nii"), c.vec());
  EXPECT_EQ(read_nifti(dir.file("s0.nii")).voxels, (std::vector<float>{0, 512, 1000}));
}

TEST(Nifti, VoxOffsetSkipsHeaderExtensions) {
  TempDir dir;
  N1 n;
  n.dim = {3, 2, 2, 1, 1, 1, 1, 1};
  n.vox_offset = 352 + 48;
  for (bool big : {false, true}) {
    Bytes b = nifti1_header(n, big);
    b.vec().resize(348, 0);
    b.put<uint8_t>(348, 1);      // extension flag
    b.put<int32_t>(352, 48);     // esize (multiple of 16)
    b.put<int32_t>(356, 6);      // ecode: comment
    b.put_str(360, "an extension that must be skipped....", 38);
    b.vec().resize(400, 0xAB);   // pad to vox_offset with junk
    append_values<float>(b, {1.5f, -2.f, 3.f, 4.25f});
    const std::string path = dir.file(big ? "ext_be.nii" : "ext_le.nii");
    testing::write_bytes(path, b.vec());
    EXPECT_EQ(read_nifti(path).voxels, (std::vector<float>{1.5f, -2.f, 3.f, 4.25f}));
  }
}

TEST(Nifti, HdrImgPairReadByEitherName) {
  TempDir dir;
  N1 n;
  n.dim = {3, 2, 3, 1, 1, 1, 1, 1};
  n.datatype = 4;
  n.bitpix = 16;
  n.vox_offset = 0;
  n.magic = "ni1";
  n.pixdim = {1, 2, 3, 4, 0, 0, 0, 0};
  Bytes h = nifti1_header(n, true);
  testing::write_bytes(dir.file("pair.hdr"), h.vec());
  Bytes d(0, true);
  append_values<int16_t>(d, {1, 2, 3, -4, -5, 600});
  testing::write_bytes(dir.file("pair.img"), d.vec());
  for (const char* name : {"pair.hdr", "pair.img"}) {
    const Volume v = read_volume(dir.file(name));
    EXPECT_EQ(v.dims, (std::array<int64_t, 3>{2, 3, 1})) << name;
    EXPECT_EQ(v.voxels, (std::vector<float>{1, 2, 3, -4, -5, 600})) << name;
    EXPECT_EQ(v.spacing, (std::array<double, 3>{2, 3, 4}));
    // No qform/sform: pixdim scaling.
    expect_affine_near(v.affine, Affine{{{2, 0, 0, 0}, {0, 3, 0, 0}, {0, 0, 4, 0}, {0, 0, 0, 1}}}, 0);
  }
  std::filesystem::remove(dir.file("pair.img"));
  expect_error([&] { read_volume(dir.file("pair.hdr")); }, {"pair.hdr", "pair.img", "does not exist"});
}

TEST(Nifti, QformUsedWhenNoSform) {
  TempDir dir;
  N1 n;
  n.dim = {3, 1, 1, 1, 1, 1, 1, 1};
  n.qform_code = 1;
  // 90 degrees about z: a = cos 45, d = sin 45.
  n.qd = static_cast<float>(std::sqrt(0.5));
  n.qx = 10;
  n.qy = 20;
  n.qz = 30;
  n.pixdim = {-1, 2, 3, 4, 0, 0, 0, 0};  // qfac -1 flips k
  n.srow[0][0] = 99;                       // ignored: sform_code is 0
  Bytes b = nifti1_header(n, false);
  b.vec().resize(352, 0);
  append_values<float>(b, {7});
  testing::write_bytes(dir.file("q.nii"), b.vec());
  const Volume v = read_nifti(dir.file("q.nii"));
  expect_affine_near(v.affine, Affine{{{0, -3, 0, 10}, {2, 0, 0, 20}, {0, 0, -4, 30}, {0, 0, 0, 1}}}, 1e-6);
  // With sform_code > 0 the sform wins.
  n.sform_code = 2;
  Bytes c = nifti1_header(n, false);
  c.vec().resize(352, 0);
  append_values<float>(c, {7});
  testing::write_bytes(dir.file("s.nii"), c.vec());
  EXPECT_EQ(read_nifti(dir.file("s.nii")).affine[0][0], 99);
}

TEST(Nifti, UnitsMetersAndMicronsConvertToMm) {
  TempDir dir;
  N1 n;
  n.pixdim = {1, 0.001f, 0.002f, 0.003f, 0, 0, 0, 0};
  n.units = 1;  // meters
  Bytes b = nifti1_header(n, false);
  b.vec().resize(352, 0);
  append_values<float>(b, {1});
  testing::write_bytes(dir.file("m.nii"), b.vec());
  const Volume v = read_nifti(dir.file("m.nii"));
  EXPECT_NEAR(v.spacing[0], 1, 1e-6);
  EXPECT_NEAR(v.spacing[2], 3, 1e-6);
  EXPECT_NEAR(v.affine[1][1], 2, 1e-6);
}

// Hand-made NIfTI-2, big-endian, with a 4-D shape: volume_index picks the volume.
TEST(Nifti, Nifti2BigEndianFourD) {
  TempDir dir;
  Bytes b(540, /*big_endian=*/true);
  b.put<int32_t>(0, 540);
  b.put_str(4, "n+2\0\r\n\032\n", 8);
  b.put<int16_t>(12, 64);  // float64
  b.put<int16_t>(14, 64);
  const int64_t dims[8] = {4, 2, 2, 1, 3, 1, 1, 1};
  for (int i = 0; i < 8; ++i) b.put<int64_t>(16 + 8 * i, dims[i]);
  const double pix[8] = {1, 1.25, 1.5, 1.75, 1, 0, 0, 0};
  for (int i = 0; i < 8; ++i) b.put<double>(104 + 8 * i, pix[i]);
  b.put<int64_t>(168, 544);
  b.put<double>(176, 0.5);  // scl_slope
  b.put<double>(184, 1);    // scl_inter
  b.put<int32_t>(348, 1);   // sform_code
  const double srow[3][4] = {{-1.25, 0, 0, 5}, {0, 1.5, 0, -6}, {0, 0, 1.75, 7}};
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 4; ++c) b.put<double>(400 + 32 * r + 8 * c, srow[r][c]);
  b.put<int32_t>(500, 2);
  b.vec().resize(544, 0);
  for (int i = 0; i < 12; ++i) b.append<double>(i);
  const std::string path = dir.file("v2.nii");
  testing::write_bytes(path, b.vec());
  const NiftiHeader h = read_nifti_header(path);
  EXPECT_EQ(h.version, 2);
  EXPECT_EQ(h.dim[4], 3);
  const Volume v0 = read_nifti(path);
  EXPECT_EQ(v0.voxels, (std::vector<float>{1, 1.5, 2, 2.5}));
  const Volume v2 = read_nifti(path, 2);
  EXPECT_EQ(v2.voxels, (std::vector<float>{5, 5.5, 6, 6.5}));
  EXPECT_EQ(v2.spacing, (std::array<double, 3>{1.25, 1.5, 1.75}));
  EXPECT_EQ(v2.affine[0][0], -1.25);
  EXPECT_EQ(v2.affine[2][3], 7);
  expect_error([&] { read_nifti(path, 3); }, {"v2.nii", "volume index 3", "3 volumes"});
  // prepare_data info: the whole shape, and the volume it describes.
  const std::string text = describe_nifti_file(path, 2, false);
  EXPECT_NE(text.find("2 x 2 x 1 x 3"), std::string::npos) << text;
  EXPECT_NE(text.find("3 volumes; volume 2"), std::string::npos) << text;
  const auto j = nlohmann::json::parse(describe_nifti_file(path, 1, true));
  EXPECT_EQ(j["volumes"], 3);
  EXPECT_EQ(j["volume"], 1);
  EXPECT_EQ(j["nifti_dims"], (std::vector<int64_t>{2, 2, 1, 3}));
  expect_error([&] { describe_nifti_file(path, 5, false); }, {"v2.nii", "3 volume(s)"});
}

TEST(Nifti, FromMemoryPlainAndGzip) {
  TempDir dir;
  const Volume v = test_volume({3, 3, 3}, true);
  write_nifti(dir.file("a.nii.gz"), v, NiftiOut::Int16);
  const auto gz = testing::read_bytes(dir.file("a.nii.gz"));
  EXPECT_EQ(read_nifti_from_memory(gz.data(), gz.size(), "mem.nii.gz").voxels, v.voxels);
  write_nifti(dir.file("a.nii"), v, NiftiOut::Int16);
  const auto raw = testing::read_bytes(dir.file("a.nii"));
  EXPECT_EQ(read_nifti_from_memory(raw.data(), raw.size(), "mem.nii").voxels, v.voxels);
}

TEST(Nifti, BadInputThrowsNamingTheFile) {
  TempDir dir;
  expect_error([&] { read_volume(dir.file("missing.nii")); }, {"missing.nii", "no such file"});

  testing::write_bytes(dir.file("short.nii"), {1, 2});
  expect_error([&] { read_nifti(dir.file("short.nii")); }, {"short.nii"});

  std::vector<uint8_t> junk(400, 'x');
  testing::write_bytes(dir.file("junk.nii"), junk);
  expect_error([&] { read_nifti(dir.file("junk.nii")); }, {"junk.nii", "not a NIfTI", "sizeof_hdr"});

  N1 n;
  n.dim = {3, 4, 4, 4, 1, 1, 1, 1};
  n.magic = "xyz";
  Bytes b = nifti1_header(n, false);
  testing::write_bytes(dir.file("magic.nii"), b.vec());
  expect_error([&] { read_nifti(dir.file("magic.nii")); }, {"magic.nii", "magic"});

  n.magic = "n+1";
  n.datatype = 128;  // RGB24
  n.bitpix = 24;
  b = nifti1_header(n, false);
  testing::write_bytes(dir.file("rgb.nii"), b.vec());
  expect_error([&] { read_nifti(dir.file("rgb.nii")); }, {"rgb.nii", "rgb24"});
  n.datatype = 77;
  b = nifti1_header(n, false);
  testing::write_bytes(dir.file("dt.nii"), b.vec());
  expect_error([&] { read_nifti(dir.file("dt.nii")); }, {"dt.nii", "unknown(77)"});

  n.datatype = 16;
  n.bitpix = 32;
  n.dim = {3, 4, 0, 4, 1, 1, 1, 1};
  b = nifti1_header(n, false);
  testing::write_bytes(dir.file("dim0.nii"), b.vec());
  expect_error([&] { read_nifti(dir.file("dim0.nii")); }, {"dim0.nii", "dim[2]"});

  // Data shorter than the header says (truncated file).
  n.dim = {3, 4, 4, 4, 1, 1, 1, 1};
  b = nifti1_header(n, false);
  b.vec().resize(352 + 4 * 63, 0);
  testing::write_bytes(dir.file("trunc.nii"), b.vec());
  expect_error([&] { read_nifti(dir.file("trunc.nii")); }, {"trunc.nii", "shorter than the header"});

  // An absurd header (32767^3 float64 = 281 TB) is rejected without trying to allocate it.
  n.dim = {3, 32767, 32767, 32767, 1, 1, 1, 1};
  n.datatype = 64;
  b = nifti1_header(n, false);
  b.vec().resize(1000, 0);
  testing::write_bytes(dir.file("huge.nii"), b.vec());
  expect_error([&] { read_nifti(dir.file("huge.nii")); }, {"huge.nii"});
  const auto huge = b.vec();
  expect_error([&] { read_nifti_from_memory(huge.data(), huge.size(), "huge-mem"); }, {"huge-mem"});

  // Corrupt and truncated gzip.
  const Volume v = test_volume({16, 16, 16}, true);
  write_nifti(dir.file("ok.nii.gz"), v, NiftiOut::Int16);
  auto gz = testing::read_bytes(dir.file("ok.nii.gz"));
  auto corrupt = gz;
  for (size_t i = 40; i < corrupt.size() - 20; i += 7) corrupt[i] ^= 0x5a;
  testing::write_bytes(dir.file("corrupt.nii.gz"), corrupt);
  expect_error([&] { read_nifti(dir.file("corrupt.nii.gz")); }, {"corrupt.nii.gz"});
  gz.resize(gz.size() / 2);
  testing::write_bytes(dir.file("half.nii.gz"), gz);
  expect_error([&] { read_nifti(dir.file("half.nii.gz")); }, {"half.nii.gz", "shorter"});
}

TEST(VolumeIo, DetectsFormatsByExtensionAndContent) {
  TempDir dir;
  const Volume v = test_volume({3, 2, 2}, true);
  write_nifti(dir.file("a.nii.gz"), v, NiftiOut::Int16);
  write_nifti(dir.file("b.nii"), v, NiftiOut::Int16);
  std::filesystem::copy_file(dir.file("a.nii.gz"), dir.file("gz_no_ext"));
  std::filesystem::copy_file(dir.file("b.nii"), dir.file("nii_no_ext"));
  EXPECT_EQ(detect_volume_format(dir.file("a.nii.gz")), VolumeFormat::Nifti);
  EXPECT_EQ(detect_volume_format(dir.file("gz_no_ext")), VolumeFormat::Nifti);
  EXPECT_EQ(detect_volume_format(dir.file("nii_no_ext")), VolumeFormat::Nifti);
  EXPECT_EQ(detect_volume_format(dir.str()), VolumeFormat::Dicom);
  EXPECT_EQ(read_volume(dir.file("gz_no_ext")).voxels, v.voxels);
  EXPECT_EQ(read_volume(dir.file("nii_no_ext")).voxels, v.voxels);
  testing::write_bytes(dir.file("mystery.bin"), {1, 2, 3, 4, 5, 6, 7, 8});
  EXPECT_EQ(detect_volume_format(dir.file("mystery.bin")), VolumeFormat::Unknown);
  expect_error([&] { read_volume(dir.file("mystery.bin")); }, {"mystery.bin", "unknown volume format"});
}

// The real Colin27 template from Debian's mricron-data, when installed.
TEST(Nifti, Colin27WhenInstalled) {
  const std::string ch2 = "/usr/share/mricron/templates/ch2.nii.gz";
  const std::string bet = "/usr/share/mricron/templates/ch2bet.nii.gz";
  if (!std::filesystem::exists(ch2) || !std::filesystem::exists(bet))
    GTEST_SKIP() << "Colin27 (mricron-data) not installed: " << ch2;
  // Facts measured once (and cross-checked with an independent header dump): 181 x 217 x 181
  // uint8 at 1 mm, MNI sform (code 4, no qform), origin (-90, -125, -71); T1 values 0..254.
  const Volume v = read_volume(ch2);
  EXPECT_EQ(v.dims, (std::array<int64_t, 3>{181, 217, 181}));
  EXPECT_EQ(v.spacing, (std::array<double, 3>{1, 1, 1}));
  EXPECT_EQ(v.source_dtype, "uint8");
  expect_affine_near(v.affine, Affine{{{1, 0, 0, -90}, {0, 1, 0, -125}, {0, 0, 1, -71}, {0, 0, 0, 1}}}, 0);
  const NiftiHeader h = read_nifti_header(ch2);
  EXPECT_EQ(h.sform_code, 4);
  EXPECT_EQ(h.qform_code, 0);
  double lo = v.voxels[0], hi = lo, sum = 0;
  for (float x : v.voxels) {
    lo = std::min<double>(lo, x);
    hi = std::max<double>(hi, x);
    sum += x;
  }
  EXPECT_EQ(lo, 0);
  EXPECT_EQ(hi, 254);
  EXPECT_NEAR(sum / static_cast<double>(v.voxels.size()), 44.6118, 1e-3);

  const Volume m = read_volume(bet);
  EXPECT_EQ(m.dims, v.dims);
  EXPECT_EQ(m.affine, v.affine);
  int64_t nonzero = 0, outside_head = 0;
  float mhi = 0;
  for (size_t i = 0; i < m.voxels.size(); ++i) {
    nonzero += m.voxels[i] > 0;
    outside_head += m.voxels[i] > 0 && v.voxels[i] == 0;
    mhi = std::max(mhi, m.voxels[i]);
  }
  EXPECT_EQ(nonzero, 1737193);  // brain voxels (1.74 litres at 1 mm)
  EXPECT_EQ(mhi, 133);
  EXPECT_LT(outside_head, nonzero / 100);  // the brain lies inside the head
}

}  // namespace
}  // namespace rg::data
