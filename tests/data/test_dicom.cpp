// DICOM series reader: small synthetic CT series written with DCMTK into a temp directory.
// A build without DCMTK (RG_WITH_DCMTK unset, see data/CMakeLists.txt) has no DICOM support:
// there the reader must refuse with a clear message, and the DCMTK-written series are skipped.
#include <gtest/gtest.h>

#ifdef RG_WITH_DCMTK
#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcuid.h>
#endif

#include <cmath>
#include <cstdio>
#include <cstring>
#include <vector>

#include "data/dicom.h"
#include "data/volume_io.h"
#include "tests/data/format_test_util.h"

namespace rg::data {
namespace {

using testing::expect_error;
using testing::TempDir;

#ifndef RG_WITH_DCMTK

TEST(Dicom, WithoutDcmtkReadingRefusesClearly) {
  TempDir dir;
  std::filesystem::create_directories(dir.file("ct"));
  // A minimal file with the DICOM preamble: recognised without DCMTK, but not readable.
  std::vector<uint8_t> bytes(132, 0);
  std::memcpy(bytes.data() + 128, "DICM", 4);
  testing::write_bytes(dir.file("ct/a.dcm"), bytes);
  EXPECT_TRUE(looks_like_dicom(dir.file("ct/a.dcm")));
  const std::string why = "this build has no DICOM support: DCMTK was not found";
  expect_error([&] { read_dicom_series(dir.file("ct")); }, {"ct", why});
  expect_error([&] { list_dicom_series(dir.file("ct")); }, {why});
  expect_error([&] { read_volume(dir.file("ct/a.dcm")); }, {why});
}

TEST(Dicom, SeriesTestsNeedDcmtk) {
  GTEST_SKIP() << "built without DCMTK (RG_DCMTK): the DICOM series tests are skipped";
}

#else
using Affine = std::array<std::array<double, 4>, 4>;

struct Slice {
  std::string series_uid = "1.2.826.0.1.3680043.2.1125.1.1";
  int instance = 1;
  std::array<double, 3> pos{0, 0, 0};
  std::array<double, 6> iop{1, 0, 0, 0, 1, 0};
  int rows = 3, cols = 4;
  double row_spacing = 0.6, col_spacing = 0.5;  // PixelSpacing = row\col
  double slope = 1, intercept = -1024;
  int bits_allocated = 16, bits_stored = 16, pixel_rep = 1;
  std::vector<uint16_t> pixels;  // rows * cols raw stored values
};

std::string join(const double* v, int n) {
  std::string s;
  char buf[64];
  for (int i = 0; i < n; ++i) {
    std::snprintf(buf, sizeof(buf), "%.10g", v[i]);
    s += (i ? "\\" : "") + std::string(buf);
  }
  return s;
}

void write_slice(const std::string& path, const Slice& s) {
  DcmFileFormat ff;
  DcmDataset* ds = ff.getDataset();
  char uid[100];
  ds->putAndInsertString(DCM_SOPClassUID, UID_CTImageStorage);
  ds->putAndInsertString(DCM_SOPInstanceUID, dcmGenerateUniqueIdentifier(uid, SITE_INSTANCE_UID_ROOT));
  ds->putAndInsertString(DCM_StudyInstanceUID, "1.2.826.0.1.3680043.2.1125.1");
  ds->putAndInsertString(DCM_SeriesInstanceUID, s.series_uid.c_str());
  ds->putAndInsertString(DCM_Modality, "CT");
  ds->putAndInsertString(DCM_SeriesDescription, "synthetic");
  ds->putAndInsertString(DCM_InstanceNumber, std::to_string(s.instance).c_str());
  ds->putAndInsertString(DCM_ImagePositionPatient, join(s.pos.data(), 3).c_str());
  ds->putAndInsertString(DCM_ImageOrientationPatient, join(s.iop.data(), 6).c_str());
  const double ps[2] = {s.row_spacing, s.col_spacing};
  ds->putAndInsertString(DCM_PixelSpacing, join(ps, 2).c_str());
  ds->putAndInsertString(DCM_SliceThickness, "2.5");
  ds->putAndInsertString(DCM_RescaleSlope, join(&s.slope, 1).c_str());
  ds->putAndInsertString(DCM_RescaleIntercept, join(&s.intercept, 1).c_str());
  ds->putAndInsertUint16(DCM_SamplesPerPixel, 1);
  ds->putAndInsertString(DCM_PhotometricInterpretation, "MONOCHROME2");
  ds->putAndInsertUint16(DCM_Rows, static_cast<Uint16>(s.rows));
  ds->putAndInsertUint16(DCM_Columns, static_cast<Uint16>(s.cols));
  ds->putAndInsertUint16(DCM_BitsAllocated, static_cast<Uint16>(s.bits_allocated));
  ds->putAndInsertUint16(DCM_BitsStored, static_cast<Uint16>(s.bits_stored));
  ds->putAndInsertUint16(DCM_HighBit, static_cast<Uint16>(s.bits_stored - 1));
  ds->putAndInsertUint16(DCM_PixelRepresentation, static_cast<Uint16>(s.pixel_rep));
  if (s.bits_allocated == 8) {
    std::vector<Uint8> px(s.pixels.begin(), s.pixels.end());
    ds->putAndInsertUint8Array(DCM_PixelData, px.data(), px.size());
  } else {
    ds->putAndInsertUint16Array(DCM_PixelData, s.pixels.data(), s.pixels.size());
  }
  const OFCondition st = ff.saveFile(path.c_str(), EXS_LittleEndianExplicit);
  ASSERT_TRUE(st.good()) << path << ": " << st.text();
}

// A 4-slice axial series written in an order that differs from the slice positions.
void write_axial_series(const TempDir& dir, const std::string& sub, const std::string& uid, int nslices,
                        double z0 = -100, double dz = 2.5) {
  std::filesystem::create_directories(dir.file(sub));
  for (int k = 0; k < nslices; ++k) {
    Slice s;
    s.series_uid = uid;
    s.instance = k + 1;
    s.pos = {-120.5, -80.25, z0 + dz * k};
    for (int p = 0; p < s.rows * s.cols; ++p) s.pixels.push_back(static_cast<uint16_t>(1000 + 100 * k + p));
    // File names in reverse slice order.
    write_slice(dir.file(sub + "/IM" + std::to_string(nslices - k) + ".dcm"), s);
  }
}

TEST(Dicom, AxialSeriesSortedRescaledWithGeometry) {
  TempDir dir;
  write_axial_series(dir, "ct", "1.2.3.4.5", 4);
  DicomSeriesInfo info;
  const Volume v = read_dicom_series(dir.file("ct"), &info);
  EXPECT_EQ(info.slices, 4);
  EXPECT_EQ(info.modality, "CT");
  EXPECT_EQ(info.series_uid, "1.2.3.4.5");
  EXPECT_EQ(v.dims, (std::array<int64_t, 3>{4, 3, 4}));
  EXPECT_NEAR(v.spacing[0], 0.5, 1e-9);
  EXPECT_NEAR(v.spacing[1], 0.6, 1e-9);
  EXPECT_NEAR(v.spacing[2], 2.5, 1e-9);
  // HU = raw - 1024; slice k holds 1000 + 100 k + pixel index; slices sorted by position.
  for (int k = 0; k < 4; ++k)
    for (int j = 0; j < 3; ++j)
      for (int i = 0; i < 4; ++i) ASSERT_EQ(v.at(i, j, k), 1000 + 100 * k + (j * 4 + i) - 1024);
  // LPS -> RAS: x and y negated.
  const Affine want{{{-0.5, 0, 0, 120.5}, {0, -0.6, 0, 80.25}, {0, 0, 2.5, -100}, {0, 0, 0, 1}}};
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 4; ++c) EXPECT_NEAR(v.affine[r][c], want[r][c], 1e-9) << r << "," << c;
  EXPECT_EQ(v.source_dtype, "int16");
  // read_volume dispatches a directory to DICOM.
  EXPECT_EQ(read_volume(dir.file("ct")).voxels, v.voxels);
}

TEST(Dicom, KeepsTheLargestSeriesAndSkipsJunk) {
  TempDir dir;
  write_axial_series(dir, "mix", "1.2.3.100", 3);
  // A second, smaller series in the same directory (different names).
  for (int k = 0; k < 2; ++k) {
    Slice s;
    s.series_uid = "1.2.3.200";
    s.pos = {0, 0, 50.0 + k};
    s.pixels.assign(12, 7);
    write_slice(dir.file("mix/other" + std::to_string(k) + ".dcm"), s);
  }
  testing::write_bytes(dir.file("mix/README.txt"), {'h', 'i', '\n'});
  DicomSeriesInfo info;
  const Volume v = read_dicom_series(dir.file("mix"), &info);
  EXPECT_EQ(info.series_uid, "1.2.3.100");
  EXPECT_EQ(v.dims[2], 3);
  std::string notes;
  for (const auto& n : info.notes) notes += n + "\n";
  EXPECT_NE(notes.find("2 series"), std::string::npos) << notes;
  EXPECT_NE(notes.find("skipped"), std::string::npos) << notes;
  const auto all = list_dicom_series(dir.file("mix"));
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].slices, 3);
  // Naming one file reads that file's series.
  const Volume other = read_volume(dir.file("mix/other0.dcm"));
  EXPECT_EQ(other.dims[2], 2);
  EXPECT_EQ(other.voxels[0], 7 - 1024);
  EXPECT_TRUE(looks_like_dicom(dir.file("mix/other0.dcm")));
  EXPECT_FALSE(looks_like_dicom(dir.file("mix/README.txt")));
}

TEST(Dicom, SagittalOrientationAndSignedTwelveBit) {
  TempDir dir;
  std::filesystem::create_directories(dir.file("sag"));
  for (int k = 0; k < 3; ++k) {
    Slice s;
    s.iop = {0, 1, 0, 0, 0, -1};  // rows along +y (P), columns along -z (down)
    s.pos = {30.0 - 2.0 * k, -10, 40};  // normal = row x col = (-1, 0, 0): x decreases
    s.bits_stored = 12;
    s.slope = 2;
    s.intercept = 0;
    s.pixels.assign(12, 0);
    s.pixels[0] = static_cast<uint16_t>(0xF000 | (0x1000 - 5 - k));  // -5 - k in 12 bits, junk above
    s.pixels[1] = 0x07FF;                                             // 2047
    write_slice(dir.file("sag/s" + std::to_string(k) + ".dcm"), s);
  }
  const Volume v = read_volume(dir.file("sag"));
  EXPECT_EQ(v.at(0, 0, 0), -10);  // slice k=0 first: x = 30 projects to -30, the smallest
  EXPECT_EQ(v.at(0, 0, 2), -14);
  EXPECT_EQ(v.at(1, 0, 0), 4094);
  EXPECT_NEAR(v.spacing[2], 2, 1e-9);
  // LPS columns: i -> (0, 0.5, 0), j -> (0, 0, -0.6), k -> (-2, 0, 0); RAS negates x and y.
  const Affine want{{{0, 0, 2, -30}, {-0.5, 0, 0, 10}, {0, -0.6, 0, 40}, {0, 0, 0, 1}}};
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 4; ++c) EXPECT_NEAR(v.affine[r][c], want[r][c], 1e-9) << r << "," << c;
}

TEST(Dicom, EightBitUnsigned) {
  TempDir dir;
  std::filesystem::create_directories(dir.file("u8"));
  Slice s;
  s.bits_allocated = s.bits_stored = 8;
  s.pixel_rep = 0;
  s.intercept = 0;
  for (int p = 0; p < 12; ++p) s.pixels.push_back(static_cast<uint16_t>(p * 20));
  write_slice(dir.file("u8/a.dcm"), s);
  const Volume v = read_dicom_series(dir.file("u8"));
  EXPECT_EQ(v.dims, (std::array<int64_t, 3>{4, 3, 1}));
  EXPECT_EQ(v.voxels[11], 220);
  EXPECT_NEAR(v.spacing[2], 2.5, 1e-9);  // one slice: SliceThickness
  EXPECT_EQ(v.source_dtype, "uint8");
}

TEST(Dicom, BadSeriesThrow) {
  TempDir dir;
  std::filesystem::create_directories(dir.file("empty"));
  testing::write_bytes(dir.file("empty/notes.txt"), {'x'});
  expect_error([&] { read_dicom_series(dir.file("empty")); }, {"empty", "no DICOM images"});
  expect_error([&] { read_dicom_series(dir.file("nowhere")); }, {"nowhere"});

  std::filesystem::create_directories(dir.file("sizes"));
  Slice a;
  a.pixels.assign(12, 1);
  write_slice(dir.file("sizes/a.dcm"), a);
  Slice b = a;
  b.pos[2] = 5;
  b.rows = 2;
  b.cols = 2;
  b.pixels.assign(4, 1);
  write_slice(dir.file("sizes/b.dcm"), b);
  expect_error([&] { read_dicom_series(dir.file("sizes")); }, {"differs"});

  std::filesystem::create_directories(dir.file("dup"));
  write_slice(dir.file("dup/a.dcm"), a);
  write_slice(dir.file("dup/b.dcm"), a);
  expect_error([&] { read_dicom_series(dir.file("dup")); }, {"same position"});
}

#endif  // RG_WITH_DCMTK

}  // namespace
}  // namespace rg::data
