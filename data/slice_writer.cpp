#include "data/slice_writer.h"

#include <algorithm>
#include <filesystem>

#include "data/h5.h"
#include "data/label_map.h"
#include "data/prepare.h"
#include "engine/error.h"

namespace rg::data {

namespace fs = std::filesystem;

void write_slices_file(const std::string& path, const SlicesFile& f) {
  RG_CHECK(!path.empty(), "write_slices_file: empty output path");
  RG_CHECK(f.height > 0 && f.width > 0, path, ": slice size ", f.height, " x ", f.width);
  const size_t hw = static_cast<size_t>(f.height * f.width);
  const int nsub = static_cast<int>(f.subjects.size());
  // Check everything before creating a file.
  for (int s = 0; s < 3; ++s) {
    const SlicesSplit& x = f.splits[static_cast<size_t>(s)];
    const size_t n = x.subject.size();
    RG_CHECK(x.images.size() == n * hw && x.masks.size() == n * hw && x.slice.size() == n, path,
             ": split ", kSplitNames[s], " has ", x.images.size(), " image values, ",
             x.masks.size(), " mask values, ", n, " subject and ", x.slice.size(),
             " slice rows for ", f.height, " x ", f.width, " slices");
    RG_CHECK(x.targets.size() == (f.pairs ? n * hw : 0), path, ": split ", kSplitNames[s], " has ",
             x.targets.size(), " target values for ", n, " slices", f.pairs ? "" : " (not a pair file)");
    for (uint8_t m : x.masks) RG_CHECK(m <= 1, path, ": masks must be 0 or 1, got ", int{m});
    const size_t classes = f.label_classes.size();
    RG_CHECK(x.labels.size() == (classes ? n * hw : 0), path, ": split ", kSplitNames[s], " has ",
             x.labels.size(), " label values for ", n, " slices", classes ? "" : " (no label_classes)");
    for (uint8_t c : x.labels)
      RG_CHECK(c < classes, path, ": label class ", int{c}, " but label_classes names ", classes, " classes");
    for (int32_t sub : x.subject)
      RG_CHECK(sub >= 0 && sub < nsub, path, ": subject row ", sub, " out of range (",
               nsub, " subjects)");
  }
  const fs::path out(path);
  std::error_code ec;
  if (out.has_parent_path()) {
    fs::create_directories(out.parent_path(), ec);
    RG_CHECK(!ec, path, ": cannot create directory ", out.parent_path().string(), ": ", ec.message());
  }
  const std::string tmp = path + ".tmp";
  try {
    {
      h5::Handle file = h5::create_file(tmp);
      const hid_t F = file.get();
      const std::vector<hsize_t> row{static_cast<hsize_t>(f.height), static_cast<hsize_t>(f.width)};
      std::vector<std::string> split_of(static_cast<size_t>(nsub), "");
      for (int s = 0; s < 3; ++s) {
        const SlicesSplit& x = f.splits[static_cast<size_t>(s)];
        const hsize_t n = x.subject.size();
        h5::Handle g = h5::create_group(F, kSplitNames[s], tmp);
        const hid_t G = g.get();
        h5::RowWriter images(G, "images", H5T_NATIVE_FLOAT, H5T_IEEE_F32LE, row, f.compression, tmp);
        h5::RowWriter masks(G, "masks", H5T_NATIVE_UINT8, H5T_STD_U8LE, row, f.compression, tmp);
        h5::RowWriter subject(G, "subject", H5T_NATIVE_INT32, H5T_STD_I32LE, {}, 0, tmp);
        h5::RowWriter slice(G, "slice", H5T_NATIVE_INT32, H5T_STD_I32LE, {}, 0, tmp);
        h5::RowWriter source_slice(G, "source_slice", H5T_NATIVE_INT32, H5T_STD_I32LE, {}, 0, tmp);
        h5::RowWriter targets;
        if (f.pairs) targets = h5::RowWriter(G, "targets", H5T_NATIVE_FLOAT, H5T_IEEE_F32LE, row, f.compression, tmp);
        h5::RowWriter labels;
        if (!f.label_classes.empty())
          labels = h5::RowWriter(G, "labels", H5T_NATIVE_UINT8, H5T_STD_U8LE, row, f.compression, tmp);
        std::vector<int64_t> seen;
        double mask_sum = 0;
        if (n > 0) {
          images.append(x.images.data(), n);
          masks.append(x.masks.data(), n);
          if (f.pairs) targets.append(x.targets.data(), n);
          if (!f.label_classes.empty()) labels.append(x.labels.data(), n);
          subject.append(x.subject.data(), n);
          slice.append(x.slice.data(), n);
          source_slice.append(x.slice.data(), n);
        }
        for (size_t i = 0; i < n; ++i) {
          const int32_t sub = x.subject[i];
          if (std::find(seen.begin(), seen.end(), sub) == seen.end()) seen.push_back(sub);
          split_of[static_cast<size_t>(sub)] = kSplitNames[s];
          int64_t on = 0;
          for (size_t k = 0; k < hw; ++k) on += x.masks[i * hw + k];
          mask_sum += static_cast<double>(on) / static_cast<double>(hw);
        }
        h5::write_attr(G, "count", static_cast<int64_t>(n));
        h5::write_attr(G, "subjects", seen);
        h5::write_attr(G, "mask_fraction", n ? mask_sum / static_cast<double>(n) : 0.0);
        h5::write_attr(F, std::string("num_") + kSplitNames[s], static_cast<int64_t>(n));
      }
      {
        h5::Handle g = h5::create_group(F, "subjects", tmp);
        const std::vector<std::string> none(static_cast<size_t>(nsub), "");
        h5::write_strings(g.get(), "name", f.subjects, tmp);
        h5::write_strings(g.get(), "image_path", none, tmp);
        h5::write_strings(g.get(), "mask_path", none, tmp);
        h5::write_strings(g.get(), "split", split_of, tmp);
      }
      h5::write_attr(F, "format", std::string("roentgen-slices"));
      h5::write_attr(F, "format_version", int64_t{1});
      h5::write_attr(F, "created_by", f.created_by);
      h5::write_attr(F, "source", f.source);
      h5::write_attr(F, "source_kind", f.source_kind);
      h5::write_attr(F, "size", std::vector<int64_t>{f.height, f.width});
      h5::write_attr(F, "num_subjects", static_cast<int64_t>(nsub));
      if (f.pairs) {
        h5::write_attr(F, "pairs", f.pairs_kind);
        h5::write_attr(F, "pair_layout", std::string("images = degraded input, targets = reference, masks = region of the metrics"));
      }
      if (!f.label_classes.empty()) h5::write_attr(F, "label_classes", join_label_classes(f.label_classes));
      for (const auto& [k, v] : f.attributes) h5::write_attr(F, k, v);
      RG_CHECK(H5Fflush(F, H5F_SCOPE_GLOBAL) >= 0, tmp, ": flush failed (disk full?)");
    }
    fs::rename(tmp, path, ec);
    RG_CHECK(!ec, "cannot rename ", tmp, " to ", path, ": ", ec.message());
  } catch (...) {
    fs::remove(tmp, ec);
    throw;
  }
}

}  // namespace rg::data
