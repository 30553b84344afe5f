// Training batches from a prepared slices file: NHWC float tensors [B, H, W, 1] for the image
// and the mask, built by worker threads into a bounded prefetch queue.
//
//   rg::data::LoaderOptions o;
//   o.batch_size = 16; o.epochs = 10; o.augment = true;
//   rg::data::Loader loader("lung_phantom.h5", o);
//   while (auto batch = loader.next()) { ... batch->image, batch->mask ... }
//
// Determinism: the order of samples in an epoch depends only on (seed, epoch) and the
// augmentation of a sample only on (seed, epoch, sample index), so results do not depend on
// the number of workers or their scheduling; batches are delivered in order.
// Sharding (data parallelism): every rank draws the same epoch permutation and takes every
// world_size-th sample starting at rank; without drop_last the permutation is padded by
// wrapping around so every rank gets the same number of samples (as PyTorch's
// DistributedSampler does); with drop_last the tail that does not divide evenly is dropped.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "data/slice_dataset.h"
#include "data/transforms.h"
#include "engine/tensor.h"

namespace rg::data {

struct LoaderOptions {
  std::string split = "train";
  int64_t batch_size = 8;
  bool shuffle = true;
  uint64_t seed = 0;
  int64_t epochs = 1;     // number of passes; 0 = endless
  // Index of the first batch to deliver, counted over the whole stream (epoch * batches per
  // epoch + step): a resumed training run restarts the stream where it stopped.
  int64_t start_batch = 0;
  int workers = 2;        // 0 = build batches synchronously in next()
  int prefetch = 4;       // batches built ahead of the consumer (queue bound)
  int rank = 0;           // this process's shard
  int world_size = 1;
  bool drop_last = false; // drop the last partial batch (and the uneven shard tail)
  bool augment = false;   // apply augment_options to every sample
  // Also deliver each sample's label map (Batch::labels), with the mask's geometry. Every file
  // the loader reads must have labels, with the same classes (SliceDataset::label_classes).
  bool labels = false;
  AugmentOptions augment_options;
  // 2.5-D input: the image gets 2 * context_slices + 1 channels, the sample's neighbouring
  // slices in its subject and split (SliceDataset::neighbour: the end of a contiguous run of
  // slices repeats), the sample itself in the middle channel. Every channel is augmented with
  // the sample's seed, so all take the same geometry and intensity change. 0 = one channel.
  int context_slices = 0;
  // Load the whole split into memory first: -1 = when it needs less than 1 GiB, 0 = never
  // (read slices from the file on demand), 1 = always.
  int preload = -1;
  // Which of the split's samples the loader uses (dataset indices, each at most once; unset =
  // all of them; empty = none, e.g. training on the extra file alone): a reproducible subset of
  // the real training data (seeded_subset below).
  std::optional<std::vector<int64_t>> subset;
  // A second prepared file whose `split` samples are appended to the first's (e.g. synthetic
  // pairs from apps/synthesize mixed into real training data); empty = none. It must have the
  // same slice size. extra_subset picks its samples like `subset`.
  std::string extra_path;
  std::optional<std::vector<int64_t>> extra_subset;
  // More contrasts of the same slices (multi-channel input): prepared files on the first file's
  // slice grid (data::check_same_slice_grid) whose images become further channels of the image,
  // contrast-major: channel q * (2 * context_slices + 1) + c is contrast q's slice at offset
  // c - context_slices (contrast 0: the first file). Every contrast is augmented with the
  // sample's seed (one geometry and intensity change); masks, targets and labels come from the
  // first file. Not with extra_path.
  std::vector<std::string> contrast_paths;
  // Allocation hook for batch tensors (shape [B, H, W, 1], float32). Empty =
  // allocate_host_batch: page-locked (pinned) host memory when a CUDA device is present, so the
  // host->device copy of a batch can run asynchronously; ordinary host memory otherwise.
  std::function<rg::Tensor(const rg::Shape&)> allocate;
};

struct Batch {
  rg::Tensor image;              // [B, H, W, contrasts * (1 + 2 * context_slices)] float32 in [-1, 1]
  rg::Tensor mask;               // [B, H, W, 1] float32, 0 or 1
  // Pair files (SliceDataset::has_targets): the references, [B, H, W, 1], augmented with the
  // same geometry as the image; undefined otherwise.
  rg::Tensor target;
  // With LoaderOptions::labels: the label maps, [B, H, W, 1] float32 class ids (0, 1, 2, ...;
  // data/label_map.h), augmented with the same geometry as the mask; undefined otherwise.
  rg::Tensor labels;
  // Indices of the samples in batch order: dataset indices, or with `subset`/`extra_path`
  // positions in the loader's sample list (the subset's samples, then the extra file's).
  std::vector<int64_t> indices;
  int64_t epoch = 0;
  int64_t step = 0;              // batch number within the epoch
  bool last_in_epoch = false;
};

// This rank's sample indices for one epoch, in order (exposed for tests and tools).
std::vector<int64_t> shard_indices(int64_t dataset_size, int64_t epoch, bool shuffle, uint64_t seed,
                                   int rank, int world_size, bool drop_last);

// A reproducible subset of [0, n): round(fraction * n) indices (at least 1 when fraction > 0
// and n > 0), drawn by a seeded shuffle and returned in increasing order. fraction in [0, 1];
// the same (n, fraction, seed) always gives the same subset, and a smaller fraction with the
// same seed gives a subset of a larger one's (the first k of one shuffle).
std::vector<int64_t> seeded_subset(int64_t n, double fraction, uint64_t seed);

// Default batch allocation: rg::Tensor::empty_pinned(shape, F32) (see LoaderOptions::allocate).
rg::Tensor allocate_host_batch(const rg::Shape& shape);

class Loader {
 public:
  // Opens the split (throws rg::Error naming the file if it is missing or malformed) and
  // starts the workers.
  Loader(const std::string& path, LoaderOptions options);
  // Stops and joins the workers (batches in flight are discarded).
  ~Loader();
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  // The next batch, or nullopt after the last epoch. A worker's exception (e.g. a read error)
  // is rethrown here, in the consumer's thread.
  std::optional<Batch> next();

  // Samples the loader draws from (the subset's, plus the extra file's).
  int64_t dataset_size() const { return static_cast<int64_t>(samples_.size()); }
  int64_t shard_size() const { return shard_size_; }       // samples per epoch on this rank
  int64_t batches_per_epoch() const { return batches_per_epoch_; }
  int64_t height() const { return out_h_; }
  int64_t width() const { return out_w_; }
  const SliceDataset& dataset() const { return *dataset_; }
  const LoaderOptions& options() const { return opt_; }

 private:
  struct Result {
    std::optional<Batch> batch;
    std::exception_ptr error;
  };
  void worker_loop();
  Batch build(int64_t job);
  std::shared_ptr<const std::vector<int64_t>> epoch_order(int64_t epoch);
  int64_t total_jobs() const;  // -1 = endless

  LoaderOptions opt_;
  std::unique_ptr<SliceDataset> dataset_, extra_;
  std::vector<std::unique_ptr<SliceDataset>> contrasts_;  // LoaderOptions::contrast_paths
  // Sample i of the loader: (0: dataset_, 1: extra_; index in that dataset).
  std::vector<std::pair<int, int64_t>> samples_;
  int64_t shard_size_ = 0, batches_per_epoch_ = 0, out_h_ = 0, out_w_ = 0;

  std::mutex mu_;
  std::condition_variable work_cv_, done_cv_;
  bool stop_ = false;
  int64_t next_job_ = 0;   // next job a worker will take
  int64_t consumed_ = 0;   // jobs handed to the consumer
  std::map<int64_t, Result> results_;
  std::mutex order_mu_;
  std::map<int64_t, std::shared_ptr<const std::vector<int64_t>>> orders_;
  std::vector<std::thread> threads_;
};

}  // namespace rg::data
