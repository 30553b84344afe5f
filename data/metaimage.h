// MetaImage (ITK .mhd/.mha) reader and writer.
//
// Reads: .mhd with an ElementDataFile (.raw, or zlib .zraw when CompressedData = True), and
// .mha / .mhd with "ElementDataFile = LOCAL" (data after the header). NDims 2, 3 or 4 (4-D:
// the first volume), ElementNumberOfChannels 1, ElementType MET_UCHAR, MET_CHAR, MET_SHORT,
// MET_USHORT, MET_INT, MET_UINT, MET_LONG, MET_ULONG, MET_LONG_LONG, MET_ULONG_LONG, MET_FLOAT,
// MET_DOUBLE; BinaryDataByteOrderMSB / ElementByteOrderMSB; ElementSpacing (or ElementSize);
// Offset / Position / Origin; TransformMatrix / Rotation / Orientation; HeaderSize (-1 = the
// data is at the end of the file); CompressedDataSize (optional). MetaImage's world is LPS: the
// reader converts to RAS (negates the first two rows of the affine). Data files listed with
// "LIST" or a %d pattern are not supported (clear error).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "data/volume.h"

namespace rg::data {

struct MetaHeader {
  int ndims = 0;
  std::vector<int64_t> dim_size;         // DimSize
  std::vector<double> spacing;           // ElementSpacing (or ElementSize), 1 if absent
  std::vector<double> offset;            // Offset/Position/Origin (LPS), 0 if absent
  std::vector<double> transform;         // TransformMatrix, row-major ndims*ndims, identity if absent
  std::string element_type;              // "MET_SHORT", ...
  bool msb = false;                      // BinaryDataByteOrderMSB / ElementByteOrderMSB
  bool compressed = false;               // CompressedData
  int64_t compressed_size = -1;          // CompressedDataSize, -1 if absent
  int64_t header_size = 0;               // HeaderSize (-1: data at end of the data file)
  int channels = 1;                      // ElementNumberOfChannels
  std::string element_data_file;         // "LOCAL" or a file name relative to the header
  std::string anatomical_orientation;    // as written, for information
  size_t header_bytes = 0;               // bytes up to and including the ElementDataFile line
};

// Parses header text (the .mhd, or the start of an .mha up to ElementDataFile).
MetaHeader parse_metaimage_header(const uint8_t* data, size_t size, const std::string& name);

// Reads a .mhd/.mha volume from disk.
Volume read_metaimage(const std::string& path);

// Reads from memory: `header` is the .mhd/.mha content; `data_file` is the content of the
// ElementDataFile when it is not LOCAL (ignored otherwise). The fuzz target's entry point.
Volume read_metaimage_from_memory(const uint8_t* header, size_t header_size,
                                  const uint8_t* data_file, size_t data_file_size,
                                  const std::string& name);

// On-disk element type for write_metaimage. Integer types round to nearest and throw when a
// value is out of range (or NaN).
enum class MetaOut { UChar, Char, Short, UShort, Int, UInt, Float, Double };

// Writes `mhd_path` (must end in .mhd) and, beside it, <stem>.raw (or <stem>.zraw, zlib, when
// `compressed`) LUNA16 style: ObjectType = Image, NDims = 3, BinaryData = True,
// BinaryDataByteOrderMSB = False, CompressedData, [CompressedDataSize], TransformMatrix,
// Offset, CenterOfRotation, AnatomicalOrientation = RAI, ElementSpacing, DimSize, ElementType,
// ElementDataFile. The affine is converted RAS -> LPS and split into direction cosines and
// spacing (vol.spacing is written as ElementSpacing). Writes temporaries then renames.
void write_metaimage(const std::string& mhd_path, const Volume& vol, MetaOut dtype = MetaOut::Short,
                     bool compressed = false);

}  // namespace rg::data
