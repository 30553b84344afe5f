#include "data/slice_dataset.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <sstream>

#include "data/h5.h"
#include "data/label_map.h"
#include "data/prepare.h"
#include "engine/error.h"

namespace rg::data {

struct SliceDataset::Impl {
  h5::Handle file, group, images, masks, lesions, labels, targets;
};

namespace {

int64_t slice_key(int32_t subject, int32_t slice) {
  return (static_cast<int64_t>(subject) << 32) | static_cast<uint32_t>(slice);
}

void check_format(hid_t F, const std::string& path) {
  RG_CHECK(h5::has_attr(F, "format"), path, ": not a prepared slices file (no 'format' attribute)");
  const std::string fmt = h5::read_attr_string(F, "format", path);
  RG_CHECK(fmt == "roentgen-slices", path, ": unexpected format '", fmt, "' (expected roentgen-slices)");
  const auto ver = h5::read_attr_ints(F, "format_version", path);
  RG_CHECK(ver.size() == 1 && ver[0] == 1, path, ": unsupported format_version");
}

std::vector<hsize_t> checked_dims(hid_t d, const std::string& what, size_t rank) {
  auto dims = h5::dataset_dims(d, what);
  RG_CHECK(dims.size() == rank, what, ": expected ", rank, " dimensions, got ", dims.size());
  return dims;
}

}  // namespace

bool is_hdf5_file(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) return false;
  h5::quiet();
  return H5Fis_hdf5(path.c_str()) > 0;
}

SliceDataset::SliceDataset(const std::string& path, const std::string& split)
    : impl_(std::make_unique<Impl>()), path_(path), split_(split) {
  RG_CHECK(split == "train" || split == "val" || split == "test", path, ": unknown split '", split,
           "' (expected train, val or test)");
  impl_->file = h5::open_file_readonly(path);
  const hid_t F = impl_->file.get();
  check_format(F, path);
  impl_->group = h5::open_group(F, split, path);
  const hid_t G = impl_->group.get();
  impl_->images = h5::open_dataset(G, "images", path);
  impl_->masks = h5::open_dataset(G, "masks", path);
  const auto idims = checked_dims(impl_->images.get(), path + ": " + split + "/images", 3);
  const auto mdims = checked_dims(impl_->masks.get(), path + ": " + split + "/masks", 3);
  RG_CHECK(idims == mdims, path, ": ", split, "/images and ", split, "/masks have different shapes");
  has_targets_ = h5::exists(G, "targets");
  if (has_targets_) {
    impl_->targets = h5::open_dataset(G, "targets", path);
    const auto tdims = checked_dims(impl_->targets.get(), path + ": " + split + "/targets", 3);
    RG_CHECK(tdims == idims, path, ": ", split, "/targets and ", split, "/images have different shapes");
  }
  count_ = static_cast<int64_t>(idims[0]);
  height_ = static_cast<int64_t>(idims[1]);
  width_ = static_cast<int64_t>(idims[2]);
  RG_CHECK(height_ > 0 && width_ > 0, path, ": ", split, "/images has an empty slice shape");
  if (h5::exists(G, "lesions")) {
    impl_->lesions = h5::open_dataset(G, "lesions", path);
    const auto ldims = checked_dims(impl_->lesions.get(), path + ": " + split + "/lesions", 3);
    RG_CHECK(ldims == idims, path, ": ", split, "/lesions and ", split, "/images have different shapes");
    has_lesions_ = true;
  }
  for (const char* name : {"subject", "slice"}) {
    h5::Handle d = h5::open_dataset(G, name, path);
    const auto dims = checked_dims(d.get(), path + ": " + split + "/" + name, 1);
    RG_CHECK(static_cast<int64_t>(dims[0]) == count_, path, ": ", split, "/", name, " has ", dims[0],
             " rows, images has ", count_);
    std::vector<int32_t>& dst = std::string(name) == "subject" ? subject_ : slice_;
    dst.resize(static_cast<size_t>(count_));
    h5::read_rows(d.get(), H5T_NATIVE_INT32, 0, static_cast<hsize_t>(count_), dst.data(),
                  path + ": " + split + "/" + name);
  }
  h5::Handle subjects = h5::open_group(F, "subjects", path);
  subject_names_ = h5::read_strings(subjects.get(), "name", path);
  for (int32_t s : subject_)
    RG_CHECK(s >= 0 && static_cast<size_t>(s) < subject_names_.size(), path, ": ", split,
             "/subject refers to subject ", s, " but /subjects has ", subject_names_.size());
  for (int64_t i = 0; i < count_; ++i) {
    const size_t k = static_cast<size_t>(i);
    if (!position_.emplace(slice_key(subject_[k], slice_[k]), i).second && repeated_slice_ < 0) repeated_slice_ = i;
  }
  // Millimetres per pixel of the prepared slices and between slices, per subject (optional:
  // files written before it have none).
  if (h5::exists(subjects.get(), "pixel_spacing")) {
    h5::Handle d = h5::open_dataset(subjects.get(), "pixel_spacing", path);
    const auto dims = checked_dims(d.get(), path + ": subjects/pixel_spacing", 2);
    RG_CHECK(dims[0] == subject_names_.size() && dims[1] == 3, path, ": subjects/pixel_spacing is ",
             dims[0], " x ", dims[1], ", expected ", subject_names_.size(), " x 3");
    pixel_spacing_.resize(static_cast<size_t>(dims[0]) * 3);
    h5::read_rows(d.get(), H5T_NATIVE_DOUBLE, 0, dims[0], pixel_spacing_.data(), path + ": subjects/pixel_spacing");
  }
  // Each subject's crop box in its oriented voxel grid (optional, as above).
  if (h5::exists(subjects.get(), "crop")) {
    h5::Handle d = h5::open_dataset(subjects.get(), "crop", path);
    const auto dims = checked_dims(d.get(), path + ": subjects/crop", 2);
    RG_CHECK(dims[0] == subject_names_.size() && dims[1] == 6, path, ": subjects/crop is ", dims[0], " x ", dims[1],
             ", expected ", subject_names_.size(), " x 6");
    crop_.resize(static_cast<size_t>(dims[0]) * 6);
    h5::read_rows(d.get(), H5T_NATIVE_INT64, 0, dims[0], crop_.data(), path + ": subjects/crop");
  }
  attrs_ = h5::all_attrs(F);
  if (h5::exists(G, "labels")) {
    impl_->labels = h5::open_dataset(G, "labels", path);
    const auto ldims = checked_dims(impl_->labels.get(), path + ": " + split + "/labels", 3);
    RG_CHECK(ldims == idims, path, ": ", split, "/labels and ", split, "/images have different shapes");
    const std::string classes = attribute("label_classes");
    RG_CHECK(!classes.empty(), path, ": ", split, "/labels without the root attribute label_classes");
    label_classes_ = parse_label_classes(classes, path);
  }
}

SliceDataset::~SliceDataset() = default;

std::array<double, 3> SliceDataset::pixel_spacing_mm(int32_t subject) const {
  if (pixel_spacing_.empty()) return {0, 0, 0};
  RG_CHECK(subject >= 0 && static_cast<size_t>(subject) < subject_names_.size(), path_,
           ": no subject ", subject, " (", subject_names_.size(), " subjects)");
  const double* p = pixel_spacing_.data() + static_cast<size_t>(subject) * 3;
  return {p[0], p[1], p[2]};
}

std::array<int64_t, 6> SliceDataset::crop_box(int32_t subject) const {
  if (crop_.empty()) return {};
  RG_CHECK(subject >= 0 && static_cast<size_t>(subject) < subject_names_.size(), path_,
           ": no subject ", subject, " (", subject_names_.size(), " subjects)");
  const int64_t* p = crop_.data() + static_cast<size_t>(subject) * 6;
  return {p[0], p[1], p[2], p[3], p[4], p[5]};
}

std::string SliceDataset::attribute(const std::string& name) const {
  for (const auto& [k, v] : attrs_)
    if (k == name) return v;
  return "";
}

void SliceDataset::preload() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!images_.empty() || count_ == 0) return;
  const size_t n = static_cast<size_t>(count_ * height_ * width_);
  std::vector<float> images(n);
  std::vector<uint8_t> masks(n);
  std::vector<float> targets(has_targets_ ? n : 0);
  if (has_targets_)
    h5::read_rows(impl_->targets.get(), H5T_NATIVE_FLOAT, 0, static_cast<hsize_t>(count_), targets.data(),
                  path_ + ": " + split_ + "/targets");
  h5::read_rows(impl_->images.get(), H5T_NATIVE_FLOAT, 0, static_cast<hsize_t>(count_), images.data(),
                path_ + ": " + split_ + "/images");
  h5::read_rows(impl_->masks.get(), H5T_NATIVE_UINT8, 0, static_cast<hsize_t>(count_), masks.data(),
                path_ + ": " + split_ + "/masks");
  if (has_labels()) {
    std::vector<uint8_t> labels(n);
    h5::read_rows(impl_->labels.get(), H5T_NATIVE_UINT8, 0, static_cast<hsize_t>(count_), labels.data(),
                  path_ + ": " + split_ + "/labels");
    // Checked once here, so that reads from memory need not check again.
    const size_t hw = static_cast<size_t>(height_ * width_);
    for (int64_t i = 0; i < count_; ++i) check_label_classes(i, labels.data() + static_cast<size_t>(i) * hw);
    labels_ = std::move(labels);
  }
  images_ = std::move(images);
  masks_ = std::move(masks);
  targets_ = std::move(targets);
}

void SliceDataset::read_lesions(int64_t i, uint8_t* lesions) const {
  RG_CHECK(has_lesions_, path_, ": no lesion masks (", split_, "/lesions); prepare the file with lesions "
           "(prepare_data phantom --anomaly)");
  RG_CHECK(i >= 0 && i < count_, path_, ": ", split_, " sample ", i, " out of range (", count_, " samples)");
  std::lock_guard<std::mutex> lock(mutex_);
  h5::read_rows(impl_->lesions.get(), H5T_NATIVE_UINT8, static_cast<hsize_t>(i), 1, lesions,
                path_ + ": " + split_ + "/lesions");
}

void SliceDataset::read_labels(int64_t i, uint8_t* labels) const {
  RG_CHECK(has_labels(), path_, ": no label maps (", split_, "/labels); prepare the file with "
           "prepare_data ... --label-map");
  RG_CHECK(i >= 0 && i < count_, path_, ": ", split_, " sample ", i, " out of range (", count_, " samples)");
  const size_t hw = static_cast<size_t>(height_ * width_);
  if (!labels_.empty()) {
    std::copy_n(labels_.data() + static_cast<size_t>(i) * hw, hw, labels);  // checked by preload()
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    h5::read_rows(impl_->labels.get(), H5T_NATIVE_UINT8, static_cast<hsize_t>(i), 1, labels,
                  path_ + ": " + split_ + "/labels");
  }
  check_label_classes(i, labels);
}

void SliceDataset::check_label_classes(int64_t i, const uint8_t* labels) const {
  const size_t hw = static_cast<size_t>(height_ * width_), classes = label_classes_.size();
  for (size_t p = 0; p < hw; ++p)
    RG_CHECK(labels[p] < classes, path_, ": ", split_, "/labels sample ", i, " has class ",
             int(labels[p]), " but label_classes names ", classes, " classes");
}

void SliceDataset::read(int64_t i, float* image, float* mask, float* target) const {
  RG_CHECK(i >= 0 && i < count_, path_, ": ", split_, " sample ", i, " out of range (", count_, " samples)");
  RG_CHECK(!target || has_targets_, path_, ": not a pair file (no ", split_,
           "/targets: prepare it with prepare_data lowdose-ct, superres or pairs)");
  const size_t hw = static_cast<size_t>(height_ * width_);
  if (!images_.empty()) {
    std::copy_n(images_.data() + i * hw, hw, image);
    if (target) std::copy_n(targets_.data() + i * hw, hw, target);
    if (mask)
      for (size_t k = 0; k < hw; ++k) mask[k] = masks_[i * hw + k] ? 1.0f : 0.0f;
    return;
  }
  std::vector<uint8_t> m(mask ? hw : 0);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    h5::read_rows(impl_->images.get(), H5T_NATIVE_FLOAT, static_cast<hsize_t>(i), 1, image,
                  path_ + ": " + split_ + "/images");
    if (mask)
      h5::read_rows(impl_->masks.get(), H5T_NATIVE_UINT8, static_cast<hsize_t>(i), 1, m.data(),
                    path_ + ": " + split_ + "/masks");
    if (target)
      h5::read_rows(impl_->targets.get(), H5T_NATIVE_FLOAT, static_cast<hsize_t>(i), 1, target,
                    path_ + ": " + split_ + "/targets");
  }
  if (mask)
    for (size_t k = 0; k < hw; ++k) mask[k] = m[k] ? 1.0f : 0.0f;
}

int64_t SliceDataset::neighbour(int64_t i, int offset) const {
  RG_CHECK(i >= 0 && i < count_, path_, ": ", split_, " sample ", i, " out of range (", count_, " samples)");
  // Synthetic files (apps/synthesize) may hold several samples of one (subject, slice).
  RG_CHECK(repeated_slice_ < 0, path_, ": ", split_, " holds slice ", slice_[static_cast<size_t>(repeated_slice_)],
           " of subject ", subject_[static_cast<size_t>(repeated_slice_)], " more than once, so its "
           "samples have no well-defined neighbouring slices (context slices need a file from prepare_data)");
  const int32_t subject = subject_[static_cast<size_t>(i)];
  const int step = offset > 0 ? 1 : -1;
  int64_t at = i;
  for (int moved = 0; moved != offset; moved += step) {
    const auto next = position_.find(slice_key(subject, slice_[static_cast<size_t>(at)] + step));
    if (next == position_.end()) break;
    at = next->second;
  }
  return at;
}

void SliceDataset::read_stack(int64_t i, int context, float* image_hwc, float* mask) const {
  RG_CHECK(context >= 0, "read_stack: context must be >= 0, got ", context);
  if (context == 0) return read(i, image_hwc, mask);
  const size_t hw = static_cast<size_t>(height_ * width_);
  const int channels = 2 * context + 1;
  std::vector<float> plane(hw);
  for (int c = 0; c < channels; ++c) {
    read(neighbour(i, c - context), plane.data(), c == context ? mask : nullptr);
    for (size_t p = 0; p < hw; ++p) image_hwc[p * channels + c] = plane[p];
  }
}

void check_same_slice_grid(const SliceDataset& ds, const SliceDataset& other) {
  const std::string& split = ds.split();
  RG_CHECK(other.split() == split, "check_same_slice_grid: ", other.path(), " is open on split ", other.split(),
           " but ", ds.path(), " on ", split);
  RG_CHECK(other.height() == ds.height() && other.width() == ds.width() && other.size() == ds.size(),
           "files on different slice grids: ", other.path(), " has ", other.size(), " ", split, " slices of ",
           other.height(), "x", other.width(), " but ", ds.path(), " has ", ds.size(), " of ", ds.height(), "x",
           ds.width(), " (prepare them from volumes on one grid, with the same split, crop and size)");
  RG_CHECK(other.subject_names() == ds.subject_names(), "files of different subjects: ", other.path(), " and ",
           ds.path(), " list different subjects");
  for (int64_t i = 0; i < ds.size(); ++i) {
    RG_CHECK(other.subject(i) == ds.subject(i) && other.slice(i) == ds.slice(i), "files on different slice grids: ",
             split, " sample ", i, " is subject ", other.subject(i), " slice ", other.slice(i), " in ", other.path(),
             " but subject ", ds.subject(i), " slice ", ds.slice(i), " in ", ds.path());
  }
  // Each subject cropped and resampled alike: the same crop box and pixel size.
  for (int32_t s = 0; s < static_cast<int32_t>(ds.subject_names().size()); ++s) {
    RG_CHECK(ds.crop_box(s) == other.crop_box(s), "files on different slice grids: subject ",
             ds.subject_names()[static_cast<size_t>(s)], " was cropped to another box in ", other.path(), " than in ",
             ds.path(), " (prepare every contrast with --crop none, or --crop mask with the same masks)");
    const std::array<double, 3> a = ds.pixel_spacing_mm(s), b = other.pixel_spacing_mm(s);
    for (int k = 0; k < 3; ++k)
      RG_CHECK(std::fabs(a[static_cast<size_t>(k)] - b[static_cast<size_t>(k)]) <= 1e-6 * std::max(1.0, std::fabs(a[static_cast<size_t>(k)])),
               "files on different slice grids: subject ", ds.subject_names()[static_cast<size_t>(s)], " has pixels of ",
               b[0], " x ", b[1], " x ", b[2], " mm in ", other.path(), " but ", a[0], " x ", a[1], " x ", a[2], " mm in ",
               ds.path(), " (prepared with another crop: prepare every contrast with --crop none, or --crop mask "
               "with the same masks)");
  }
}

void read_contrast_stack(const std::vector<const SliceDataset*>& contrasts, int64_t i, int context,
                         float* image_hwc) {
  RG_CHECK(!contrasts.empty() && contrasts[0], "read_contrast_stack: no contrasts");
  RG_CHECK(context >= 0, "read_contrast_stack: context must be >= 0, got ", context);
  const SliceDataset& first = *contrasts[0];
  const size_t hw = static_cast<size_t>(first.height() * first.width());
  const int per = 2 * context + 1;
  const size_t channels = contrasts.size() * static_cast<size_t>(per);
  if (channels == 1) return first.read(i, image_hwc, nullptr);
  std::vector<float> plane(hw);
  for (size_t q = 0; q < contrasts.size(); ++q)
    for (int c = 0; c < per; ++c) {
      // Every contrast shares the first one's grid, so its neighbours are the same samples.
      contrasts[q]->read(c == context ? i : first.neighbour(i, c - context), plane.data(), nullptr);
      const size_t ch = q * static_cast<size_t>(per) + static_cast<size_t>(c);
      for (size_t p = 0; p < hw; ++p) image_hwc[p * channels + ch] = plane[p];
    }
}

SlicesFileInfo read_slices_info(const std::string& path) {
  SlicesFileInfo info;
  info.path = path;
  h5::Handle file = h5::open_file_readonly(path);
  const hid_t F = file.get();
  check_format(F, path);
  for (int s = 0; s < 3; ++s) {
    h5::Handle g = h5::open_group(F, kSplitNames[s], path);
    h5::Handle d = h5::open_dataset(g.get(), "images", path);
    const auto dims = checked_dims(d.get(), path + ": " + kSplitNames[s] + "/images", 3);
    info.counts[s] = static_cast<int64_t>(dims[0]);
    info.height = static_cast<int64_t>(dims[1]);
    info.width = static_cast<int64_t>(dims[2]);
  }
  h5::Handle subjects = h5::open_group(F, "subjects", path);
  info.subjects = h5::read_strings(subjects.get(), "name", path);
  info.attributes = h5::all_attrs(F);
  return info;
}

std::array<std::vector<std::string>, 3> split_subject_names(const std::string& path) {
  std::array<std::vector<std::string>, 3> out;
  for (int s = 0; s < 3; ++s) {
    const SliceDataset split(path, kSplitNames[s]);
    const std::vector<std::string>& names = split.subject_names();
    std::vector<bool> seen(names.size(), false);
    for (int64_t i = 0; i < split.size(); ++i) seen.at(static_cast<size_t>(split.subject(i))) = true;
    for (size_t k = 0; k < seen.size(); ++k)
      if (seen[k]) out[static_cast<size_t>(s)].push_back(names[k]);
  }
  return out;
}

std::string describe_slices_file(const std::string& path, bool json) {
  const SlicesFileInfo info = read_slices_info(path);
  const std::array<std::vector<std::string>, 3> split_subjects = split_subject_names(path);
  if (json) {
    nlohmann::json j;
    j["source"] = path;
    j["format"] = "roentgen-slices";
    j["height"] = info.height;
    j["width"] = info.width;
    j["splits"] = {{"train", info.counts[0]}, {"val", info.counts[1]}, {"test", info.counts[2]}};
    j["subjects"] = info.subjects;
    j["split_subjects"] = {{"train", split_subjects[0]}, {"val", split_subjects[1]}, {"test", split_subjects[2]}};
    nlohmann::json attrs = nlohmann::json::object();
    for (const auto& [k, v] : info.attributes) attrs[k] = v;
    j["attributes"] = attrs;
    return j.dump(2);
  }
  std::ostringstream os;
  os << path << ": prepared slices (roentgen-slices), " << info.height << "x" << info.width << "\n";
  os << "  train " << info.counts[0] << ", val " << info.counts[1] << ", test " << info.counts[2]
     << " slices from " << info.subjects.size() << " subject(s)\n";
  for (int s = 0; s < 3; ++s) {
    os << "  " << kSplitNames[s] << " subjects:";
    for (const std::string& name : split_subjects[static_cast<size_t>(s)]) os << " " << name;
    os << "\n";
  }
  for (const auto& [k, v] : info.attributes) os << "  " << k << ": " << v << "\n";
  return os.str();
}

}  // namespace rg::data
