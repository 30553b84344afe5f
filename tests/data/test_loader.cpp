#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>

#include "data/loader.h"
#include "data/prepare.h"
#include "data/slice_writer.h"
#include "engine/error.h"

using namespace rg::data;
namespace fs = std::filesystem;

namespace {

constexpr int64_t kSlices = 30, kSize = 12;

// A prepared file with kSlices training slices; slice s has the constant image value
// (s / 50) - 1 (CT window [0, 100], raw value 2s) and a mask of its first s pixels.
class LoaderTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = fs::temp_directory_path() / ("rg_loader_" + std::to_string(getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    path_ = (dir_ / "slices.h5").string();
    Volume img, msk;
    img.dims = msk.dims = {kSize, kSize, kSlices};
    img.voxels.resize(kSize * kSize * kSlices);
    msk.voxels.resize(img.voxels.size());
    for (int64_t k = 0; k < kSlices; ++k)
      for (int64_t p = 0; p < kSize * kSize; ++p) {
        img.voxels[k * kSize * kSize + p] = static_cast<float>(2 * k);
        msk.voxels[k * kSize * kSize + p] = p < k ? 1.0f : 0.0f;
      }
    SubjectSource s;
    s.name = "synthetic";
    s.load = [img, msk] { return std::make_pair(img, msk); };
    PrepareOptions o;
    o.window = {0, 100};
    o.crop = CropMode::None;
    o.reorient = false;
    o.size = kSize;
    o.fractions = {1, 0, 0};
    o.progress = false;
    prepare_slices({s}, o, path_);
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }

  // Every batch's dataset indices, in delivery order.
  static std::vector<std::vector<int64_t>> drain(Loader& loader) {
    std::vector<std::vector<int64_t>> out;
    while (auto b = loader.next()) out.push_back(b->indices);
    return out;
  }

  static fs::path dir_;
  static std::string path_;
};

fs::path LoaderTest::dir_;
std::string LoaderTest::path_;

}  // namespace

TEST_F(LoaderTest, BatchesAreNhwcAndMatchTheFile) {
  LoaderOptions o;
  o.batch_size = 4;
  o.shuffle = false;
  Loader loader(path_, o);
  EXPECT_EQ(loader.dataset_size(), kSlices);
  EXPECT_EQ(loader.batches_per_epoch(), 8);
  auto b = loader.next();
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(b->image.shape(), (rg::Shape{4, kSize, kSize, 1}));
  EXPECT_EQ(b->mask.shape(), (rg::Shape{4, kSize, kSize, 1}));
  EXPECT_EQ(b->indices, (std::vector<int64_t>{0, 1, 2, 3}));
  const float* img = b->image.data<float>();
  const float* msk = b->mask.data<float>();
  for (int64_t n = 0; n < 4; ++n)
    for (int64_t p = 0; p < kSize * kSize; ++p) {
      EXPECT_NEAR(img[n * kSize * kSize + p], (2.0 * n) / 50.0 - 1.0, 1e-6);
      EXPECT_EQ(msk[n * kSize * kSize + p], p < n ? 1.0f : 0.0f);
    }
}

TEST_F(LoaderTest, EachSampleOncePerEpochAndEpochsDiffer) {
  LoaderOptions o;
  o.batch_size = 4;
  o.epochs = 3;
  o.seed = 5;
  o.workers = 3;
  Loader loader(path_, o);
  std::vector<std::vector<int64_t>> epochs(3);
  int64_t batches = 0;
  while (auto b = loader.next()) {
    ++batches;
    EXPECT_EQ(b->step, (batches - 1) % 8);
    EXPECT_EQ(b->last_in_epoch, b->step == 7);
    if (b->step < 7) EXPECT_EQ(b->indices.size(), 4u);
    else EXPECT_EQ(b->indices.size(), 2u);  // 30 = 7 * 4 + 2
    epochs[static_cast<size_t>(b->epoch)].insert(epochs[static_cast<size_t>(b->epoch)].end(),
                                                 b->indices.begin(), b->indices.end());
  }
  EXPECT_EQ(batches, 24);
  for (auto& e : epochs) {
    std::vector<int64_t> sorted = e;
    std::sort(sorted.begin(), sorted.end());
    std::vector<int64_t> all(kSlices);
    for (int64_t i = 0; i < kSlices; ++i) all[i] = i;
    EXPECT_EQ(sorted, all);
  }
  EXPECT_NE(epochs[0], epochs[1]);
  EXPECT_FALSE(loader.next().has_value());
}

TEST_F(LoaderTest, DeterministicWhateverTheWorkerCount) {
  LoaderOptions o;
  o.batch_size = 5;
  o.epochs = 2;
  o.seed = 9;
  o.augment = true;
  o.augment_options.p_elastic = 0.5;
  o.augment_options.rot90 = true;
  o.workers = 0;
  Loader a(path_, o);
  o.workers = 4;
  o.prefetch = 2;
  Loader b(path_, o);
  o.seed = 10;
  Loader c(path_, o);
  bool any_difference = false;
  while (auto x = a.next()) {
    auto y = b.next();
    auto z = c.next();
    ASSERT_TRUE(y && z);
    EXPECT_EQ(x->indices, y->indices);
    EXPECT_EQ(x->image.to_vector<float>(), y->image.to_vector<float>());
    EXPECT_EQ(x->mask.to_vector<float>(), y->mask.to_vector<float>());
    any_difference |= x->indices != z->indices;
  }
  EXPECT_FALSE(b.next().has_value());
  EXPECT_TRUE(any_difference);
}

TEST(LoaderShards, PartitionAndPadding) {
  // Divisible: disjoint shards that cover everything.
  std::set<int64_t> seen;
  for (int r = 0; r < 3; ++r) {
    const auto s = shard_indices(30, 2, true, 7, r, 3, false);
    EXPECT_EQ(s.size(), 10u);
    for (int64_t i : s) EXPECT_TRUE(seen.insert(i).second) << "sample " << i << " in two shards";
  }
  EXPECT_EQ(seen.size(), 30u);
  // Not divisible, no drop_last: equal shard sizes by wrapping, everything covered.
  seen.clear();
  for (int r = 0; r < 4; ++r) {
    const auto s = shard_indices(30, 0, true, 7, r, 4, false);
    EXPECT_EQ(s.size(), 8u);
    seen.insert(s.begin(), s.end());
  }
  EXPECT_EQ(seen.size(), 30u);
  // drop_last: equal sizes, disjoint, the tail dropped.
  seen.clear();
  for (int r = 0; r < 4; ++r) {
    const auto s = shard_indices(30, 0, true, 7, r, 4, true);
    EXPECT_EQ(s.size(), 7u);
    for (int64_t i : s) EXPECT_TRUE(seen.insert(i).second);
  }
  EXPECT_EQ(seen.size(), 28u);
  // Same seed and epoch => same order on every call; another epoch => another order.
  EXPECT_EQ(shard_indices(30, 1, true, 3, 0, 1, false), shard_indices(30, 1, true, 3, 0, 1, false));
  EXPECT_NE(shard_indices(30, 1, true, 3, 0, 1, false), shard_indices(30, 2, true, 3, 0, 1, false));
  EXPECT_THROW(shard_indices(30, 0, true, 0, 2, 2, false), rg::Error);
}

TEST_F(LoaderTest, ShardedLoadersSplitTheEpoch) {
  std::multiset<int64_t> seen;
  for (int r = 0; r < 3; ++r) {
    LoaderOptions o;
    o.batch_size = 4;
    o.rank = r;
    o.world_size = 3;
    o.seed = 1;
    Loader loader(path_, o);
    EXPECT_EQ(loader.shard_size(), 10);
    for (const auto& b : drain(loader)) seen.insert(b.begin(), b.end());
  }
  EXPECT_EQ(seen.size(), static_cast<size_t>(kSlices));
  EXPECT_EQ(std::set<int64_t>(seen.begin(), seen.end()).size(), static_cast<size_t>(kSlices));
}

TEST_F(LoaderTest, DropLastKeepsOnlyFullBatches) {
  LoaderOptions o;
  o.batch_size = 4;
  o.drop_last = true;
  Loader loader(path_, o);
  const auto batches = drain(loader);
  EXPECT_EQ(batches.size(), 7u);
  for (const auto& b : batches) EXPECT_EQ(b.size(), 4u);
  o.batch_size = 31;
  EXPECT_THROW(Loader(path_, o), rg::Error);  // not even one full batch
}

TEST_F(LoaderTest, AugmentedCropGivesTheCropShape) {
  LoaderOptions o;
  o.batch_size = 3;
  o.augment = true;
  o.augment_options = AugmentOptions::none();
  o.augment_options.crop_h = 8;
  o.augment_options.crop_w = 10;
  Loader loader(path_, o);
  auto b = loader.next();
  ASSERT_TRUE(b);
  EXPECT_EQ(b->image.shape(), (rg::Shape{3, 8, 10, 1}));
}

// One worker builds the batches in order (two allocations each), so the fifth
// allocation belongs to the third batch: the first two arrive, the third rethrows.
TEST_F(LoaderTest, WorkerErrorsAreRethrownInNext) {
  LoaderOptions o;
  o.batch_size = 4;
  o.workers = 1;
  auto calls = std::make_shared<std::atomic<int>>(0);
  o.allocate = [calls](const rg::Shape& shape) {
    if (++*calls > 4) throw rg::Error("allocation failed on purpose");
    return rg::Tensor::empty(shape, rg::DType::F32);
  };
  Loader loader(path_, o);
  EXPECT_NO_THROW(loader.next());
  EXPECT_NO_THROW(loader.next());
  EXPECT_THROW(loader.next(), rg::Error);
}

// With several workers the order in which batches are built is the scheduler's, so
// every allocation fails: whichever worker builds the first batch, its error (with
// its message) is what next() throws, and the destructor still joins the workers.
TEST_F(LoaderTest, ErrorsFromSeveralWorkersKeepTheirMessage) {
  LoaderOptions o;
  o.batch_size = 4;
  o.workers = 3;
  o.allocate = [](const rg::Shape&) -> rg::Tensor { throw rg::Error("allocation failed on purpose"); };
  Loader loader(path_, o);
  try {
    loader.next();
    FAIL() << "expected an error";
  } catch (const rg::Error& e) {
    EXPECT_NE(std::string(e.what()).find("allocation failed on purpose"), std::string::npos) << e.what();
  }
}

TEST_F(LoaderTest, EndlessLoaderShutsDownCleanly) {
  LoaderOptions o;
  o.batch_size = 2;
  o.epochs = 0;
  o.workers = 3;
  o.prefetch = 3;
  {
    Loader loader(path_, o);
    for (int i = 0; i < 40; ++i) ASSERT_TRUE(loader.next().has_value());
  }  // the destructor joins workers blocked on a full queue
  SUCCEED();
}

TEST_F(LoaderTest, MissingOrCorruptFileNamesIt) {
  const std::string missing = (dir_ / "nope.h5").string();
  try {
    Loader loader(missing, LoaderOptions{});
    FAIL() << "expected an error";
  } catch (const rg::Error& e) {
    EXPECT_NE(std::string(e.what()).find(missing), std::string::npos) << e.what();
  }
  const std::string corrupt = (dir_ / "corrupt.h5").string();
  std::ofstream(corrupt) << "\x89HDF\r\n\x1a\n garbage after a plausible signature";
  try {
    Loader loader(corrupt, LoaderOptions{});
    FAIL() << "expected an error";
  } catch (const rg::Error& e) {
    EXPECT_NE(std::string(e.what()).find(corrupt), std::string::npos) << e.what();
  }
  LoaderOptions o;
  o.split = "val";  // exists but is empty
  EXPECT_THROW(Loader(path_, o), rg::Error);
}

// ---- 2.5-D input (context slices)

namespace {

// Subject 0 holds slices 0, 1, 2, 5, 6 (a gap of two, as between slabs), subject 1 slices 0, 1;
// every pixel of sample i is i / 10 and its mask is 1 where the pixel index equals i.
std::string write_context_file(const fs::path& dir) {
  SlicesFile f;
  f.height = f.width = 4;
  f.subjects = {"a", "b"};
  const std::vector<std::pair<int32_t, int32_t>> slices{{0, 0}, {0, 1}, {0, 2}, {0, 5}, {0, 6}, {1, 0}, {1, 1}};
  for (size_t i = 0; i < slices.size(); ++i) {
    f.splits[0].images.insert(f.splits[0].images.end(), 16, static_cast<float>(i) / 10.0f);
    for (int p = 0; p < 16; ++p) f.splits[0].masks.push_back(p == static_cast<int>(i) ? 1 : 0);
    f.splits[0].subject.push_back(slices[i].first);
    f.splits[0].slice.push_back(slices[i].second);
  }
  const std::string path = (dir / "context.h5").string();
  write_slices_file(path, f);
  return path;
}

}  // namespace

TEST_F(LoaderTest, NeighboursStayInTheirRunOfSlicesAndSubject) {
  const SliceDataset ds(write_context_file(dir_), "train");
  // Inside a run, one slice away; at its ends (volume end, the gap 2 -> 5, the subject's end)
  // the end slice repeats; never into the other subject.
  EXPECT_EQ(ds.neighbour(1, -1), 0);
  EXPECT_EQ(ds.neighbour(1, 1), 2);
  EXPECT_EQ(ds.neighbour(1, 2), 2);
  EXPECT_EQ(ds.neighbour(0, -3), 0);
  EXPECT_EQ(ds.neighbour(2, 1), 2);
  EXPECT_EQ(ds.neighbour(3, -1), 3);
  EXPECT_EQ(ds.neighbour(3, 1), 4);
  EXPECT_EQ(ds.neighbour(4, 1), 4);
  EXPECT_EQ(ds.neighbour(5, -1), 5);
  EXPECT_EQ(ds.neighbour(5, 1), 6);  // subject 1's slice 1, not subject 0's (sample 1)
  EXPECT_EQ(ds.neighbour(6, 1), 6);
  EXPECT_EQ(ds.neighbour(6, 0), 6);
  EXPECT_THROW(ds.neighbour(7, 1), rg::Error);

  // read_stack: channel c of pixel p is sample neighbour(i, c - 1)'s pixel.
  std::vector<float> stack(16 * 3, std::nanf("")), mask(16, -1.0f);
  ds.read_stack(2, 1, stack.data(), mask.data());
  for (int p = 0; p < 16; ++p) {
    EXPECT_FLOAT_EQ(stack[static_cast<size_t>(p * 3 + 0)], 0.1f);
    EXPECT_FLOAT_EQ(stack[static_cast<size_t>(p * 3 + 1)], 0.2f);
    EXPECT_FLOAT_EQ(stack[static_cast<size_t>(p * 3 + 2)], 0.2f);
    EXPECT_EQ(mask[static_cast<size_t>(p)], p == 2 ? 1.0f : 0.0f);
  }
}

TEST_F(LoaderTest, ContextSlicesBecomeChannelsClampedToTheVolume) {
  // Unaugmented: channel c of sample i holds the slice i + c - 2, clamped to the volume.
  LoaderOptions o;
  o.batch_size = 4;
  o.shuffle = false;
  o.context_slices = 2;
  Loader loader(path_, o);
  auto b = loader.next();
  ASSERT_TRUE(b.has_value());
  ASSERT_EQ(b->image.shape(), (rg::Shape{4, kSize, kSize, 5}));
  EXPECT_EQ(b->mask.shape(), (rg::Shape{4, kSize, kSize, 1}));
  const float* img = b->image.data<float>();
  for (int64_t n = 0; n < 4; ++n)
    for (int64_t c = 0; c < 5; ++c) {
      const int64_t s = std::clamp<int64_t>(n + c - 2, 0, kSlices - 1);
      EXPECT_NEAR(img[(n * kSize * kSize + 7) * 5 + c], (2.0 * s) / 50.0 - 1.0, 1e-6) << n << " " << c;
    }

}

namespace {

// Three 8x8 slices of one subject, pixel p of slice k at offset + sign (p / 100 + k / 10): a
// pattern in which a flip or turn shows and neighbouring slices differ by a constant.
SlicesFile pattern_file(float sign = 1.0f, float offset = 0.0f) {
  SlicesFile f;
  f.height = f.width = 8;
  f.subjects = {"pattern"};
  for (int k = 0; k < 3; ++k) {
    for (int p = 0; p < 64; ++p)
      f.splits[0].images.push_back(offset + sign * (static_cast<float>(p) / 100.0f + static_cast<float>(k) / 10.0f));
    for (int p = 0; p < 64; ++p) f.splits[0].masks.push_back(p < 5 * k ? 1 : 0);
    f.splits[0].subject.push_back(0);
    f.splits[0].slice.push_back(k);
  }
  return f;
}

// The pattern's three slices per batch in file order, four epochs, augmented by exact index
// transforms only (flips, quarter turns) and an intensity change, no noise.
LoaderOptions exact_augmentation(uint64_t seed) {
  LoaderOptions o;
  o.batch_size = 3;
  o.shuffle = false;
  o.epochs = 4;
  o.augment = true;
  o.seed = seed;
  o.augment_options.p_flip_v = 0.5;
  o.augment_options.rot90 = true;
  o.augment_options.rotate_deg = 0;
  o.augment_options.scale_min = o.augment_options.scale_max = 1;
  o.augment_options.noise_sigma = 0;
  o.augment_options.clamp = false;
  return o;
}

}  // namespace

TEST_F(LoaderTest, ContextChannelsTakeTheSamplesAugmentation) {
  const std::string path = (dir_ / "pattern.h5").string();
  write_slices_file(path, pattern_file());
  LoaderOptions o = exact_augmentation(3);
  o.context_slices = 1;
  Loader with_context(path, o);
  o.context_slices = 0;
  Loader plain(path, o);
  bool moved = false;
  while (auto x = with_context.next()) {
    auto y = plain.next();
    ASSERT_TRUE(y.has_value());
    EXPECT_EQ(x->mask.to_vector<float>(), y->mask.to_vector<float>());
    const std::vector<float> xs = x->image.to_vector<float>(), ys = y->image.to_vector<float>();
    for (int64_t n = 0; n < 3; ++n) {
      const int64_t slice = x->indices[static_cast<size_t>(n)];
      // The middle channel is the one-channel loader's image.
      for (int64_t p = 0; p < 64; ++p) ASSERT_EQ(xs[static_cast<size_t>((n * 64 + p) * 3 + 1)], ys[static_cast<size_t>(n * 64 + p)]);
      moved |= std::abs(ys[static_cast<size_t>(n * 64)] - ys[static_cast<size_t>(n * 64 + 1)]) > 0.05f;
      // Each neighbour is the middle channel plus one constant (gain * 0.1 * distance): the same
      // geometry and the same intensity change; the end slices repeat themselves.
      for (int64_t c : {0, 2}) {
        const int64_t other = std::clamp<int64_t>(slice + c - 1, 0, 2);
        const float d0 = xs[static_cast<size_t>((n * 64) * 3 + c)] - xs[static_cast<size_t>((n * 64) * 3 + 1)];
        if (other == slice) EXPECT_EQ(d0, 0.0f);
        else EXPECT_GT(std::abs(d0), 0.08f);
        for (int64_t p = 0; p < 64; ++p) {
          const float d = xs[static_cast<size_t>((n * 64 + p) * 3 + c)] - xs[static_cast<size_t>((n * 64 + p) * 3 + 1)];
          EXPECT_NEAR(d, d0, 1e-5) << "sample " << slice << " channel " << c << " pixel " << p;
        }
      }
    }
  }
  EXPECT_TRUE(moved);  // some draw turned the pattern a quarter
}

TEST_F(LoaderTest, ContextSlicesRefuseFilesWithRepeatedSlices) {
  SlicesFile f;
  f.height = f.width = 4;
  f.subjects = {"synthetic"};
  for (int i = 0; i < 2; ++i) {
    f.splits[0].images.insert(f.splits[0].images.end(), 16, 0.0f);
    f.splits[0].masks.insert(f.splits[0].masks.end(), 16, 0);
    f.splits[0].subject.push_back(0);
    f.splits[0].slice.push_back(3);  // the same slice twice, as synthesize may write
  }
  const std::string path = (dir_ / "repeated.h5").string();
  write_slices_file(path, f);
  LoaderOptions o;
  o.batch_size = 1;
  Loader plain(path, o);  // fine without context
  EXPECT_TRUE(plain.next().has_value());
  o.context_slices = 1;
  try {
    Loader loader(path, o);
    FAIL() << "expected an error";
  } catch (const rg::Error& e) {
    EXPECT_NE(std::string(e.what()).find("repeated.h5"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("more than once"), std::string::npos) << e.what();
  }
}

TEST_F(LoaderTest, MoreContrastsBecomeChannelsWithTheSamplesAugmentation) {
  // Two contrasts of the pattern: A as it is, B = 0.5 - A. Under one affine intensity change
  // (gain, offset) and one geometry, A' + B' is one constant per sample and slice offset,
  // whatever the pixel.
  const std::string a = (dir_ / "contrast_a.h5").string(), b = (dir_ / "contrast_b.h5").string();
  write_slices_file(a, pattern_file());
  write_slices_file(b, pattern_file(-1.0f, 0.5f));
  LoaderOptions o = exact_augmentation(5);
  o.context_slices = 1;
  Loader one(a, o);
  o.contrast_paths = {b};
  Loader two(a, o);
  bool moved = false;
  while (auto x = two.next()) {
    auto y = one.next();
    ASSERT_TRUE(y.has_value());
    ASSERT_EQ(x->image.shape(), (rg::Shape{3, 8, 8, 6}));
    EXPECT_EQ(x->mask.to_vector<float>(), y->mask.to_vector<float>());
    const std::vector<float> xs = x->image.to_vector<float>(), ys = y->image.to_vector<float>();
    for (int64_t n = 0; n < 3; ++n)
      for (int64_t c = 0; c < 3; ++c) {
        const float sum0 = xs[static_cast<size_t>((n * 64) * 6 + c)] + xs[static_cast<size_t>((n * 64) * 6 + 3 + c)];
        for (int64_t p = 0; p < 64; ++p) {
          // Contrast 0's channels are the one-contrast loader's, contrast-major.
          ASSERT_EQ(xs[static_cast<size_t>((n * 64 + p) * 6 + c)], ys[static_cast<size_t>((n * 64 + p) * 3 + c)]);
          const float sum = xs[static_cast<size_t>((n * 64 + p) * 6 + c)] + xs[static_cast<size_t>((n * 64 + p) * 6 + 3 + c)];
          EXPECT_NEAR(sum, sum0, 1e-5) << "sample " << n << " offset " << c << " pixel " << p;
        }
        moved |= std::abs(ys[static_cast<size_t>((n * 64) * 3 + 1)] - ys[static_cast<size_t>((n * 64 + 1) * 3 + 1)]) > 0.05f;
      }
  }
  EXPECT_TRUE(moved);
  // Unaugmented, contrast B's middle channel is B's own slice.
  o.augment = false;
  o.epochs = 1;
  Loader plain(a, o);
  auto x = plain.next();
  ASSERT_TRUE(x.has_value());
  EXPECT_NEAR(x->image.to_vector<float>()[static_cast<size_t>((64 + 9) * 6 + 4)], 0.5f - (0.09f + 0.1f), 1e-6);
}

TEST_F(LoaderTest, ContrastOnAnotherSliceGridIsRefusedNamingIt) {
  LoaderOptions o;
  o.batch_size = 2;
  SlicesFile f;
  f.height = f.width = kSize;
  f.subjects = {"synthetic"};
  for (int k = 0; k < 3; ++k) {  // 3 slices where path_ has kSlices
    f.splits[0].images.insert(f.splits[0].images.end(), kSize * kSize, 0.0f);
    f.splits[0].masks.insert(f.splits[0].masks.end(), kSize * kSize, 0);
    f.splits[0].subject.push_back(0);
    f.splits[0].slice.push_back(k);
  }
  const std::string other = (dir_ / "short_contrast.h5").string();
  write_slices_file(other, f);
  o.contrast_paths = {other};
  try {
    Loader loader(path_, o);
    FAIL() << "expected an error";
  } catch (const rg::Error& e) {
    EXPECT_NE(std::string(e.what()).find("short_contrast.h5"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("different slice grids"), std::string::npos) << e.what();
  }
  o.contrast_paths = {path_};
  o.extra_path = path_;
  EXPECT_THROW(Loader(path_, o), rg::Error);
}

TEST_F(LoaderTest, ContrastCroppedToAnotherBoxIsRefused) {
  // One volume cropped to two masks of the same size in different places: the same slices and
  // pixel size, but another crop box, so the pixels of a slice are not the same anatomy.
  auto prepare = [](int64_t x0, const std::string& path) {
    Volume img, msk;
    img.dims = msk.dims = {40, 40, 6};
    img.voxels.assign(40 * 40 * 6, 10.0f);
    msk.voxels.assign(img.voxels.size(), 0.0f);
    for (int64_t k = 0; k < 6; ++k)
      for (int64_t j = 10; j < 20; ++j)
        for (int64_t i = x0; i < x0 + 10; ++i) msk.voxels[static_cast<size_t>(i + 40 * (j + 40 * k))] = 1.0f;
    SubjectSource s;
    s.name = "boxes";
    s.load = [img, msk] { return std::make_pair(img, msk); };
    PrepareOptions o;
    o.window = {0, 100};
    o.crop = CropMode::Mask;
    o.margin_mm = 0;
    o.reorient = false;
    o.size = 8;
    o.fractions = {1, 0, 0};
    o.progress = false;
    prepare_slices({s}, o, path);
  };
  const std::string left = (dir_ / "box_left.h5").string(), right = (dir_ / "box_right.h5").string(),
                    left_again = (dir_ / "box_left_again.h5").string();
  prepare(2, left);
  prepare(25, right);
  prepare(2, left_again);
  const SliceDataset a(left, "train"), b(right, "train"), c(left_again, "train");
  ASSERT_EQ(a.pixel_spacing_mm(0), b.pixel_spacing_mm(0));
  ASSERT_NE(a.crop_box(0), b.crop_box(0));
  check_same_slice_grid(a, c);
  try {
    check_same_slice_grid(a, b);
    FAIL() << "expected an error";
  } catch (const rg::Error& e) {
    EXPECT_NE(std::string(e.what()).find("box_right.h5"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("another box"), std::string::npos) << e.what();
  }
}
