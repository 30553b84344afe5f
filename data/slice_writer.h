// Writing a prepared slices file from slices already in memory (docs/data_hdf5.md's layout,
// format roentgen-slices version 1), for tools that make slices rather than cut them from
// volumes: apps/synthesize writes GAN-synthesized (mask, image) pairs with it, and
// SliceDataset / Loader read the result like any prepared file.
//
// The file holds every split group (possibly empty), /subjects/{name, image_path, mask_path,
// split} and the root attributes format, format_version, created_by, source, source_kind,
// size, num_subjects and num_<split>, plus the caller's extra string attributes. The volume
// geometry datasets prepare_data adds (/subjects/dims, affine, crop, ...) are absent: these
// slices come from no volume. Written to <path>.tmp and renamed; on any error nothing is left
// at <path>.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace rg::data {

struct SlicesSplit {
  std::vector<float> images;    // count * height * width, values in [-1, 1]
  std::vector<uint8_t> masks;   // same size, 0 or 1
  std::vector<int32_t> subject; // count rows of /subjects
  std::vector<int32_t> slice;   // count slice indices (also written as source_slice)
  // Pair files (reconstruction): the references, count * height * width; images are then the
  // degraded inputs. Either every split has targets (maybe none if empty) or none has.
  std::vector<float> targets;
  // Label maps (data/label_map.h): count * height * width class ids, written as /<split>/labels
  // when the file's label_classes is not empty (then every split has them).
  std::vector<uint8_t> labels;
};

struct SlicesFile {
  int64_t height = 0, width = 0;
  std::array<SlicesSplit, 3> splits;  // train, val, test
  std::vector<std::string> subjects;  // /subjects/name
  std::string created_by = "roentgen";
  std::string source, source_kind;
  std::vector<std::pair<std::string, std::string>> attributes;  // extra root attributes
  int compression = 4;
  bool pairs = false;  // write /<split>/targets (and the root attribute "pairs" = pairs_kind)
  std::string pairs_kind = "pairs";
  std::vector<std::string> label_classes;  // non-empty: write the labels and this attribute
};

// Throws rg::Error naming the path for inconsistent sizes, masks other than 0/1, classes not
// in label_classes, subject rows out of range, or a write failure.
void write_slices_file(const std::string& path, const SlicesFile& file);

}  // namespace rg::data
