// Label maps (data/label_map.h) and where they travel: prepare_slices --label-map, the slices
// writer and reader, and the loader's augmentation.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "data/label_map.h"
#include "data/loader.h"
#include "data/prepare.h"
#include "data/slice_dataset.h"
#include "data/slice_writer.h"
#include "engine/error.h"

using namespace rg::data;
namespace fs = std::filesystem;

namespace {

fs::path temp_dir(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("rg_labels_" + name + "_" + std::to_string(getpid()));
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

// Quiet, fast preparation of the phantom's lungs (labels 3, 4) with label maps.
PrepareOptions label_map_options(int64_t size) {
  PrepareOptions o;
  o.progress = false;
  o.compression = 1;
  o.labels = {3, 4};
  o.size = size;
  o.label_map = true;
  return o;
}

}  // namespace

TEST(LabelMap, HolesInTheBodyAreBodyAndMaskAndLesionWin) {
  // 8x8: a ring of body (0.5) around a dark hole (-1), dark outside; mask and lesion pixels.
  const int64_t h = 8, w = 8;
  std::vector<float> image(64, -1.0f);
  for (int64_t y = 1; y < 7; ++y)
    for (int64_t x = 1; x < 7; ++x)
      if (y == 1 || y == 6 || x == 1 || x == 6) image[static_cast<size_t>(y * w + x)] = 0.5f;
  std::vector<uint8_t> mask(64, 0), lesions(64, 0), labels(64, 99);
  mask[3 * 8 + 3] = mask[3 * 8 + 4] = 1;
  lesions[3 * 8 + 4] = 1;
  make_label_map(image.data(), -0.5f, mask.data(), lesions.data(), h, w, labels.data());
  EXPECT_EQ(labels[0], kLabelBackground);           // outside
  EXPECT_EQ(labels[1 * 8 + 1], kLabelBody);          // the ring
  EXPECT_EQ(labels[4 * 8 + 4], kLabelBody);          // the dark hole inside it
  EXPECT_EQ(labels[3 * 8 + 3], kLabelMask);
  EXPECT_EQ(labels[3 * 8 + 4], kLabelLesion);        // lesion over mask
  // Without lesions, and with the ring broken: the hole joins the outside.
  image[static_cast<size_t>(1 * 8 + 3)] = -1.0f;
  make_label_map(image.data(), -0.5f, mask.data(), nullptr, h, w, labels.data());
  EXPECT_EQ(labels[4 * 8 + 4], kLabelBackground);
  EXPECT_EQ(labels[3 * 8 + 4], kLabelMask);
}

TEST(LabelMap, OneHotAndClassNames) {
  const std::vector<float> labels{0, 2, 1};
  std::vector<float> out(9, -1.0f);
  one_hot(labels.data(), 3, 3, out.data());
  EXPECT_EQ(out, (std::vector<float>{1, 0, 0, 0, 0, 1, 0, 1, 0}));
  const std::vector<float> bad{3};
  EXPECT_THROW(one_hot(bad.data(), 1, 3, out.data()), rg::Error);
  EXPECT_EQ(join_label_classes(label_class_names(true)), "background,body,mask,lesion");
  EXPECT_EQ(parse_label_classes("background,body,mask", "f.h5"), label_class_names(false));
  EXPECT_THROW(parse_label_classes("background", "f.h5"), rg::Error);
  EXPECT_THROW(parse_label_classes("a,,b", "f.h5"), rg::Error);
  const std::vector<float> picture = label_picture(labels.data(), 3, 3);
  EXPECT_EQ(picture, (std::vector<float>{-1.0f, 1.0f, 0.0f}));
}

TEST(LabelMap, PreparedPhantomLabelsAgreeWithTheMask) {
  const fs::path dir = temp_dir("prepare");
  PhantomOptions po;
  po.dims = {64, 64, 10};
  po.spacing = {5.0, 5.0, 12.0};
  PrepareOptions o = label_map_options(32);
  const std::string out = (dir / "p.h5").string();
  prepare_slices(phantom_subjects(3, 5, po), o, out);
  for (const char* split : {"train", "val", "test"}) {
    SliceDataset ds(out, split);
    ASSERT_TRUE(ds.has_labels());
    EXPECT_EQ(ds.label_classes(), label_class_names(false));
    std::vector<float> image(32 * 32), mask(32 * 32);
    std::vector<uint8_t> labels(32 * 32);
    int64_t counts[3] = {0, 0, 0};
    for (int64_t i = 0; i < ds.size(); ++i) {
      ds.read(i, image.data(), mask.data());
      ds.read_labels(i, labels.data());
      for (size_t p = 0; p < labels.size(); ++p) {
        ASSERT_LT(labels[p], 3);
        ASSERT_EQ(labels[p] == kLabelMask, mask[p] == 1.0f) << split << " slice " << i << " pixel " << p;
        ++counts[labels[p]];
      }
    }
    if (ds.size() > 0) {
      EXPECT_GT(counts[kLabelBackground], 0) << split;
      EXPECT_GT(counts[kLabelBody], 0) << split;
    }
  }
  // The same file without --label-map has none, and says so when asked.
  o.label_map = false;
  const std::string plain = (dir / "plain.h5").string();
  prepare_slices(phantom_subjects(3, 5, po), o, plain);
  SliceDataset ds(plain, "train");
  EXPECT_FALSE(ds.has_labels());
  std::vector<uint8_t> labels(32 * 32);
  try {
    ds.read_labels(0, labels.data());
    ADD_FAILURE() << "no error";
  } catch (const rg::Error& e) {
    EXPECT_NE(std::string(e.what()).find("--label-map"), std::string::npos) << e.what();
  }
  fs::remove_all(dir);
}

TEST(LabelMap, PhantomWithLesionMasksHasALesionClass) {
  const fs::path dir = temp_dir("lesions");
  PhantomOptions po;
  po.dims = {96, 96, 24};
  po.spacing = {3.6, 3.6, 10.0};
  po.lesions = 3;
  const PrepareOptions o = label_map_options(48);
  const std::string out = (dir / "p.h5").string();
  prepare_slices(phantom_lesion_subjects(3, 7, po), o, out);
  int64_t lesion_px = 0;
  for (const char* split : {"train", "val", "test"}) {
    SliceDataset ds(out, split);
    EXPECT_EQ(ds.label_classes(), label_class_names(true));
    ASSERT_TRUE(ds.has_lesions());
    std::vector<float> image(48 * 48), mask(48 * 48);
    std::vector<uint8_t> labels(48 * 48), lesions(48 * 48);
    for (int64_t i = 0; i < ds.size(); ++i) {
      ds.read(i, image.data(), mask.data());
      ds.read_labels(i, labels.data());
      ds.read_lesions(i, lesions.data());
      for (size_t p = 0; p < labels.size(); ++p) {
        ASSERT_EQ(labels[p] == kLabelLesion, lesions[p] == 1) << split << " slice " << i << " pixel " << p;
        if (labels[p] == kLabelMask) {
          ASSERT_EQ(mask[p], 1.0f);
        }
        lesion_px += labels[p] == kLabelLesion;
      }
    }
  }
  EXPECT_GT(lesion_px, 0);
  fs::remove_all(dir);
}

TEST(LabelMap, WriterChecksClassesAndTheLoaderAugmentsLabelsWithTheMask) {
  const fs::path dir = temp_dir("loader");
  SlicesFile f;
  f.height = f.width = 16;
  f.subjects = {"s"};
  f.label_classes = label_class_names(false);
  for (int i = 0; i < 4; ++i) {
    SlicesSplit& x = f.splits[0];
    for (int y = 0; y < 16; ++y)
      for (int c = 0; c < 16; ++c) {
        const bool body = y >= 2 && y < 14 && c >= 2 && c < 14, in = y >= 5 && y < 9 + i && c >= 4 && c < 10;
        x.images.push_back(body ? 0.5f : -1.0f);
        x.masks.push_back(in ? 1 : 0);
        x.labels.push_back(in ? kLabelMask : body ? kLabelBody : kLabelBackground);
      }
    x.subject.push_back(0);
    x.slice.push_back(i);
  }
  const std::string path = (dir / "labels.h5").string();
  write_slices_file(path, f);

  LoaderOptions o;
  o.batch_size = 4;
  o.workers = 0;
  o.augment = true;
  o.augment_options.rotate_deg = 30;
  o.labels = true;
  Loader loader(path, o);
  const auto b = loader.next();
  ASSERT_TRUE(b.has_value());
  const std::vector<float> mask = b->mask.to_vector<float>(), labels = b->labels.to_vector<float>();
  ASSERT_EQ(labels.size(), mask.size());
  int64_t moved = 0;
  for (size_t p = 0; p < labels.size(); ++p) {
    ASSERT_TRUE(labels[p] == 0.0f || labels[p] == 1.0f || labels[p] == 2.0f) << labels[p];
    ASSERT_EQ(labels[p] == 2.0f, mask[p] == 1.0f) << "pixel " << p;
  }
  for (int64_t k = 0; k < 4; ++k)
    for (int64_t p = 0; p < 256; ++p)
      moved += (labels[static_cast<size_t>(k * 256 + p)] != static_cast<float>(f.splits[0].labels[static_cast<size_t>(b->indices[static_cast<size_t>(k)] * 256 + p)]));
  EXPECT_GT(moved, 0) << "the augmentation changed nothing";

  // A class beyond label_classes, or labels without classes, are refused before writing.
  SlicesFile bad = f;
  bad.splits[0].labels[5] = 3;
  EXPECT_THROW(write_slices_file((dir / "bad.h5").string(), bad), rg::Error);
  bad = f;
  bad.label_classes.clear();
  EXPECT_THROW(write_slices_file((dir / "bad.h5").string(), bad), rg::Error);
  EXPECT_FALSE(fs::exists(dir / "bad.h5"));

  // Asking a file without label maps for them names the file.
  SlicesFile plain = f;
  plain.label_classes.clear();
  for (auto& s : plain.splits) s.labels.clear();
  const std::string plain_path = (dir / "plain.h5").string();
  write_slices_file(plain_path, plain);
  try {
    Loader l(plain_path, o);
    ADD_FAILURE() << "no error";
  } catch (const rg::Error& e) {
    EXPECT_NE(std::string(e.what()).find("plain.h5"), std::string::npos) << e.what();
  }
  fs::remove_all(dir);
}
