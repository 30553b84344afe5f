// NIfTI-1 / NIfTI-2 reader and writer (our own; zlib for .gz).
//
// Reads: .nii, .nii.gz, .hdr/.img pairs (either name; also .hdr.gz/.img.gz), NIfTI-1
// (sizeof_hdr 348) and NIfTI-2 (540), either byte order, datatypes uint8, int8, int16, uint16,
// int32, uint32, int64, uint64, float32, float64 (RGB, complex and others: clear error).
// scl_slope/scl_inter are applied (slope 0 or non-finite means "no scaling"). vox_offset is
// honoured, so header extensions are skipped. Affine: sform when sform_code > 0, else qform when
// qform_code > 0, else diag(pixdim) (the old ANALYZE convention). Spacing is |pixdim[1..3]|
// (times xyzt_units scale to mm). A 4-D file (dim[4] > 1) yields volume `volume_index` of it
// (the first by default); read_nifti_header() tells the full shape.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

#include "data/volume.h"

namespace rg::data {

// What the header says, after byte swapping and version unification.
struct NiftiHeader {
  int version = 1;                  // 1 or 2
  bool swapped = false;             // file byte order differs from the machine's
  std::array<int64_t, 8> dim{};     // dim[0] = rank, dim[1..7] sizes
  std::array<double, 8> pixdim{};   // pixdim[0] = qfac
  int datatype = 0;                 // NIFTI_TYPE_* code
  int bitpix = 0;
  int64_t vox_offset = 0;           // byte offset of the data in the .nii (0 for .img)
  double scl_slope = 0, scl_inter = 0;
  int qform_code = 0, sform_code = 0;
  double quatern_b = 0, quatern_c = 0, quatern_d = 0;
  double qoffset_x = 0, qoffset_y = 0, qoffset_z = 0;
  std::array<std::array<double, 4>, 3> srow{};  // srow_x, srow_y, srow_z
  int xyzt_units = 0;
  bool single_file = true;          // magic "n+1"/"n+2" (true) or "ni1"/"ni2" (.hdr/.img pair)
  bool analyze = false;             // no magic: ANALYZE 7.5 .hdr (read as a pair, pixdim affine)
  std::string descrip;
};

// Parses and validates a header (first 348 or 540 bytes of `bytes`). `name` is for messages.
NiftiHeader parse_nifti_header(const uint8_t* bytes, size_t size, const std::string& name);

// Header of a file on disk (reads only as much as needed, .gz included).
NiftiHeader read_nifti_header(const std::string& path);

// The affine the reader would use for this header (sform > qform > pixdim), RAS+ mm.
std::array<std::array<double, 4>, 4> nifti_affine(const NiftiHeader& h);

// Reads a NIfTI volume from disk (see top of file for what is supported).
Volume read_nifti(const std::string& path, int64_t volume_index = 0);

// Reads a single-file NIfTI (.nii content, or its gzip) from memory. `name` is used for the
// messages and as Volume::source. The fuzz target's entry point.
Volume read_nifti_from_memory(const uint8_t* data, size_t size, const std::string& name,
                              int64_t volume_index = 0);

// On-disk datatype for write_nifti. Integer types round to nearest and throw if a value is
// outside the type's range (label maps and HU volumes are stored exactly); NaN throws too.
enum class NiftiOut { UInt8, Int8, Int16, UInt16, Int32, Float32, Float64 };

// Writes `vol` as NIfTI-1 (.nii, or gzip when the path ends in .nii.gz), machine byte order
// (little-endian), vox_offset 352, scl_slope 1 / scl_inter 0, sform_code = qform_code = 1
// (scanner) from vol.affine; the quaternion is the closest rotation to the affine's
// direction cosines, and pixdim holds vol.spacing. Writes to a temporary file then renames,
// so a failure never leaves a half-written file at `path`.
// `version` 2 writes NIfTI-2 (540-byte header, vox_offset 544); version 1 switches to 2 by
// itself when a dimension exceeds 32767 (NIfTI-1 stores dims as int16).
void write_nifti(const std::string& path, const Volume& vol, NiftiOut dtype = NiftiOut::Float32,
                 int version = 1);

// NIFTI_TYPE_* code name ("int16", ...) or "unknown(<code>)".
std::string nifti_datatype_name(int datatype);

}  // namespace rg::data
