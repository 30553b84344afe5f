// The state behind a Tensor handle. Internal to the engine: code outside engine/ uses Tensor.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "engine/tensor.h"

namespace rg {

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  int64_t offset = 0;  // elements
  Shape shape;
  Shape strides;  // elements
  DType dtype = DType::F32;

  // Autograd: leaves carry requires_grad and accumulate into grad; results of recorded ops
  // carry the node that produced them.
  bool requires_grad = false;
  std::shared_ptr<TensorImpl> grad;
  std::shared_ptr<Node> grad_fn;
  // Called after each gradient accumulation into this leaf (data-parallel gradient buckets).
  std::vector<std::function<void(const Tensor&)>> post_accumulate_hooks;
};

}  // namespace rg
