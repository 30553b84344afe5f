#include "data/dicom.h"

// RG_WITH_DCMTK comes from data/CMakeLists.txt (RG_DCMTK): without DCMTK the readers throw.
#ifdef RG_WITH_DCMTK
#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcrledrg.h>
#include <dcmtk/dcmdata/dcxfer.h>
#include <dcmtk/dcmjpeg/djdecode.h>
#include <dcmtk/dcmjpls/djdecode.h>
#include <dcmtk/oflog/oflog.h>
#endif

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>

#include "data/format_util.h"
#include "engine/error.h"

namespace fs = std::filesystem;

namespace rg::data {

bool looks_like_dicom(const std::string& path) {
  if (!detail::file_exists(path) || detail::is_directory(path)) return false;
  const auto b = detail::read_file(path, 128, 4);
  return b.size() == 4 && std::memcmp(b.data(), "DICM", 4) == 0;
}

#ifndef RG_WITH_DCMTK

namespace {

[[noreturn]] void fail_without_dcmtk(const std::string& path) {
  RG_FAIL(path, ": this build has no DICOM support: DCMTK was not found when it was configured ",
          "(install libdcmtk-dev and configure again with RG_DCMTK=AUTO or ON)");
}

}  // namespace

std::vector<DicomSeriesInfo> list_dicom_series(const std::string& path) { fail_without_dcmtk(path); }

Volume read_dicom_series(const std::string& path, DicomSeriesInfo*) { fail_without_dcmtk(path); }

#else

namespace {

void init_dcmtk() {
  static std::once_flag once;
  std::call_once(once, [] {
    // Quiet DCMTK's own logging (it would print to stderr); we report through exceptions/notes.
    OFLog::getLogger("dcmtk").setLogLevel(OFLogger::FATAL_LOG_LEVEL);
    DcmRLEDecoderRegistration::registerCodecs();
    DJDecoderRegistration::registerCodecs();
    DJLSDecoderRegistration::registerCodecs();
  });
}

// What we need from one file's header.
struct SliceHeader {
  std::string path;
  std::string series_uid, modality, description;
  long instance = 0;
  bool has_position = false, has_orientation = false;
  std::array<double, 3> position{0, 0, 0};
  std::array<double, 6> orientation{1, 0, 0, 0, 1, 0};
  std::array<double, 2> pixel_spacing{1, 1};  // (between rows, between columns)
  double slice_thickness = 0;
  double slope = 1, intercept = 0;
  int rows = 0, cols = 0, samples = 1, bits_allocated = 0, bits_stored = 0, pixel_rep = 0;
  long frames = 1;
  std::string photometric;
  double proj = 0;  // position along the slice normal
};

std::string get_string(DcmItem* ds, const DcmTagKey& tag) {
  OFString s;
  if (ds->findAndGetOFStringArray(tag, s).good()) return std::string(s.c_str());
  return {};
}

bool get_f64(DcmItem* ds, const DcmTagKey& tag, double* out, unsigned long pos = 0) {
  Float64 v = 0;
  if (ds->findAndGetFloat64(tag, v, pos).good() && std::isfinite(v)) {
    *out = v;
    return true;
  }
  return false;
}

int get_u16(DcmItem* ds, const DcmTagKey& tag, int fallback) {
  Uint16 v = 0;
  if (ds->findAndGetUint16(tag, v).good()) return v;
  return fallback;
}

// Loads a file's header (pixel data left on disk). Returns false when it is not DICOM image data.
bool read_slice_header(const std::string& path, SliceHeader* out, std::string* why) {
  DcmFileFormat ff;
  OFCondition st = ff.loadFile(OFFilename(path.c_str()), EXS_Unknown, EGL_noChange, 256, ERM_autoDetect);
  if (st.bad()) {
    *why = st.text();
    return false;
  }
  DcmDataset* ds = ff.getDataset();
  if (!ds->tagExists(DCM_PixelData)) {
    *why = "no pixel data";
    return false;
  }
  SliceHeader& h = *out;
  h.path = path;
  h.series_uid = get_string(ds, DCM_SeriesInstanceUID);
  h.modality = get_string(ds, DCM_Modality);
  h.description = get_string(ds, DCM_SeriesDescription);
  Sint32 inst = 0;
  if (ds->findAndGetSint32(DCM_InstanceNumber, inst).good()) h.instance = inst;
  h.has_position = true;
  for (int i = 0; i < 3; ++i) h.has_position &= get_f64(ds, DCM_ImagePositionPatient, &h.position[i], i);
  h.has_orientation = true;
  for (int i = 0; i < 6; ++i)
    h.has_orientation &= get_f64(ds, DCM_ImageOrientationPatient, &h.orientation[i], i);
  if (!h.has_orientation) h.orientation = {1, 0, 0, 0, 1, 0};
  double ps0 = 0, ps1 = 0;
  if (get_f64(ds, DCM_PixelSpacing, &ps0, 0) && get_f64(ds, DCM_PixelSpacing, &ps1, 1) && ps0 > 0 && ps1 > 0)
    h.pixel_spacing = {ps0, ps1};
  get_f64(ds, DCM_SliceThickness, &h.slice_thickness);
  if (!get_f64(ds, DCM_RescaleSlope, &h.slope) || h.slope == 0) h.slope = 1;
  get_f64(ds, DCM_RescaleIntercept, &h.intercept);
  h.rows = get_u16(ds, DCM_Rows, 0);
  h.cols = get_u16(ds, DCM_Columns, 0);
  h.samples = get_u16(ds, DCM_SamplesPerPixel, 1);
  h.bits_allocated = get_u16(ds, DCM_BitsAllocated, 0);
  h.bits_stored = get_u16(ds, DCM_BitsStored, h.bits_allocated);
  h.pixel_rep = get_u16(ds, DCM_PixelRepresentation, 0);
  Sint32 frames = 1;
  if (ds->findAndGetSint32(DCM_NumberOfFrames, frames).good()) h.frames = frames;
  h.photometric = get_string(ds, DCM_PhotometricInterpretation);
  return true;
}

std::array<double, 3> cross(const std::array<double, 3>& a, const std::array<double, 3>& b) {
  return {a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]};
}

std::vector<std::string> list_files(const std::string& dir) {
  std::vector<std::string> files;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::error_code ec2;
    if (it->is_regular_file(ec2)) files.push_back(it->path().string());
  }
  RG_CHECK(!ec, dir, ": cannot list the directory: ", ec.message());
  std::sort(files.begin(), files.end());
  return files;
}

struct Scan {
  std::map<std::string, std::vector<SliceHeader>> series;
  int skipped = 0;
  std::string first_skip;
};

Scan scan_directory(const std::string& dir) {
  init_dcmtk();
  Scan s;
  for (const auto& f : list_files(dir)) {
    SliceHeader h;
    std::string why;
    if (read_slice_header(f, &h, &why)) {
      s.series[h.series_uid].push_back(std::move(h));
    } else {
      if (s.skipped++ == 0) s.first_skip = fs::path(f).filename().string() + " (" + why + ")";
    }
  }
  return s;
}

// Reads one slice's pixels as float after rescale into dst (rows * cols values).
void read_slice_pixels(const SliceHeader& h, float* dst) {
  DcmFileFormat ff;
  OFCondition st = ff.loadFile(OFFilename(h.path.c_str()));
  RG_CHECK(st.good(), h.path, ": cannot read DICOM file: ", st.text());
  DcmDataset* ds = ff.getDataset();
  const E_TransferSyntax xfer = ds->getOriginalXfer();
  if (DcmXfer(xfer).isEncapsulated()) {
    st = ds->chooseRepresentation(EXS_LittleEndianExplicit, nullptr);
    RG_CHECK(st.good() && ds->canWriteXfer(EXS_LittleEndianExplicit), h.path,
             ": cannot decompress the pixel data (transfer syntax ", DcmXfer(xfer).getXferName(),
             "): ", st.text());
  }
  const size_t n = static_cast<size_t>(h.rows) * static_cast<size_t>(h.cols);
  const int stored = std::clamp(h.bits_stored, 1, h.bits_allocated);
  auto fix = [&](uint32_t raw) -> double {
    // Keep the stored bits; sign-extend them for signed data.
    const uint32_t mask = stored >= 32 ? 0xffffffffu : ((1u << stored) - 1);
    uint32_t v = raw & mask;
    if (h.pixel_rep == 1 && stored < 32 && (v & (1u << (stored - 1))))
      return static_cast<double>(static_cast<int64_t>(v) - (int64_t(1) << stored));
    return static_cast<double>(v);
  };
  unsigned long count = 0;
  if (h.bits_allocated == 8) {
    const Uint8* px = nullptr;
    st = ds->findAndGetUint8Array(DCM_PixelData, px, &count);
    RG_CHECK(st.good() && px, h.path, ": cannot get the pixel data: ", st.text());
    RG_CHECK(count >= n, h.path, ": pixel data shorter than Rows x Columns (", count, " < ", n, ")");
    for (size_t i = 0; i < n; ++i) dst[i] = static_cast<float>(fix(px[i]) * h.slope + h.intercept);
  } else if (h.bits_allocated == 16) {
    const Uint16* px = nullptr;
    st = ds->findAndGetUint16Array(DCM_PixelData, px, &count);
    RG_CHECK(st.good() && px, h.path, ": cannot get the pixel data: ", st.text());
    RG_CHECK(count >= n, h.path, ": pixel data shorter than Rows x Columns (", count, " < ", n, ")");
    for (size_t i = 0; i < n; ++i) dst[i] = static_cast<float>(fix(px[i]) * h.slope + h.intercept);
  } else {
    RG_FAIL(h.path, ": BitsAllocated = ", h.bits_allocated, " is not supported (8 or 16)");
  }
}

std::string chosen_dir_and_uid(const std::string& path, std::string* uid) {
  if (detail::is_directory(path)) return path;
  RG_CHECK(detail::file_exists(path), path, ": no such file or directory");
  init_dcmtk();
  SliceHeader h;
  std::string why;
  RG_CHECK(read_slice_header(path, &h, &why), path, ": not a DICOM image file (", why, ")");
  *uid = h.series_uid;
  return detail::dirname_of(path);
}

}  // namespace

std::vector<DicomSeriesInfo> list_dicom_series(const std::string& path) {
  std::string uid;
  const std::string dir = chosen_dir_and_uid(path, &uid);
  const Scan s = scan_directory(dir);
  std::vector<DicomSeriesInfo> out;
  for (const auto& [u, slices] : s.series) {
    DicomSeriesInfo info;
    info.series_uid = u;
    info.modality = slices.front().modality;
    info.description = slices.front().description;
    info.slices = static_cast<int64_t>(slices.size());
    out.push_back(info);
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const DicomSeriesInfo& a, const DicomSeriesInfo& b) { return a.slices > b.slices; });
  return out;
}

Volume read_dicom_series(const std::string& path, DicomSeriesInfo* info_out) {
  std::string want_uid;
  const bool from_file = !detail::is_directory(path);
  const std::string dir = chosen_dir_and_uid(path, &want_uid);
  Scan scan = scan_directory(dir);
  RG_CHECK(!scan.series.empty(), path, ": no DICOM images found",
           scan.skipped ? " (" + std::to_string(scan.skipped) + " files skipped, e.g. " + scan.first_skip + ")"
                        : std::string());
  DicomSeriesInfo info;
  std::vector<SliceHeader>* chosen = nullptr;
  if (from_file) {
    chosen = &scan.series.at(want_uid);
  } else {
    for (auto& [u, slices] : scan.series)
      if (!chosen || slices.size() > chosen->size()) chosen = &slices;
    if (scan.series.size() > 1) {
      info.notes.push_back(std::to_string(scan.series.size()) +
                           " series found in the directory, kept the largest (" +
                           std::to_string(chosen->size()) + " slices)");
    }
  }
  if (scan.skipped > 0)
    info.notes.push_back(std::to_string(scan.skipped) + " non-DICOM or unreadable files skipped, e.g. " +
                         scan.first_skip);
  std::vector<SliceHeader>& sl = *chosen;
  const SliceHeader& f0 = sl.front();
  info.series_uid = f0.series_uid;
  info.modality = f0.modality;
  info.description = f0.description;
  info.slices = static_cast<int64_t>(sl.size());

  // Consistency checks.
  for (const auto& s : sl) {
    RG_CHECK(s.samples == 1, s.path, ": SamplesPerPixel = ", s.samples,
             " (colour) is not supported; expected a monochrome image");
    RG_CHECK(s.photometric.empty() || s.photometric.rfind("MONOCHROME", 0) == 0, s.path,
             ": PhotometricInterpretation ", s.photometric, " is not supported (MONOCHROME1/2)");
    RG_CHECK(s.frames == 1, s.path, ": multi-frame DICOM (", s.frames,
             " frames) is not supported; expected one slice per file");
    RG_CHECK(s.rows > 0 && s.cols > 0, s.path, ": bad Rows/Columns ", s.rows, " x ", s.cols);
    RG_CHECK(s.rows == f0.rows && s.cols == f0.cols, s.path, ": slice size ", s.cols, " x ", s.rows,
             " differs from ", f0.path, " (", f0.cols, " x ", f0.rows, ")");
    for (int i = 0; i < 6; ++i)
      RG_CHECK(std::fabs(s.orientation[i] - f0.orientation[i]) < 1e-3, s.path,
               ": ImageOrientationPatient differs from ", f0.path, "; cannot stack the slices");
    RG_CHECK(s.bits_allocated == 8 || s.bits_allocated == 16, s.path, ": BitsAllocated = ",
             s.bits_allocated, " is not supported (8 or 16)");
  }

  const std::array<double, 3> row_cos{f0.orientation[0], f0.orientation[1], f0.orientation[2]};
  const std::array<double, 3> col_cos{f0.orientation[3], f0.orientation[4], f0.orientation[5]};
  std::array<double, 3> normal = cross(row_cos, col_cos);
  const double nn = std::sqrt(normal[0] * normal[0] + normal[1] * normal[1] + normal[2] * normal[2]);
  RG_CHECK(nn > 1e-6, f0.path, ": degenerate ImageOrientationPatient");
  for (auto& x : normal) x /= nn;

  const bool all_positions =
      std::all_of(sl.begin(), sl.end(), [](const SliceHeader& s) { return s.has_position; });
  if (all_positions) {
    for (auto& s : sl) s.proj = s.position[0] * normal[0] + s.position[1] * normal[1] + s.position[2] * normal[2];
    std::stable_sort(sl.begin(), sl.end(), [](const SliceHeader& a, const SliceHeader& b) {
      return a.proj < b.proj;
    });
  } else {
    std::stable_sort(sl.begin(), sl.end(), [](const SliceHeader& a, const SliceHeader& b) {
      return a.instance < b.instance;
    });
    info.notes.push_back("ImagePositionPatient missing: slices ordered by InstanceNumber");
  }

  const int64_t nz = static_cast<int64_t>(sl.size());
  double dz = f0.slice_thickness > 0 ? f0.slice_thickness : 1.0;
  std::array<double, 3> step{normal[0] * dz, normal[1] * dz, normal[2] * dz};
  if (all_positions && nz > 1) {
    std::vector<double> gaps;
    for (int64_t k = 1; k < nz; ++k) gaps.push_back(sl[k].proj - sl[k - 1].proj);
    for (int64_t k = 0; k + 1 < nz; ++k)
      RG_CHECK(gaps[k] > 1e-4, path, ": two slices at the same position (", sl[k].path, " and ",
               sl[k + 1].path, "); the series has duplicates or several volumes");
    std::vector<double> sorted = gaps;
    std::nth_element(sorted.begin(), sorted.begin() + sorted.size() / 2, sorted.end());
    dz = sorted[sorted.size() / 2];
    const double lo = *std::min_element(gaps.begin(), gaps.end());
    const double hi = *std::max_element(gaps.begin(), gaps.end());
    if (hi - lo > 0.01 * dz + 1e-3)
      info.notes.push_back("slice spacing is not uniform (" + std::to_string(lo) + " to " +
                           std::to_string(hi) + " mm); using the median " + std::to_string(dz) + " mm");
    // The step between slices from the first to the last position (keeps a gantry tilt).
    const auto& p0 = sl.front().position;
    const auto& p1 = sl.back().position;
    for (int a = 0; a < 3; ++a) step[a] = (p1[a] - p0[a]) / static_cast<double>(nz - 1);
  }

  Volume v;
  v.dims = {f0.cols, f0.rows, nz};
  v.spacing = {f0.pixel_spacing[1], f0.pixel_spacing[0], dz};
  // LPS affine: i runs along the row direction (row_cos) by the column spacing, j along the
  // column direction by the row spacing, k from slice to slice.
  std::array<std::array<double, 4>, 4> A{};
  for (int r = 0; r < 3; ++r) {
    A[r][0] = row_cos[r] * f0.pixel_spacing[1];
    A[r][1] = col_cos[r] * f0.pixel_spacing[0];
    A[r][2] = step[r];
    A[r][3] = sl.front().position[r];
  }
  A[3] = {0, 0, 0, 1};
  for (int r = 0; r < 2; ++r)
    for (int c = 0; c < 4; ++c) A[r][c] = -A[r][c];
  v.affine = A;
  const int64_t plane = static_cast<int64_t>(f0.rows) * f0.cols;
  v.voxels.resize(static_cast<size_t>(plane * nz));
  for (int64_t k = 0; k < nz; ++k) read_slice_pixels(sl[k], v.voxels.data() + k * plane);
  v.source_dtype = std::string(f0.pixel_rep ? "int" : "uint") + std::to_string(f0.bits_allocated);
  v.source = path;
  if (info_out) *info_out = info;
  return v;
}

#endif  // RG_WITH_DCMTK

}  // namespace rg::data
