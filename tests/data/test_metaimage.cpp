// MetaImage reader and writer: LUNA16-style round trips (.raw and .zraw), hand-written headers
// (LPS -> RAS, TransformMatrix order, byte order, element types, LOCAL data, HeaderSize), errors.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <random>
#include <sstream>

#include "data/metaimage.h"
#include "data/volume_io.h"
#include "tests/data/format_test_util.h"

namespace rg::data {
namespace {

using testing::Bytes;
using testing::expect_error;
using testing::TempDir;
using Affine = std::array<std::array<double, 4>, 4>;

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

void expect_affine_near(const Affine& a, const Affine& b, double tol) {
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 4; ++c) EXPECT_NEAR(a[r][c], b[r][c], tol) << "affine[" << r << "][" << c << "]";
}

// A LUNA16-like CT: LPS-identity direction (RAS diag(-sx, -sy, sz)), HU values.
Volume ct_volume(std::array<int64_t, 3> dims) {
  Volume v;
  v.dims = dims;
  v.spacing = {0.703125, 0.703125, 2.5};
  v.affine = Affine{{{-0.703125, 0, 0, 198.1}, {0, -0.703125, 0, 195.0}, {0, 0, 2.5, -335.2}, {0, 0, 0, 1}}};
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> d(-1024, 3071);
  v.voxels.resize(static_cast<size_t>(v.voxel_count()));
  for (auto& x : v.voxels) x = static_cast<float>(d(rng));
  return v;
}

std::string luna_header(const std::string& extra, const std::string& data_file,
                        const std::string& type = "MET_SHORT", const std::string& dims = "3 2 2",
                        const std::string& msb = "False") {
  return "ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = " + msb +
         "\nCompressedData = False\nTransformMatrix = 1 0 0 0 1 0 0 0 1\n"
         "Offset = -198.1 -195 -335.2\nCenterOfRotation = 0 0 0\nAnatomicalOrientation = RAI\n"
         "ElementSpacing = 0.7 0.7 2.5\n" + extra + "DimSize = " + dims + "\nElementType = " + type +
         "\nElementDataFile = " + data_file + "\n";
}

TEST(MetaImage, RoundTripRawShort) {
  TempDir dir;
  const Volume v = ct_volume({8, 6, 5});
  const std::string mhd = dir.file("scan.mhd");
  write_metaimage(mhd, v, MetaOut::Short, false);
  ASSERT_TRUE(std::filesystem::exists(dir.file("scan.raw")));
  EXPECT_EQ(std::filesystem::file_size(dir.file("scan.raw")), 8u * 6 * 5 * 2);
  const std::string text = read_text(mhd);
  // LUNA16's field order and values for an axial LPS scan.
  const char* expected_lines[] = {"ObjectType = Image\n", "NDims = 3\n", "BinaryData = True\n",
                                  "BinaryDataByteOrderMSB = False\n", "CompressedData = False\n",
                                  "TransformMatrix = 1 0 0 0 1 0 0 0 1\n", "Offset = -198.1 -195 -335.2\n",
                                  "CenterOfRotation = 0 0 0\n", "AnatomicalOrientation = RAI\n",
                                  "ElementSpacing = 0.703125 0.703125 2.5\n", "DimSize = 8 6 5\n",
                                  "ElementType = MET_SHORT\n", "ElementDataFile = scan.raw\n"};
  size_t pos = 0;
  for (const char* line : expected_lines) {
    const size_t at = text.find(line, pos);
    EXPECT_NE(at, std::string::npos) << "missing or out of order: " << line << "in\n" << text;
    if (at != std::string::npos) pos = at;
  }
  const Volume r = read_volume(mhd);
  EXPECT_EQ(r.dims, v.dims);
  EXPECT_EQ(r.spacing, v.spacing);
  expect_affine_near(r.affine, v.affine, 1e-12);
  EXPECT_EQ(r.voxels, v.voxels);
  EXPECT_EQ(r.source_dtype, "int16");
}

TEST(MetaImage, RoundTripZrawAndEveryOutputType) {
  TempDir dir;
  Volume v = ct_volume({7, 5, 3});
  // An oblique direction survives the LPS round trip too.
  const double a = 0.3;
  v.affine[0][0] = -std::cos(a) * 0.703125;
  v.affine[1][0] = -std::sin(a) * 0.703125;
  v.affine[0][1] = std::sin(a) * 0.703125;
  v.affine[1][1] = -std::cos(a) * 0.703125;
  write_metaimage(dir.file("z.mhd"), v, MetaOut::Short, true);
  ASSERT_TRUE(std::filesystem::exists(dir.file("z.zraw")));
  EXPECT_FALSE(std::filesystem::exists(dir.file("z.raw")));
  const std::string text = read_text(dir.file("z.mhd"));
  EXPECT_NE(text.find("CompressedData = True"), std::string::npos);
  EXPECT_NE(text.find("CompressedDataSize = " + std::to_string(std::filesystem::file_size(dir.file("z.zraw")))),
            std::string::npos);
  const Volume r = read_volume(dir.file("z.mhd"));
  EXPECT_EQ(r.voxels, v.voxels);
  expect_affine_near(r.affine, v.affine, 1e-12);

  Volume small = v;
  for (size_t i = 0; i < small.voxels.size(); ++i) small.voxels[i] = static_cast<float>(i % 100);
  for (auto t : {MetaOut::UChar, MetaOut::Char, MetaOut::UShort, MetaOut::Int, MetaOut::UInt,
                 MetaOut::Float, MetaOut::Double}) {
    write_metaimage(dir.file("t.mhd"), small, t, static_cast<int>(t) % 2 == 0);
    EXPECT_EQ(read_metaimage(dir.file("t.mhd")).voxels, small.voxels) << static_cast<int>(t);
  }
  small.voxels[0] = -1;
  expect_error([&] { write_metaimage(dir.file("u.mhd"), small, MetaOut::UChar); }, {"u.mhd", "-1"});
}

TEST(MetaImage, LpsToRasAndTransformMatrixOrder) {
  TempDir dir;
  Bytes d;
  for (int i = 0; i < 12; ++i) d.append<int16_t>(static_cast<int16_t>(i - 6));
  testing::write_bytes(dir.file("x.raw"), d.vec());
  write_text(dir.file("x.mhd"), luna_header("", "x.raw"));
  const Volume v = read_metaimage(dir.file("x.mhd"));
  EXPECT_EQ(v.dims, (std::array<int64_t, 3>{3, 2, 2}));
  EXPECT_EQ(v.spacing, (std::array<double, 3>{0.7, 0.7, 2.5}));
  expect_affine_near(v.affine, Affine{{{-0.7, 0, 0, 198.1}, {0, -0.7, 0, 195}, {0, 0, 2.5, -335.2}, {0, 0, 0, 1}}}, 1e-12);
  EXPECT_EQ(v.voxels[0], -6);
  EXPECT_EQ(v.voxels[11], 5);

  // TransformMatrix lists axis 0's direction first: i runs along LPS +y, j along LPS -x.
  std::string h = luna_header("", "x.raw");
  h.replace(h.find("1 0 0 0 1 0 0 0 1"), 17, "0 1 0 -1 0 0 0 0 1");
  write_text(dir.file("rot.mhd"), h);
  const Volume r = read_metaimage(dir.file("rot.mhd"));
  expect_affine_near(r.affine, Affine{{{0, 0.7, 0, 198.1}, {-0.7, 0, 0, 195}, {0, 0, 2.5, -335.2}, {0, 0, 0, 1}}}, 1e-12);
  // Writing it back gives the same TransformMatrix.
  write_metaimage(dir.file("rot2.mhd"), r, MetaOut::Short);
  EXPECT_NE(read_text(dir.file("rot2.mhd")).find("TransformMatrix = 0 1 0 -1 0 0 0 0 1"), std::string::npos);
}

template <typename T>
void check_type(const std::string& met, const std::vector<double>& vals, const char* dtype) {
  for (bool msb : {false, true}) {
    TempDir dir;
    Bytes d(0, msb);
    for (double x : vals) d.append<T>(static_cast<T>(x));
    testing::write_bytes(dir.file("d.raw"), d.vec());
    write_text(dir.file("d.mhd"), luna_header("", "d.raw", met, std::to_string(vals.size()) + " 1 1",
                                              msb ? "True" : "False"));
    const Volume v = read_volume(dir.file("d.mhd"));
    ASSERT_EQ(v.voxels.size(), vals.size());
    for (size_t i = 0; i < vals.size(); ++i) EXPECT_EQ(v.voxels[i], static_cast<float>(vals[i])) << met << " msb " << msb;
    EXPECT_EQ(v.source_dtype, dtype);
  }
}

TEST(MetaImage, ElementTypesBothByteOrders) {
  check_type<uint8_t>("MET_UCHAR", {0, 3, 4, 255}, "uint8");
  check_type<int8_t>("MET_CHAR", {-128, -1, 0, 127}, "int8");
  check_type<int16_t>("MET_SHORT", {-1024, -1, 0, 3071}, "int16");
  check_type<uint16_t>("MET_USHORT", {0, 1, 65535}, "uint16");
  check_type<int32_t>("MET_INT", {-70000, 0, 70000}, "int32");
  check_type<uint32_t>("MET_UINT", {0, 1, 4000000}, "uint32");
  check_type<float>("MET_FLOAT", {-1.25, 0, 1e20}, "float32");
  check_type<double>("MET_DOUBLE", {-1.25, 0, 0.1}, "float64");
}

TEST(MetaImage, LocalDataHeaderSizeAndElementSize) {
  TempDir dir;
  // .mha with the data right after the header.
  std::string h = luna_header("", "LOCAL", "MET_UCHAR");
  h.replace(h.find("ElementSpacing"), 14, "ElementSize");
  std::vector<uint8_t> bytes(h.begin(), h.end());
  for (int i = 0; i < 12; ++i) bytes.push_back(static_cast<uint8_t>(10 + i));
  testing::write_bytes(dir.file("l.mha"), bytes);
  const Volume v = read_volume(dir.file("l.mha"));
  EXPECT_EQ(v.voxels[0], 10);
  EXPECT_EQ(v.voxels[11], 21);
  EXPECT_EQ(v.spacing[2], 2.5);  // from ElementSize
  // The memory entry point does the same.
  EXPECT_EQ(read_metaimage_from_memory(bytes.data(), bytes.size(), nullptr, 0, "mem").voxels, v.voxels);

  // HeaderSize = 5: skip 5 bytes of the data file; HeaderSize = -1: data at the end.
  std::vector<uint8_t> raw = {9, 9, 9, 9, 9};
  for (int i = 0; i < 12; ++i) raw.push_back(static_cast<uint8_t>(i));
  testing::write_bytes(dir.file("h.raw"), raw);
  write_text(dir.file("h5.mhd"), luna_header("HeaderSize = 5\n", "h.raw", "MET_UCHAR"));
  EXPECT_EQ(read_volume(dir.file("h5.mhd")).voxels[0], 0);
  write_text(dir.file("hm1.mhd"), luna_header("HeaderSize = -1\n", "h.raw", "MET_UCHAR"));
  EXPECT_EQ(read_volume(dir.file("hm1.mhd")).voxels[11], 11);
}

TEST(MetaImage, BadInputThrowsNamingTheFile) {
  TempDir dir;
  expect_error([&] { read_volume(dir.file("none.mhd")); }, {"none.mhd", "no such file"});

  write_text(dir.file("noraw.mhd"), luna_header("", "noraw.raw"));
  expect_error([&] { read_volume(dir.file("noraw.mhd")); }, {"noraw.mhd", "noraw.raw", "does not exist"});

  testing::write_bytes(dir.file("short.raw"), std::vector<uint8_t>(23, 0));  // needs 24
  write_text(dir.file("short.mhd"), luna_header("", "short.raw"));
  expect_error([&] { read_volume(dir.file("short.mhd")); }, {"short.raw", "shorter than the header"});

  testing::write_bytes(dir.file("c.zraw"), std::vector<uint8_t>{0x78, 0x9c, 1, 2, 3, 4, 5, 6, 7, 8});
  write_text(dir.file("c.mhd"), luna_header("CompressedData = True\n", "c.zraw"));
  expect_error([&] { read_volume(dir.file("c.mhd")); }, {"c.zraw"});

  testing::write_bytes(dir.file("ok.raw"), std::vector<uint8_t>(24, 0));
  write_text(dir.file("type.mhd"), luna_header("", "ok.raw", "MET_FLOAT_ARRAY"));
  expect_error([&] { read_volume(dir.file("type.mhd")); }, {"type.mhd", "MET_FLOAT_ARRAY"});
  write_text(dir.file("dims.mhd"), luna_header("", "ok.raw", "MET_SHORT", "3 2"));
  expect_error([&] { read_volume(dir.file("dims.mhd")); }, {"dims.mhd", "DimSize"});
  write_text(dir.file("neg.mhd"), luna_header("", "ok.raw", "MET_SHORT", "3 -2 2"));
  expect_error([&] { read_volume(dir.file("neg.mhd")); }, {"neg.mhd", "DimSize"});
  write_text(dir.file("huge.mhd"), luna_header("", "ok.raw", "MET_DOUBLE", "100000 100000 100000"));
  expect_error([&] { read_volume(dir.file("huge.mhd")); }, {"huge.mhd", "absurd"});
  write_text(dir.file("big.mhd"), luna_header("", "ok.raw", "MET_SHORT", "1000 1000 100"));
  expect_error([&] { read_volume(dir.file("big.mhd")); }, {"ok.raw", "shorter"});
  write_text(dir.file("nofile.mhd"), "ObjectType = Image\nNDims = 3\nDimSize = 1 1 1\nElementType = MET_SHORT\n");
  expect_error([&] { read_volume(dir.file("nofile.mhd")); }, {"nofile.mhd", "ElementDataFile"});
  write_text(dir.file("text.mhd"), "hello world\n");
  expect_error([&] { read_volume(dir.file("text.mhd")); }, {"text.mhd", "not a MetaImage"});
  write_text(dir.file("csize.mhd"), luna_header("CompressedData = True\nCompressedDataSize = 999\n", "ok.raw"));
  expect_error([&] { read_volume(dir.file("csize.mhd")); }, {"ok.raw", "CompressedDataSize"});
  write_text(dir.file("list.mhd"), luna_header("", "LIST"));
  expect_error([&] { read_volume(dir.file("list.mhd")); }, {"list.mhd", "not supported"});
}

}  // namespace
}  // namespace rg::data
