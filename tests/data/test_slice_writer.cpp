// data/slice_writer.h writes prepare_data's layout (SliceDataset reads it back), and the
// loader's subset / extra file (data/loader.h) pick and mix samples as documented.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <set>

#include "data/loader.h"
#include "data/slice_dataset.h"
#include "data/slice_writer.h"
#include "engine/error.h"

namespace rg::data {
namespace {

namespace fs = std::filesystem;

// `n` train slices of 4x4 whose image is the constant value `base + i` / 100 and whose mask has
// i % 2 foreground pixels; one val and one test slice.
SlicesFile make_file(int n, float base, int64_t side = 4) {
  SlicesFile f;
  f.height = f.width = side;
  f.subjects = {"a", "b"};
  const size_t hw = static_cast<size_t>(side * side);
  for (int s = 0; s < 3; ++s) {
    const int count = s == 0 ? n : 1;
    SlicesSplit& x = f.splits[static_cast<size_t>(s)];
    for (int i = 0; i < count; ++i) {
      x.images.insert(x.images.end(), hw, (base + static_cast<float>(i)) / 100.0f);
      std::vector<uint8_t> m(hw, 0);
      if (i % 2) m[0] = 1;
      x.masks.insert(x.masks.end(), m.begin(), m.end());
      x.subject.push_back(i % 2);
      x.slice.push_back(i);
    }
  }
  return f;
}

class SliceWriterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("rg_slice_writer_" + std::to_string(getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

TEST_F(SliceWriterTest, RoundTripsThroughSliceDataset) {
  const std::string path = (dir_ / "a.h5").string();
  write_slices_file(path, make_file(5, 0.0f));
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  SliceDataset ds(path, "train");
  ASSERT_EQ(ds.size(), 5);
  EXPECT_EQ(ds.height(), 4);
  std::vector<float> img(16), msk(16);
  ds.read(3, img.data(), msk.data());
  EXPECT_FLOAT_EQ(img[5], 0.03f);
  EXPECT_EQ(msk[0], 1.0f);
  EXPECT_EQ(ds.subject(3), 1);
  EXPECT_EQ(ds.slice(3), 3);
  EXPECT_EQ(ds.attribute("format"), "roentgen-slices");
  EXPECT_EQ(SliceDataset(path, "val").size(), 1);
  const SlicesFileInfo info = read_slices_info(path);
  EXPECT_EQ(info.counts[0], 5);
  EXPECT_EQ(info.subjects, (std::vector<std::string>{"a", "b"}));
}

TEST_F(SliceWriterTest, BadInputIsRefusedAndWritesNothing) {
  const std::string path = (dir_ / "bad.h5").string();
  SlicesFile f = make_file(3, 0.0f);
  f.splits[0].masks[0] = 2;
  try {
    write_slices_file(path, f);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
  f = make_file(3, 0.0f);
  f.splits[0].subject[1] = 7;  // no such subject row
  EXPECT_THROW(write_slices_file(path, f), Error);
  f = make_file(3, 0.0f);
  f.splits[0].images.pop_back();
  EXPECT_THROW(write_slices_file(path, f), Error);
  EXPECT_FALSE(fs::exists(path));
  EXPECT_FALSE(fs::exists(path + ".tmp"));
}

TEST(SeededSubset, ReproducibleSortedAndNested) {
  const auto a = seeded_subset(100, 0.1, 3);
  EXPECT_EQ(a.size(), 10u);
  EXPECT_TRUE(std::is_sorted(a.begin(), a.end()));
  EXPECT_EQ(std::set<int64_t>(a.begin(), a.end()).size(), 10u);
  EXPECT_EQ(a, seeded_subset(100, 0.1, 3));
  EXPECT_NE(a, seeded_subset(100, 0.1, 4));
  const auto b = seeded_subset(100, 0.25, 3);
  EXPECT_EQ(b.size(), 25u);
  for (int64_t i : a) EXPECT_TRUE(std::binary_search(b.begin(), b.end(), i)) << i;
  EXPECT_EQ(seeded_subset(100, 1.0, 3).size(), 100u);
  EXPECT_EQ(seeded_subset(5, 0.01, 3).size(), 1u);  // a positive fraction keeps one slice
  EXPECT_TRUE(seeded_subset(5, 0.0, 3).empty());
  EXPECT_THROW(seeded_subset(5, 1.5, 3), Error);
}

TEST_F(SliceWriterTest, LoaderSubsetAndExtraFile) {
  const std::string real = (dir_ / "real.h5").string(), extra = (dir_ / "extra.h5").string();
  write_slices_file(real, make_file(6, 0.0f));    // values 0.00 .. 0.05
  write_slices_file(extra, make_file(4, 50.0f));  // values 0.50 .. 0.53
  LoaderOptions o;
  o.batch_size = 1;
  o.shuffle = false;
  o.workers = 0;
  o.subset = std::vector<int64_t>{1, 4};
  o.extra_path = extra;
  o.extra_subset = std::vector<int64_t>{2};
  Loader loader(real, o);
  EXPECT_EQ(loader.dataset_size(), 3);
  std::vector<float> seen;
  while (auto b = loader.next()) seen.push_back(b->image.data<float>()[0]);
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_FLOAT_EQ(seen[0], 0.01f);
  EXPECT_FLOAT_EQ(seen[1], 0.04f);
  EXPECT_FLOAT_EQ(seen[2], 0.52f);

  // The extra file alone (empty subset), and all of both.
  o.subset = std::vector<int64_t>{};
  o.extra_subset.reset();
  EXPECT_EQ(Loader(real, o).dataset_size(), 4);
  o.subset.reset();
  EXPECT_EQ(Loader(real, o).dataset_size(), 10);

  // Bad subsets and a slice size that differs name the file.
  o.subset = std::vector<int64_t>{6};
  EXPECT_THROW(Loader(real, o), Error);
  o.subset = std::vector<int64_t>{1, 1};
  EXPECT_THROW(Loader(real, o), Error);
  o.subset.reset();
  const std::string other = (dir_ / "other.h5").string();
  write_slices_file(other, make_file(2, 0.0f, 8));
  o.extra_path = other;
  try {
    Loader bad(real, o);
    FAIL() << "expected a size error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(other), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace rg::data
