#include "data/volume_io.h"

#include <cstring>

#include "data/format_util.h"
#include "engine/error.h"

namespace rg::data {

const char* format_name(VolumeFormat f) {
  switch (f) {
    case VolumeFormat::Nifti: return "NIfTI";
    case VolumeFormat::MetaImage: return "MetaImage";
    case VolumeFormat::Dicom: return "DICOM";
    case VolumeFormat::Png: return "PNG";
    case VolumeFormat::Unknown: return "unknown";
  }
  return "unknown";
}

VolumeFormat detect_volume_format(const std::string& path) {
  RG_CHECK(detail::file_exists(path), path, ": no such file or directory");
  if (detail::is_directory(path)) return VolumeFormat::Dicom;
  using detail::ends_with;
  if (ends_with(path, ".nii") || ends_with(path, ".nii.gz") || ends_with(path, ".hdr") ||
      ends_with(path, ".img") || ends_with(path, ".hdr.gz") || ends_with(path, ".img.gz"))
    return VolumeFormat::Nifti;
  if (ends_with(path, ".mhd") || ends_with(path, ".mha")) return VolumeFormat::MetaImage;
  if (ends_with(path, ".png")) return VolumeFormat::Png;
  if (ends_with(path, ".dcm")) return VolumeFormat::Dicom;
  // No telling extension: look at the content.
  const auto head = detail::read_file(path, 0, 1024);
  if (head.size() >= 132 && std::memcmp(head.data() + 128, "DICM", 4) == 0) return VolumeFormat::Dicom;
  if (head.size() >= 8 && std::memcmp(head.data(), "\x89PNG\r\n\x1a\n", 8) == 0) return VolumeFormat::Png;
  if (detail::is_gzip(head.data(), head.size())) return VolumeFormat::Nifti;  // .nii.gz renamed
  if (head.size() >= 4) {
    const int32_t a = detail::load<int32_t>(head.data(), false);
    const int32_t b = detail::load<int32_t>(head.data(), true);
    if (a == 348 || a == 540 || b == 348 || b == 540) return VolumeFormat::Nifti;
  }
  const std::string text(head.begin(), head.end());
  if (text.find("NDims") != std::string::npos || text.find("ObjectType") != std::string::npos)
    return VolumeFormat::MetaImage;
  return VolumeFormat::Unknown;
}

Volume read_volume(const std::string& path) {
  switch (detect_volume_format(path)) {
    case VolumeFormat::Nifti: return read_nifti(path);
    case VolumeFormat::MetaImage: return read_metaimage(path);
    case VolumeFormat::Dicom: return read_dicom_series(path);
    case VolumeFormat::Png: return read_png_volume(path);
    case VolumeFormat::Unknown: break;
  }
  RG_FAIL(path, ": unknown volume format (expected .nii, .nii.gz, .hdr/.img, .mhd, .mha, .png, "
          "a DICOM file or a DICOM directory)");
}

}  // namespace rg::data
