// Sum and mean over all elements or over a set of dimensions (accumulated in double).
#include <algorithm>

#include "engine/cuda/ops_cuda.h"
#include "engine/dispatch.h"
#include "engine/ops/op_utils.h"
#include "engine/ops/ops.h"
#include "kernels/elementwise.h"

namespace rg {

using namespace ops_detail;
namespace k = kernels;

namespace {

std::vector<bool> reduced_mask(const Tensor& x, const std::vector<int64_t>& dims, const char* op) {
  const int64_t n = x.dim();
  std::vector<bool> reduced(n, false);
  for (int64_t d : dims) {
    const int64_t axis = d < 0 ? d + n : d;
    RG_CHECK(axis >= 0 && axis < n, op, ": dim ", d, " out of range for shape ", shape_str(x.shape()));
    RG_CHECK(!reduced[axis], op, ": dim ", d, " given twice");
    reduced[axis] = true;
  }
  return reduced;
}

// Sums over the masked dimensions; result has the kept dimensions (size 1 where reduced).
Tensor sum_kept(const Tensor& x, const std::vector<bool>& reduced, const char* op) {
  const DType cdt = compute_dtype(x.dtype(), x.device(), op);
  Shape kept_shape = x.shape();
  int64_t kept = 1, red = 1;
  for (size_t i = 0; i < reduced.size(); ++i) {
    if (reduced[i]) {
      red *= kept_shape[i];
      kept_shape[i] = 1;
    } else {
      kept *= kept_shape[i];
    }
  }
  // Leading reduced dims with trailing kept dims (e.g. NHWC -> C): sum down columns.
  // Trailing reduced dims (e.g. per-sample sums): sum along rows. Otherwise permute the
  // reduced dims to the back first.
  const auto first_kept = std::find(reduced.begin(), reduced.end(), false);
  const bool leading = std::all_of(first_kept, reduced.end(), [](bool r) { return !r; });
  const auto first_red = std::find(reduced.begin(), reduced.end(), true);
  const bool trailing = std::all_of(first_red, reduced.end(), [](bool r) { return r; });
  Tensor src = kernel_input(x, cdt);
  bool by_columns = leading;
  if (!leading && !trailing) {
    std::vector<int64_t> order;
    for (size_t i = 0; i < reduced.size(); ++i) if (!reduced[i]) order.push_back(i);
    for (size_t i = 0; i < reduced.size(); ++i) if (reduced[i]) order.push_back(i);
    src = src.permute(order).contiguous();
    by_columns = false;
  }
  if (on_cuda(x)) {
    // The CUDA reductions accumulate and write in fp32 whatever the input dtype.
    Tensor out = Tensor::empty(kept_shape, DType::F32, x.device());
    if constexpr (kCudaBuild) {
      if (by_columns) {
        cuda_ops::sum_columns(red, kept, src, out);
      } else {
        cuda_ops::sum_rows(kept, red, src, out);
      }
    }
    return kernel_output(out, x.dtype());
  }
  Tensor out = Tensor::empty(kept_shape, cdt);
  dispatch_compute(cdt, op, [&](auto tag) {
    using T = decltype(tag);
    if (by_columns) {
      k::cpu::sum_columns<T>(red, kept, src.data<T>(), out.data<T>());
    } else {
      k::cpu::sum_rows<T>(kept, red, src.data<T>(), out.data<T>());
    }
  });
  return kernel_output(out, x.dtype());
}

class SumBackward final : public Node {
 public:
  SumBackward(Shape input_shape, Shape kept_shape, double scale)
      : Node("sum"), input_shape_(std::move(input_shape)), kept_shape_(std::move(kept_shape)),
        scale_(scale) {}
  std::vector<Tensor> backward(const Tensor& g) override {
    // Broadcast the (kept-dims) gradient back over the reduced dimensions.
    Tensor gk = g.reshape(kept_shape_);
    Tensor ones =
        Tensor::ones(input_shape_, compute_dtype(g.dtype(), g.device(), "sum"), g.device());
    Tensor out = mul(ones, gk);
    if (scale_ != 1.0) out = mul(out, scale_);
    return {kernel_output(out, g.dtype())};
  }
  bool supports_double_backward() const override { return true; }  // reshape and mul only

 private:
  Shape input_shape_, kept_shape_;
  double scale_;
};

Tensor reduce(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim, bool all, bool mean_,
              const char* op) {
  check_defined(x, op, "x");
  require_floating(x, op, "x");
  std::vector<bool> reduced = all ? std::vector<bool>(x.dim(), true) : reduced_mask(x, dims, op);
  int64_t count = 1;
  Shape out_shape;
  for (int64_t i = 0; i < x.dim(); ++i) {
    if (reduced[i]) {
      count *= x.size(i);
      if (keepdim) out_shape.push_back(1);
    } else {
      out_shape.push_back(x.size(i));
    }
  }
  if (all && !keepdim) out_shape = {};
  Tensor kept;
  Shape kept_shape;
  {
    NoGradGuard no_grad;
    kept = sum_kept(x, reduced, op);
    kept_shape = kept.shape();
    if (mean_) {
      RG_CHECK(count > 0, op, ": mean of an empty tensor of shape ", shape_str(x.shape()));
      kept = mul(kept, 1.0 / static_cast<double>(count));
    }
  }
  Tensor out = kept.reshape(out_shape);
  if (any_requires_grad({&x})) {
    const double scale = mean_ ? 1.0 / static_cast<double>(count) : 1.0;
    record(out, std::make_shared<SumBackward>(x.shape(), kept_shape, scale), {&x});
  }
  return out;
}

}  // namespace

Tensor sum(const Tensor& x) { return reduce(x, {}, false, true, false, "sum"); }
Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  return reduce(x, dims, keepdim, false, false, "sum");
}
Tensor mean(const Tensor& x) { return reduce(x, {}, false, true, true, "mean"); }
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  return reduce(x, dims, keepdim, false, true, "mean");
}

Tensor sum_to_shape(const Tensor& x, const Shape& shape) {
  if (x.shape() == shape) return x;
  const int64_t lead = x.dim() - static_cast<int64_t>(shape.size());
  RG_CHECK(lead >= 0, "sum_to_shape: cannot sum ", shape_str(x.shape()), " to ", shape_str(shape));
  std::vector<int64_t> dims;
  for (int64_t i = 0; i < x.dim(); ++i) {
    if (i < lead) {
      dims.push_back(i);
    } else if (shape[i - lead] == 1 && x.size(i) != 1) {
      dims.push_back(i);
    } else {
      RG_CHECK(shape[i - lead] == x.size(i), "sum_to_shape: cannot sum ", shape_str(x.shape()),
               " to ", shape_str(shape));
    }
  }
  if (dims.empty()) return x.reshape(shape);
  return sum(x, dims, true).reshape(shape);
}

}  // namespace rg
