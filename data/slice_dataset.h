// Reading a prepared slices file (written by prepare_slices; layout in docs/data_hdf5.md).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace rg::data {

// One split ("train", "val" or "test") of a prepared file. Images are float in [-1, 1], masks
// are returned as float 0/1. Opening validates the layout and throws rg::Error naming the file
// and the problem (missing file, not HDF5, wrong format, inconsistent datasets). Reads are safe
// from several threads (serialized on an internal mutex unless the split is preloaded).
class SliceDataset {
 public:
  SliceDataset(const std::string& path, const std::string& split);
  ~SliceDataset();
  SliceDataset(const SliceDataset&) = delete;
  SliceDataset& operator=(const SliceDataset&) = delete;

  const std::string& path() const { return path_; }
  const std::string& split() const { return split_; }
  int64_t size() const { return count_; }
  int64_t height() const { return height_; }
  int64_t width() const { return width_; }
  // Row in /subjects and slice index (oriented, inferior->superior) of sample i.
  int32_t subject(int64_t i) const { return subject_.at(static_cast<size_t>(i)); }
  int32_t slice(int64_t i) const { return slice_.at(static_cast<size_t>(i)); }
  const std::vector<std::string>& subject_names() const { return subject_names_; }
  // Millimetres per pixel of the prepared slices (rows, columns) and between slices, of one
  // subject (/subjects/pixel_spacing); all 0 for files written without it.
  std::array<double, 3> pixel_spacing_mm(int32_t subject) const;
  // A subject's crop box in its oriented voxel grid (/subjects/crop: the lower and upper ends
  // along columns, rows and slices, as prepare_slices wrote them); all 0 for files without it.
  std::array<int64_t, 6> crop_box(int32_t subject) const;

  // Copies sample i into image/mask (height*width floats each; mask may be null). In a pair
  // file (has_targets) the image is the degraded input and `target` (may be null) gets the
  // reference; asking for a target in a file without one throws naming the file.
  void read(int64_t i, float* image, float* mask, float* target = nullptr) const;
  // 2.5-D input: the sample `offset` slices above (offset > 0) or below sample i in the same
  // subject and split. The walk goes one slice at a time and stops at the end of the contiguous
  // run of slices that holds i (the volume's end, a gap between slabs, another split's slices),
  // so a missing neighbour repeats the last slice of the run, as edge padding does; it never
  // crosses into another subject or split (no leakage between splits).
  int64_t neighbour(int64_t i, int offset) const;
  // Sample i with `context` neighbours on each side as channels: image_hwc gets
  // height*width*(2*context+1) floats, pixel-major (channel c of pixel p at p*(2*context+1)+c),
  // channel `context` being sample i itself; the slices are neighbour(i, c - context). mask
  // (may be null) gets sample i's mask. context 0 is read() without a target.
  void read_stack(int64_t i, int context, float* image_hwc, float* mask) const;
  // False when two samples of the split share a (subject, slice) (synthetic files): then
  // neighbour() throws.
  bool slices_unique() const { return repeated_slice_ < 0; }
  // Pair files (reconstruction, docs/data_hdf5.md "Pairs") have /<split>/targets.
  bool has_targets() const { return has_targets_; }
  // Lesion masks (anomaly detection's ground truth, /<split>/lesions: 0/1 on the slice grid),
  // present in files prepared with lesions (prepare_data phantom --anomaly). read_lesions throws
  // naming the file when the file has none.
  bool has_lesions() const { return has_lesions_; }
  void read_lesions(int64_t i, uint8_t* lesions) const;
  // Label maps (/<split>/labels: one class per pixel, data/label_map.h), present in files
  // prepared with --label-map and in synthesize's output from them. label_classes() names the
  // classes in order (the root attribute label_classes; empty without labels). read_labels
  // throws naming the file when it has none, or when a pixel's class is not one of them.
  bool has_labels() const { return !label_classes_.empty(); }
  const std::vector<std::string>& label_classes() const { return label_classes_; }
  void read_labels(int64_t i, uint8_t* labels) const;
  // Loads the whole split into memory (later reads need no HDF5 and run in parallel).
  void preload();
  bool preloaded() const { return !images_.empty() || count_ == 0; }
  // Bytes the images and masks of this split take in memory as float.
  uint64_t memory_bytes() const {
    return static_cast<uint64_t>(count_) * height_ * width_ * (has_targets_ ? 3 : 2) * sizeof(float);
  }

  // A root attribute rendered as text ("" if absent).
  std::string attribute(const std::string& name) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string path_, split_;
  int64_t count_ = 0, height_ = 0, width_ = 0;
  bool has_lesions_ = false;
  bool has_targets_ = false;
  std::vector<int32_t> subject_, slice_;
  // (subject << 32 | slice) -> sample index, for neighbour().
  std::unordered_map<int64_t, int64_t> position_;
  int64_t repeated_slice_ = -1;  // a sample whose (subject, slice) an earlier one has, or -1
  std::vector<std::string> subject_names_;
  std::vector<double> pixel_spacing_;  // 3 per subject, or empty
  std::vector<int64_t> crop_;          // 6 per subject, or empty
  std::vector<std::pair<std::string, std::string>> attrs_;
  std::vector<float> images_, targets_;
  // Throws naming the file, split and sample when a pixel's class is not in label_classes_.
  void check_label_classes(int64_t i, const uint8_t* labels) const;

  std::vector<uint8_t> masks_, labels_;
  std::vector<std::string> label_classes_;
  mutable std::mutex mutex_;
};

// Several files of one slice grid: contrasts (or modalities) of the same anatomy prepared as
// separate files (prepare_data translation, or one --image-channel of a 4-D NIfTI each).
// Throws unless `other` holds the slices of `ds` on the same grid: the same split, slice size and
// count, the same subject and slice for every sample, the same subjects, and the same crop box
// and pixel size per subject; names both files.
void check_same_slice_grid(const SliceDataset& ds, const SliceDataset& other);

// Sample i of several contrasts on one slice grid (check_same_slice_grid; contrasts[0] decides
// the neighbours), each with `context` neighbours on each side: image_hwc gets height * width *
// contrasts.size() * (2 * context + 1) floats, pixel-major; within a pixel, channel
// q * (2 * context + 1) + c is contrast q's slice neighbour(i, c - context). One contrast gives
// read_stack's layout.
void read_contrast_stack(const std::vector<const SliceDataset*>& contrasts, int64_t i, int context,
                         float* image_hwc);

// Slice counts per split without opening the datasets' contents.
struct SlicesFileInfo {
  std::string path;
  int64_t height = 0, width = 0;
  int64_t counts[3] = {0, 0, 0};  // train, val, test
  std::vector<std::string> subjects;
  std::vector<std::pair<std::string, std::string>> attributes;  // root attributes as text
};
SlicesFileInfo read_slices_info(const std::string& path);
// The names of the subjects with slices in each split (train, val, test), in /subjects order.
// Reads every split's subject references: for `prepare_data info`, not for start-up.
std::array<std::vector<std::string>, 3> split_subject_names(const std::string& path);
// Text (or one JSON object) describing a prepared file, for `prepare_data info FILE.h5`.
std::string describe_slices_file(const std::string& path, bool json);
// True when the path looks like an HDF5 file (signature check; false if missing).
bool is_hdf5_file(const std::string& path);

}  // namespace rg::data
