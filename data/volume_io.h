// Reading and writing image volumes in the formats medical data comes in. Every reader returns
// an rg::data::Volume (float voxels after the format's scaling, RAS+ affine in mm); every
// failure throws rg::Error naming the file and the problem. See docs/data_formats.md.
#pragma once

#include <string>

#include "data/dicom.h"
#include "data/metaimage.h"
#include "data/nifti.h"
#include "data/png_io.h"
#include "data/volume.h"

namespace rg::data {

enum class VolumeFormat { Nifti, MetaImage, Dicom, Png, Unknown };

const char* format_name(VolumeFormat f);

// Decides the format from the path: a directory is a DICOM series; otherwise the extension
// (.nii, .nii.gz, .hdr, .img, .hdr.gz, .img.gz, .mhd, .mha, .png, .dcm) and, when the extension
// says nothing, the first bytes (gzip, NIfTI sizeof_hdr, "DICM" at 128, PNG signature,
// MetaImage "ObjectType"/"NDims" text). Throws if the path does not exist.
VolumeFormat detect_volume_format(const std::string& path);

// Reads any supported volume, dispatching on detect_volume_format():
//   .nii / .nii.gz / .hdr+.img pair (either name)  -> read_nifti
//   .mhd / .mha                                    -> read_metaimage
//   directory, or a single DICOM file               -> read_dicom_series
//   .png (8/16-bit gray)                           -> read_png_volume (2-D, dims[2] == 1)
Volume read_volume(const std::string& path);

}  // namespace rg::data
