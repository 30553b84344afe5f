// DICOM series reader (DCMTK; we do not parse DICOM ourselves).
//
// read_dicom_series(dir) reads every regular file in `dir` (not recursive) that DCMTK accepts as
// DICOM, groups them by SeriesInstanceUID and keeps the series with the most slices (a note is
// added to the returned info when there were several). Slices are sorted by ImagePositionPatient
// projected on the slice normal (row x column cosines of ImageOrientationPatient), falling back
// to InstanceNumber when positions are missing. Pixel values get RescaleSlope/RescaleIntercept
// (so CT is in HU). Spacing: PixelSpacing (row, column) and the median distance between
// consecutive slice positions (SliceThickness when there is one slice). Affine: from orientation,
// spacing and the first slice's position, converted LPS -> RAS. Requires monochrome
// (MONOCHROME1/2) single-frame images of one size and orientation; otherwise throws.
#pragma once

#include <string>
#include <vector>

#include "data/volume.h"

namespace rg::data {

struct DicomSeriesInfo {
  std::string series_uid;
  std::string modality;
  std::string description;
  int64_t slices = 0;
  std::vector<std::string> notes;  // e.g. "3 series found, kept the largest", skipped files
};

// Reads the largest series in directory `dir`. If `dir` is a DICOM file, reads the series that
// file belongs to from its directory. `info` (optional) receives what was read.
Volume read_dicom_series(const std::string& dir, DicomSeriesInfo* info = nullptr);

// All series in `dir`, largest first (reads headers only).
std::vector<DicomSeriesInfo> list_dicom_series(const std::string& dir);

// True when the file starts with the DICOM preamble ("DICM" at byte 128).
bool looks_like_dicom(const std::string& path);

}  // namespace rg::data
