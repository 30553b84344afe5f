#include "data/loader.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "data/rng.h"
#include "engine/error.h"

namespace rg::data {

std::vector<int64_t> shard_indices(int64_t n, int64_t epoch, bool shuffle, uint64_t seed, int rank,
                                   int world_size, bool drop_last) {
  RG_CHECK(world_size >= 1 && rank >= 0 && rank < world_size, "loader: need 0 <= rank < world_size, got rank ",
           rank, ", world_size ", world_size);
  std::vector<int64_t> order(static_cast<size_t>(std::max<int64_t>(0, n)));
  std::iota(order.begin(), order.end(), 0);
  if (shuffle) {
    Rng rng(derive_seed(seed, {0x73687566ULL, static_cast<uint64_t>(epoch)}));
    rng.shuffle(order);
  }
  if (n == 0) return {};
  const int64_t per_rank = drop_last ? n / world_size : (n + world_size - 1) / world_size;
  const int64_t total = per_rank * world_size;
  // Pad by wrapping around (every rank gets per_rank samples), or truncate.
  std::vector<int64_t> out;
  out.reserve(static_cast<size_t>(per_rank));
  for (int64_t i = rank; i < total; i += world_size) out.push_back(order[static_cast<size_t>(i % n)]);
  return out;
}

std::vector<int64_t> seeded_subset(int64_t n, double fraction, uint64_t seed) {
  RG_CHECK(n >= 0, "seeded_subset: n must be >= 0, got ", n);
  RG_CHECK(fraction >= 0.0 && fraction <= 1.0, "seeded_subset: fraction must be in [0, 1], got ",
           fraction);
  int64_t k = std::llround(fraction * static_cast<double>(n));
  if (fraction > 0 && n > 0) k = std::max<int64_t>(k, 1);
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  Rng rng(derive_seed(seed, {0x73756273ULL}));
  rng.shuffle(order);
  order.resize(static_cast<size_t>(k));
  std::sort(order.begin(), order.end());
  return order;
}

rg::Tensor allocate_host_batch(const rg::Shape& shape) {
  // Page-locked when a GPU is present, so batches upload with asynchronous copies.
  return rg::Tensor::empty_pinned(shape, rg::DType::F32);
}

Loader::Loader(const std::string& path, LoaderOptions options) : opt_(std::move(options)) {
  RG_CHECK(opt_.batch_size >= 1, "loader: batch_size must be >= 1, got ", opt_.batch_size);
  RG_CHECK(opt_.epochs >= 0, "loader: epochs must be >= 0 (0 = endless), got ", opt_.epochs);
  RG_CHECK(opt_.workers >= 0, "loader: workers must be >= 0, got ", opt_.workers);
  RG_CHECK(opt_.prefetch >= 1, "loader: prefetch must be >= 1, got ", opt_.prefetch);
  RG_CHECK(opt_.start_batch >= 0, "loader: start_batch must be >= 0, got ", opt_.start_batch);
  RG_CHECK(opt_.world_size >= 1 && opt_.rank >= 0 && opt_.rank < opt_.world_size,
           "loader: need 0 <= rank < world_size, got rank ", opt_.rank, ", world_size ", opt_.world_size);
  dataset_ = std::make_unique<SliceDataset>(path, opt_.split);
  auto add_samples = [this](int source, const SliceDataset& ds,
                            const std::optional<std::vector<int64_t>>& pick, const char* what) {
    if (!pick) {
      for (int64_t i = 0; i < ds.size(); ++i) samples_.emplace_back(source, i);
      return;
    }
    std::vector<uint8_t> seen(static_cast<size_t>(ds.size()), 0);
    for (int64_t i : *pick) {
      RG_CHECK(i >= 0 && i < ds.size(), ds.path(), ": loader ", what, " index ", i,
               " out of range (split '", ds.split(), "' has ", ds.size(), " samples)");
      RG_CHECK(!seen[static_cast<size_t>(i)], ds.path(), ": loader ", what, " lists sample ", i,
               " twice");
      seen[static_cast<size_t>(i)] = 1;
      samples_.emplace_back(source, i);
    }
  };
  add_samples(0, *dataset_, opt_.subset, "subset");
  if (!opt_.extra_path.empty()) {
    extra_ = std::make_unique<SliceDataset>(opt_.extra_path, opt_.split);
    RG_CHECK(extra_->height() == dataset_->height() && extra_->width() == dataset_->width(),
             opt_.extra_path, ": slices are ", extra_->height(), "x", extra_->width(), " but ",
             path, " has ", dataset_->height(), "x", dataset_->width());
    add_samples(1, *extra_, opt_.extra_subset, "extra_subset");
  } else {
    RG_CHECK(!opt_.extra_subset, "loader: extra_subset given without extra_path");
  }
  RG_CHECK(opt_.contrast_paths.empty() || opt_.extra_path.empty(), "loader: more contrasts (",
           opt_.contrast_paths.front(), ") and an extra file (", opt_.extra_path, ") together are not supported");
  for (const std::string& p : opt_.contrast_paths) {
    contrasts_.push_back(std::make_unique<SliceDataset>(p, opt_.split));
    check_same_slice_grid(*dataset_, *contrasts_.back());
  }
  if (opt_.labels) {
    RG_CHECK(dataset_->has_labels(), path, ": no label maps (", opt_.split, "/labels); prepare it with --label-map");
    RG_CHECK(!extra_ || extra_->label_classes() == dataset_->label_classes(), opt_.extra_path,
             ": its label maps do not have the classes of ", path, "'s (", extra_->has_labels() ? "other classes" : "none", ")");
  }
  RG_CHECK(opt_.context_slices >= 0, "loader: context_slices must be >= 0, got ", opt_.context_slices);
  if (opt_.context_slices > 0) {
    for (const SliceDataset* ds : {dataset_.get(), extra_.get()}) {
      RG_CHECK(!ds || ds->slices_unique(), ds->path(), ": ", opt_.split, " holds some slice of a subject "
               "more than once (a synthetic file?), so context slices are not defined for it");
    }
  }
  const int64_t n = static_cast<int64_t>(samples_.size());
  RG_CHECK(n > 0, path, ": split '", opt_.split, "' has no samples",
           !opt_.subset && opt_.extra_path.empty() ? "" : " (after subset / extra file)");
  shard_size_ = opt_.drop_last ? n / opt_.world_size : (n + opt_.world_size - 1) / opt_.world_size;
  batches_per_epoch_ = opt_.drop_last ? shard_size_ / opt_.batch_size
                                      : (shard_size_ + opt_.batch_size - 1) / opt_.batch_size;
  RG_CHECK(batches_per_epoch_ > 0, path, ": split '", opt_.split, "' has ", n, " samples: not one full batch of ",
           opt_.batch_size, " per rank (world_size ", opt_.world_size, ") with drop_last");
  out_h_ = dataset_->height();
  out_w_ = dataset_->width();
  if (opt_.augment && opt_.augment_options.crop_h > 0) {
    out_h_ = opt_.augment_options.crop_h;
    out_w_ = opt_.augment_options.crop_w;
  }
  if (opt_.preload == 1 || (opt_.preload < 0 && dataset_->memory_bytes() < (uint64_t(1) << 30)))
    dataset_->preload();
  if (extra_ && (opt_.preload == 1 || (opt_.preload < 0 && extra_->memory_bytes() < (uint64_t(1) << 30))))
    extra_->preload();
  for (auto& c : contrasts_)
    if (opt_.preload == 1 || (opt_.preload < 0 && c->memory_bytes() < (uint64_t(1) << 30))) c->preload();
  next_job_ = consumed_ = opt_.start_batch;
  for (int w = 0; w < opt_.workers; ++w) threads_.emplace_back([this] { worker_loop(); });
}

Loader::~Loader() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  done_cv_.notify_all();
  for (auto& t : threads_) t.join();
}

int64_t Loader::total_jobs() const { return opt_.epochs == 0 ? -1 : opt_.epochs * batches_per_epoch_; }

std::shared_ptr<const std::vector<int64_t>> Loader::epoch_order(int64_t epoch) {
  std::lock_guard<std::mutex> lock(order_mu_);
  auto it = orders_.find(epoch);
  if (it != orders_.end()) return it->second;
  auto order = std::make_shared<const std::vector<int64_t>>(shard_indices(
      dataset_size(), epoch, opt_.shuffle, opt_.seed, opt_.rank, opt_.world_size, opt_.drop_last));
  orders_[epoch] = order;
  // Keep only recent epochs (workers run at most `prefetch` batches ahead).
  while (orders_.size() > 3) orders_.erase(orders_.begin());
  return order;
}

Batch Loader::build(int64_t job) {
  Batch b;
  b.epoch = job / batches_per_epoch_;
  b.step = job % batches_per_epoch_;
  b.last_in_epoch = b.step == batches_per_epoch_ - 1;
  const auto order = epoch_order(b.epoch);
  const int64_t first = b.step * opt_.batch_size;
  const int64_t count = std::min<int64_t>(opt_.batch_size, static_cast<int64_t>(order->size()) - first);
  b.indices.assign(order->begin() + first, order->begin() + first + count);
  const rg::Shape shape{count, out_h_, out_w_, 1};
  const int64_t per_contrast = 1 + 2 * int64_t{opt_.context_slices};
  const int64_t channels = (1 + static_cast<int64_t>(contrasts_.size())) * per_contrast;
  const rg::Shape image_shape{count, out_h_, out_w_, channels};
  b.image = opt_.allocate ? opt_.allocate(image_shape) : allocate_host_batch(image_shape);
  b.mask = opt_.allocate ? opt_.allocate(shape) : allocate_host_batch(shape);
  const bool pairs = dataset_->has_targets();
  if (pairs) b.target = opt_.allocate ? opt_.allocate(shape) : allocate_host_batch(shape);
  if (opt_.labels) b.labels = opt_.allocate ? opt_.allocate(shape) : allocate_host_batch(shape);
  float* img_dst = b.image.data<float>();
  float* msk_dst = b.mask.data<float>();
  float* tgt_dst = pairs ? b.target.data<float>() : nullptr;
  const int64_t H = dataset_->height(), W = dataset_->width();
  const size_t out_hw = static_cast<size_t>(out_h_ * out_w_);
  Image2D img(H, W), msk(H, W), tgt(pairs ? H : 0, pairs ? W : 0), msk2, lbl, img2, side, no_mask;
  std::vector<uint8_t> lbl8(opt_.labels ? static_cast<size_t>(H * W) : 0);
  for (int64_t k = 0; k < count; ++k) {
    const int64_t idx = b.indices[static_cast<size_t>(k)];
    if (img.height != H || img.width != W) img = Image2D(H, W);
    if (msk.height != H || msk.width != W) msk = Image2D(H, W);
    const auto [source, sample] = samples_[static_cast<size_t>(idx)];
    if (pairs && (tgt.height != H || tgt.width != W)) tgt = Image2D(H, W);
    (source == 0 ? *dataset_ : *extra_).read(sample, img.data.data(), msk.data.data(), pairs ? tgt.data.data() : nullptr);
    const uint64_t aug_seed = derive_seed(opt_.seed, {0x61756721ULL, static_cast<uint64_t>(b.epoch), static_cast<uint64_t>(idx)});
    if (opt_.augment && pairs) {
      // The same seed draws the same geometry: the target moves with the image.
      msk2 = msk;
      augment(tgt, msk2, opt_.augment_options, aug_seed);
    }
    if (opt_.labels) {
      (source == 0 ? *dataset_ : *extra_).read_labels(sample, lbl8.data());
      lbl = Image2D(H, W);
      std::copy(lbl8.begin(), lbl8.end(), lbl.data.begin());
      if (opt_.augment) {
        // As the mask of a copy of the image: nearest-neighbour, the same geometry.
        img2 = img;
        augment(img2, lbl, opt_.augment_options, aug_seed);
      }
    }
    if (opt_.augment) augment(img, msk, opt_.augment_options, aug_seed);
    RG_CHECK(img.height == out_h_ && img.width == out_w_, "loader: augmented sample is ", img.height, "x",
             img.width, ", expected ", out_h_, "x", out_w_);
    if (channels == 1) {
      std::memcpy(img_dst + k * out_hw, img.data.data(), out_hw * sizeof(float));
    } else {
      float* dst = img_dst + k * out_hw * static_cast<size_t>(channels);
      const SliceDataset& ds = source == 0 ? *dataset_ : *extra_;
      for (int64_t ch = 0; ch < channels; ++ch) {
        const int64_t q = ch / per_contrast, c = ch % per_contrast;  // contrast, slice offset + context
        const Image2D* plane = &img;
        if (q > 0 || c != opt_.context_slices) {
          side = Image2D(H, W);
          // The contrasts share the first file's grid: the same neighbour is the same sample.
          const int64_t at = c == opt_.context_slices ? sample : ds.neighbour(sample, static_cast<int>(c) - opt_.context_slices);
          (q == 0 ? ds : *contrasts_[static_cast<size_t>(q - 1)]).read(at, side.data.data(), nullptr);
          // The sample's seed: the geometry, gain, bias and noise the first channel got.
          if (opt_.augment) augment(side, no_mask, opt_.augment_options, aug_seed);
          plane = &side;
        }
        for (size_t p = 0; p < out_hw; ++p) dst[p * static_cast<size_t>(channels) + static_cast<size_t>(ch)] = plane->data[p];
      }
    }
    std::memcpy(msk_dst + k * out_hw, msk.data.data(), out_hw * sizeof(float));
    if (pairs) std::memcpy(tgt_dst + k * out_hw, tgt.data.data(), out_hw * sizeof(float));
    if (opt_.labels) std::memcpy(b.labels.data<float>() + k * out_hw, lbl.data.data(), out_hw * sizeof(float));
  }
  return b;
}

void Loader::worker_loop() {
  for (;;) {
    int64_t job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      work_cv_.wait(lock, [&] {
        const int64_t total = total_jobs();
        return stop_ || ((total < 0 || next_job_ < total) && next_job_ < consumed_ + opt_.prefetch);
      });
      if (stop_) return;
      job = next_job_++;
    }
    Result r;
    try {
      r.batch = build(job);
    } catch (...) {
      r.error = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      results_.emplace(job, std::move(r));
    }
    done_cv_.notify_all();
  }
}

std::optional<Batch> Loader::next() {
  const int64_t total = total_jobs();
  if (threads_.empty()) {  // synchronous mode
    if (total >= 0 && consumed_ >= total) return std::nullopt;
    return build(consumed_++);
  }
  Result r;
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (total >= 0 && consumed_ >= total) return std::nullopt;
    done_cv_.wait(lock, [&] { return stop_ || results_.count(consumed_) > 0; });
    if (stop_) return std::nullopt;
    auto it = results_.find(consumed_);
    r = std::move(it->second);
    results_.erase(it);
    ++consumed_;
  }
  work_cv_.notify_all();
  if (r.error) std::rethrow_exception(r.error);
  return std::move(r.batch);
}

}  // namespace rg::data
