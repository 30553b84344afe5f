// Shape ops that copy data: concat (the U-Net skip connection, channels = dim -1 in NHWC).
#include "engine/ops/op_utils.h"
#include "engine/ops/ops.h"

namespace rg {

using namespace ops_detail;

namespace {

class ConcatBackward final : public Node {
 public:
  ConcatBackward(int64_t dim, std::vector<int64_t> sizes, std::vector<DType> dtypes)
      : Node("concat"), dim_(dim), sizes_(std::move(sizes)), dtypes_(std::move(dtypes)) {}
  std::vector<Tensor> backward(const Tensor& g) override {
    std::vector<Tensor> grads(sizes_.size());
    int64_t start = 0;
    for (size_t i = 0; i < sizes_.size(); ++i) {
      if (needs_input_grad(i)) {
        grads[i] = kernel_output(g.slice(dim_, start, start + sizes_[i]).contiguous(), dtypes_[i]);
      }
      start += sizes_[i];
    }
    return grads;
  }
  bool supports_double_backward() const override { return true; }  // slices and copies only

 private:
  int64_t dim_;
  std::vector<int64_t> sizes_;
  std::vector<DType> dtypes_;
};

}  // namespace

Tensor concat(const std::vector<Tensor>& tensors, int64_t dim) {
  RG_CHECK(!tensors.empty(), "concat: no tensors given");
  const Tensor& first = tensors[0];
  check_defined(first, "concat", "tensors[0]");
  const int64_t n = first.dim();
  const int64_t axis = dim < 0 ? dim + n : dim;
  RG_CHECK(axis >= 0 && axis < n, "concat: dim ", dim, " out of range for shape ",
           shape_str(first.shape()));
  Shape out_shape = first.shape();
  out_shape[axis] = 0;
  std::vector<int64_t> sizes;
  std::vector<DType> dtypes;
  DType out_dtype = first.dtype();
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    check_defined(t, "concat", "tensors[i]");
    check_same_device(first, t, "concat");
    // Mixed floating dtypes promote as in binary ops (bf16 image with an f32 mask -> f32).
    RG_CHECK(t.dtype() == first.dtype() || (is_floating(t.dtype()) && is_floating(first.dtype())),
             "concat: tensor ", i, " has dtype ", dtype_name(t.dtype()), ", tensor 0 has ",
             dtype_name(first.dtype()));
    if (t.dtype() != out_dtype) out_dtype = promote(out_dtype, t.dtype());
    dtypes.push_back(t.dtype());
    bool compatible = t.dim() == n;
    for (int64_t d = 0; compatible && d < n; ++d) {
      if (d != axis && t.size(d) != first.size(d)) compatible = false;
    }
    RG_CHECK(compatible, "concat along dim ", dim, ": shape ", shape_str(t.shape()), " of tensor ",
             i, " does not match ", shape_str(first.shape()), " of tensor 0");
    sizes.push_back(t.size(axis));
    out_shape[axis] += t.size(axis);
  }
  Tensor out = Tensor::empty(out_shape, out_dtype, first.device());
  int64_t start = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    Tensor window = out.slice(axis, start, start + sizes[i]);
    window.copy_(tensors[i].detach());
    start += sizes[i];
  }
  if (grad_mode_enabled()) {
    bool any = false;
    for (const Tensor& t : tensors) any = any || t.requires_grad();
    if (any) record(out, std::make_shared<ConcatBackward>(axis, sizes, dtypes), tensors);
  }
  return out;
}

namespace {

// Mirrors `x` by `pad` along `axis`: [x[pad], ..., x[1], x, x[n-2], ..., x[n-1-pad]]. One
// single-row slice per mirrored row (pad is small: 1 or 3 in a ResNet generator), one concat.
Tensor reflect_along(const Tensor& x, int64_t axis, int64_t pad) {
  const int64_t n = x.size(axis);
  std::vector<Tensor> parts;
  parts.reserve(static_cast<size_t>(2 * pad + 1));
  for (int64_t k = pad; k >= 1; --k) parts.push_back(x.slice(axis, k, k + 1));
  parts.push_back(x);
  for (int64_t k = 1; k <= pad; ++k) parts.push_back(x.slice(axis, n - 1 - k, n - k));
  return concat(parts, axis);
}

}  // namespace

Tensor reflection_pad2d(const Tensor& x, int64_t pad) {
  check_defined(x, "reflection_pad2d", "x");
  RG_CHECK(x.dim() == 4, "reflection_pad2d: expected an NHWC tensor [N,H,W,C], got ",
           shape_str(x.shape()));
  RG_CHECK(pad >= 0, "reflection_pad2d: pad must be >= 0, got ", pad);
  RG_CHECK(pad < x.size(1) && pad < x.size(2), "reflection_pad2d: pad ", pad,
           " must be smaller than height and width of ", shape_str(x.shape()));
  if (pad == 0) return x;
  return reflect_along(reflect_along(x, 1, pad), 2, pad);
}

}  // namespace rg
