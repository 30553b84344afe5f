// CycleGAN's image history (Shrivastava et al. 2017; the reference's ImagePool): the
// discriminator sees a mix of the newest generated images and ones generated earlier, which
// damps oscillation between G and D.
//
// query(images), per image of the batch in order:
//   pool not yet full  -> the image is stored and returned;
//   pool full          -> with probability 1/2 a uniformly chosen stored image is returned and
//                         the new image takes its place; otherwise the new image is returned
//                         and the pool is unchanged.
// A pool of size 0 returns its input. Draws come from a Philox Generator (one counter block per
// image once the pool is full), so a run is reproducible per seed. Stored images are detached
// copies on the input's device. The pool's contents are not checkpointed (as in the reference):
// a resumed run starts with an empty pool.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/rng.h"
#include "engine/tensor.h"

namespace rg::train {

class ImagePool {
 public:
  ImagePool(int64_t size, Generator& gen);
  // images [N, ...] -> [N, ...] (detached; same dtype and device).
  Tensor query(const Tensor& images);
  int64_t size() const { return size_; }
  int64_t stored() const { return static_cast<int64_t>(images_.size()); }

 private:
  int64_t size_;
  Generator& gen_;
  std::vector<Tensor> images_;  // each [1, ...]
};

}  // namespace rg::train
