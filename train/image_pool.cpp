#include "train/image_pool.h"

#include "engine/error.h"
#include "engine/ops/ops.h"

namespace rg::train {

ImagePool::ImagePool(int64_t size, Generator& gen) : size_(size), gen_(gen) {
  RG_CHECK(size >= 0, "image pool: size must be >= 0, got ", size);
}

Tensor ImagePool::query(const Tensor& images) {
  check_defined(images, "ImagePool::query", "images");
  RG_CHECK(images.dim() >= 1 && images.size(0) > 0, "ImagePool::query: expected a batch [N, ...], got ",
           shape_str(images.shape()));
  const Tensor batch = images.detach();
  if (size_ == 0) return batch;
  std::vector<Tensor> out;
  out.reserve(static_cast<size_t>(batch.size(0)));
  for (int64_t i = 0; i < batch.size(0); ++i) {
    Tensor image = batch.slice(0, i, i + 1).clone();
    if (!images_.empty()) {
      RG_CHECK(image.shape() == images_[0].shape() && image.dtype() == images_[0].dtype(),
               "ImagePool::query: image of shape ", shape_str(image.shape()),
               " does not match the stored ", shape_str(images_[0].shape()));
    }
    if (stored() < size_) {
      images_.push_back(image);
      out.push_back(image);
      continue;
    }
    const auto r = philox4x32(gen_.seed(), gen_.reserve(1));
    if (uint32_to_unit_float(r[0]) > 0.5f) {
      Tensor& slot = images_[static_cast<size_t>(r[1] % static_cast<uint32_t>(size_))];
      out.push_back(slot);
      slot = image;
    } else {
      out.push_back(image);
    }
  }
  return out.size() == 1 ? out[0] : concat(out, 0);
}

}  // namespace rg::train
