#include "engine/tensor.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <iomanip>
#include <numeric>
#include <sstream>

#include "engine/allocator.h"
#include "engine/autograd.h"
#include "engine/core_backend.h"
#include "engine/dispatch.h"
#include "engine/tensor_impl.h"

namespace rg {

// ---------------------------------------------------------------- shapes

std::string shape_str(const Shape& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

Shape contiguous_strides(const Shape& shape) {
  Shape strides(shape.size());
  int64_t s = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    strides[i] = s;
    s *= std::max<int64_t>(shape[i], 1);
  }
  return strides;
}

static void check_shape(const Shape& shape, const char* what) {
  RG_CHECK(static_cast<int>(shape.size()) <= kMaxDims, what, ": shape ", shape_str(shape),
           " has more than ", kMaxDims, " dimensions");
  for (int64_t d : shape) {
    RG_CHECK(d >= 0, what, ": negative dimension in shape ", shape_str(shape));
  }
}

// ---------------------------------------------------------------- storage

Storage::Storage(size_t bytes, Device device) : Storage(bytes, device, allocator_for(device)) {}

Storage::Storage(size_t bytes, Device device, Allocator& allocator)
    : bytes_(bytes), device_(device), allocator_(&allocator) {
  data_ = allocator_->allocate(bytes);
}

Storage::~Storage() { allocator_->deallocate(data_, bytes_); }

// ---------------------------------------------------------------- strided copy with conversion

namespace {

// Visits every element of a (≤5-D) shape, giving the element offsets in two strided layouts.
// Parallel over the two outermost padded dimensions.
template <typename F>
void for_each_offset(const Shape& shape, const Shape& a_strides, const Shape& b_strides, F&& f) {
  int64_t sh[kMaxDims], as[kMaxDims], bs[kMaxDims];
  const int pad = kMaxDims - static_cast<int>(shape.size());
  for (int i = 0; i < kMaxDims; ++i) {
    const bool real = i >= pad;
    sh[i] = real ? shape[i - pad] : 1;
    as[i] = real ? a_strides[i - pad] : 0;
    bs[i] = real ? b_strides[i - pad] : 0;
  }
  const int64_t outer = sh[0] * sh[1];
  const int64_t total = outer * sh[2] * sh[3] * sh[4];
#pragma omp parallel for schedule(static) if (total > 32768)
  for (int64_t o = 0; o < outer; ++o) {
    const int64_t i0 = o / sh[1], i1 = o % sh[1];
    for (int64_t i2 = 0; i2 < sh[2]; ++i2) {
      for (int64_t i3 = 0; i3 < sh[3]; ++i3) {
        int64_t a = i0 * as[0] + i1 * as[1] + i2 * as[2] + i3 * as[3];
        int64_t b = i0 * bs[0] + i1 * bs[1] + i2 * bs[2] + i3 * bs[3];
        for (int64_t i4 = 0; i4 < sh[4]; ++i4, a += as[4], b += bs[4]) f(a, b);
      }
    }
  }
}

void copy_cpu(const TensorImpl& dst, const TensorImpl& src) {
  dispatch_dtype(dst.dtype, [&](auto dtag) {
    using D = decltype(dtag);
    dispatch_dtype(src.dtype, [&](auto stag) {
      using S = decltype(stag);
      D* d = static_cast<D*>(dst.storage->data()) + dst.offset;
      const S* s = static_cast<const S*>(src.storage->data()) + src.offset;
      if constexpr (std::is_same_v<D, S>) {
        const bool both_contiguous = dst.strides == contiguous_strides(dst.shape) &&
                                     src.strides == contiguous_strides(src.shape);
        if (both_contiguous) {
          // Large copies (clones of activations) split over the threads: one core's memcpy
          // does not reach the memory bandwidth, and a lone copier leaves its partner waiting.
          const int64_t bytes = shape_numel(dst.shape) * static_cast<int64_t>(sizeof(D));
          constexpr int64_t kPiece = int64_t{1} << 18;
          const int64_t pieces = (bytes + kPiece - 1) / kPiece;
          auto* db = reinterpret_cast<char*>(d);
          const auto* sb = reinterpret_cast<const char*>(s);
#pragma omp parallel for schedule(static) if (pieces > 4)
          for (int64_t p = 0; p < pieces; ++p) {
            std::memcpy(db + p * kPiece, sb + p * kPiece, static_cast<size_t>(std::min(kPiece, bytes - p * kPiece)));
          }
          return;
        }
        if (!dst.shape.empty() && dst.strides.back() == 1 && src.strides.back() == 1) {
          // Rows contiguous on both sides (a channel window of an NHWC concat): one memcpy per
          // row instead of an element loop.
          const int64_t row = dst.shape.back();
          Shape rows_shape = dst.shape;
          rows_shape.back() = 1;
          for_each_offset(rows_shape, dst.strides, src.strides, [&](int64_t a, int64_t b) {
            std::memcpy(d + a, s + b, static_cast<size_t>(row) * sizeof(D));
          });
          return;
        }
        for_each_offset(dst.shape, dst.strides, src.strides,
                        [&](int64_t a, int64_t b) { d[a] = s[b]; });
      } else {
        for_each_offset(dst.shape, dst.strides, src.strides,
                        [&](int64_t a, int64_t b) { d[a] = from_double<D>(to_double(s[b])); });
      }
    });
  });
}

std::shared_ptr<TensorImpl> new_impl(const Shape& shape, DType dtype, Device device,
                                     Allocator& allocator) {
  check_shape(shape, "Tensor::empty");
  auto impl = std::make_shared<TensorImpl>();
  impl->storage =
      std::make_shared<Storage>(shape_numel(shape) * dtype_size(dtype), device, allocator);
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return impl;
}

}  // namespace

// ---------------------------------------------------------------- creation

Tensor Tensor::make_view(std::shared_ptr<Storage> storage, int64_t offset, const Shape& shape,
                         const Shape& strides, DType dtype) {
  Tensor t;
  t.impl_ = std::make_shared<TensorImpl>();
  t.impl_->storage = std::move(storage);
  t.impl_->offset = offset;
  t.impl_->shape = shape;
  t.impl_->strides = strides;
  t.impl_->dtype = dtype;
  return t;
}

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  Tensor t;
  t.impl_ = new_impl(shape, dtype, device, allocator_for(device));
  return t;
}

Tensor Tensor::empty_pinned(const Shape& shape, DType dtype) {
  Tensor t;
  t.impl_ = new_impl(shape, dtype, Device::cpu(), pinned_host_allocator());
  return t;
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  return full(shape, 0.0, dtype, device);
}

Tensor Tensor::ones(const Shape& shape, DType dtype, Device device) {
  return full(shape, 1.0, dtype, device);
}

Tensor Tensor::full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.fill_(value);
  return t;
}

Tensor Tensor::scalar(double value, DType dtype, Device device) {
  return full({}, value, dtype, device);
}

template <typename V>
static Tensor from_host_values(const std::vector<V>& values, const Shape& shape, DType dtype,
                               Device device) {
  check_shape(shape, "Tensor::from_vector");
  RG_CHECK(static_cast<int64_t>(values.size()) == shape_numel(shape), "Tensor::from_vector: ",
           values.size(), " values do not fill shape ", shape_str(shape));
  Tensor host = Tensor::empty(shape, dtype_of<V>());
  if (!values.empty()) std::memcpy(host.raw_data(), values.data(), values.size() * sizeof(V));
  if (dtype != dtype_of<V>()) host = host.to(dtype);
  return device.is_cpu() ? host : host.to(device);
}

Tensor Tensor::from_vector(const std::vector<float>& values, const Shape& shape, DType dtype,
                           Device device) {
  return from_host_values(values, shape, dtype, device);
}

Tensor Tensor::from_vector(const std::vector<double>& values, const Shape& shape, DType dtype,
                           Device device) {
  return from_host_values(values, shape, dtype, device);
}

// ---------------------------------------------------------------- properties

#define RG_REQUIRE_DEFINED(what) RG_CHECK(impl_ != nullptr, what, " on an undefined tensor")

const Shape& Tensor::shape() const {
  RG_REQUIRE_DEFINED("Tensor::shape");
  return impl_->shape;
}
const Shape& Tensor::strides() const {
  RG_REQUIRE_DEFINED("Tensor::strides");
  return impl_->strides;
}
int64_t Tensor::size(int64_t d) const {
  const int64_t n = dim();
  const int64_t i = d < 0 ? d + n : d;
  RG_CHECK(i >= 0 && i < n, "Tensor::size(", d, ") out of range for shape ", shape_str(shape()));
  return impl_->shape[i];
}
int64_t Tensor::numel() const { return shape_numel(shape()); }
int64_t Tensor::offset() const {
  RG_REQUIRE_DEFINED("Tensor::offset");
  return impl_->offset;
}
DType Tensor::dtype() const {
  RG_REQUIRE_DEFINED("Tensor::dtype");
  return impl_->dtype;
}
Device Tensor::device() const {
  RG_REQUIRE_DEFINED("Tensor::device");
  return impl_->storage->device();
}
const std::shared_ptr<Storage>& Tensor::storage() const {
  RG_REQUIRE_DEFINED("Tensor::storage");
  return impl_->storage;
}
bool Tensor::is_contiguous() const {
  RG_REQUIRE_DEFINED("Tensor::is_contiguous");
  // Dimensions of size 1 may carry any stride.
  int64_t expected = 1;
  for (size_t i = impl_->shape.size(); i-- > 0;) {
    if (impl_->shape[i] == 1) continue;
    if (impl_->strides[i] != expected) return false;
    expected *= impl_->shape[i];
  }
  return true;
}
void* Tensor::raw_data() const {
  RG_REQUIRE_DEFINED("Tensor::raw_data");
  return static_cast<char*>(impl_->storage->data()) + impl_->offset * dtype_size(impl_->dtype);
}

namespace {
std::atomic<int64_t> g_host_reads{0};
}  // namespace

int64_t host_read_count() { return g_host_reads.load(std::memory_order_relaxed); }

double Tensor::item() const {
  RG_CHECK(numel() == 1, "Tensor::item: tensor of shape ", shape_str(shape()),
           " has ", numel(), " elements, expected 1");
  return to_vector<double>()[0];
}

template <typename T>
std::vector<T> Tensor::to_vector() const {
  RG_REQUIRE_DEFINED("Tensor::to_vector");
  if (device().is_cpu()) g_host_reads.fetch_add(1, std::memory_order_relaxed);  // to() counts the rest
  Tensor host = device().is_cpu() ? *this : to(Device::cpu());
  Tensor typed = Tensor::empty(host.shape(), dtype_of<T>());
  copy_cpu(*typed.impl_, *host.impl_);
  const T* p = typed.data<T>();
  return std::vector<T>(p, p + typed.numel());
}
template std::vector<float> Tensor::to_vector<float>() const;
template std::vector<double> Tensor::to_vector<double>() const;
template std::vector<int32_t> Tensor::to_vector<int32_t>() const;
template std::vector<uint8_t> Tensor::to_vector<uint8_t>() const;

// ---------------------------------------------------------------- in-place fills and copies

void Tensor::fill_(double value) {
  RG_REQUIRE_DEFINED("Tensor::fill_");
  if (device().is_cpu()) {
    dispatch_dtype(dtype(), [&](auto tag) {
      using T = decltype(tag);
      const T v = from_double<T>(value);
      T* p = static_cast<T*>(impl_->storage->data()) + impl_->offset;
      for_each_offset(impl_->shape, impl_->strides, impl_->strides,
                      [&](int64_t a, int64_t) { p[a] = v; });
    });
    return;
  }
  if constexpr (core_backend::kCudaBuild) core_backend::cuda_fill(*this, value);
}

void Tensor::copy_(const Tensor& src) {
  RG_REQUIRE_DEFINED("Tensor::copy_");
  check_defined(src, "Tensor::copy_", "src");
  RG_CHECK(shape() == src.shape(), "Tensor::copy_: destination shape ", shape_str(shape()),
           " differs from source shape ", shape_str(src.shape()));
  if (device().is_cpu() && src.device().is_cpu()) {
    copy_cpu(*impl_, *src.impl_);
    return;
  }
  if constexpr (core_backend::kCudaBuild) {
    if (device() == src.device()) {  // on one GPU: the strided, converting copy kernel
      core_backend::cuda_copy(*this, src);
      return;
    }
    // Across devices: make the source contiguous with the destination's dtype on its own
    // device, move the bytes, then place them (a strided destination goes through a
    // temporary on its device).
    Tensor staged = src;
    if (!src.is_contiguous() || src.dtype() != dtype()) {
      staged = Tensor::empty(shape(), dtype(), src.device());
      staged.copy_(src);
    }
    if (is_contiguous()) {
      copy_bytes(raw_data(), device(), staged.raw_data(), staged.device(), nbytes());
    } else {
      Tensor tmp = Tensor::empty(shape(), dtype(), device());
      copy_bytes(tmp.raw_data(), tmp.device(), staged.raw_data(), staged.device(), nbytes());
      copy_(tmp);
    }
  }
}

// ---------------------------------------------------------------- differentiable views and copies

namespace {

class ReshapeBackward final : public Node {
 public:
  explicit ReshapeBackward(Shape input_shape)
      : Node("reshape"), input_shape_(std::move(input_shape)) {}
  std::vector<Tensor> backward(const Tensor& g) override { return {g.reshape(input_shape_)}; }
  bool supports_double_backward() const override { return true; }

 private:
  Shape input_shape_;
};

class PermuteBackward final : public Node {
 public:
  explicit PermuteBackward(std::vector<int64_t> dims) : Node("permute"), dims_(std::move(dims)) {}
  std::vector<Tensor> backward(const Tensor& g) override {
    std::vector<int64_t> inverse(dims_.size());
    for (size_t i = 0; i < dims_.size(); ++i) inverse[dims_[i]] = static_cast<int64_t>(i);
    return {g.permute(inverse)};
  }
  bool supports_double_backward() const override { return true; }

 private:
  std::vector<int64_t> dims_;
};

// The backward of slice scatters the gradient into zeros, which copy_ does unrecorded; when
// that backward is recorded (create_graph), this node is its grad_fn. Its own backward is the
// slice again.
class SliceScatterBackward final : public Node {
 public:
  SliceScatterBackward(int64_t dim, int64_t start, int64_t end, int64_t step)
      : Node("slice_backward"), dim_(dim), start_(start), end_(end), step_(step) {}
  std::vector<Tensor> backward(const Tensor& g) override {
    return {g.slice(dim_, start_, end_, step_)};
  }
  bool supports_double_backward() const override { return true; }

 private:
  int64_t dim_, start_, end_, step_;
};

class SliceBackward final : public Node {
 public:
  SliceBackward(Shape input_shape, int64_t dim, int64_t start, int64_t end, int64_t step)
      : Node("slice"), input_shape_(std::move(input_shape)), dim_(dim), start_(start), end_(end),
        step_(step) {}
  std::vector<Tensor> backward(const Tensor& g) override {
    Tensor gx;
    {
      NoGradGuard no_grad;
      gx = Tensor::zeros(input_shape_, g.dtype(), g.device());
      Tensor window = gx.slice(dim_, start_, end_, step_);
      window.copy_(g);
    }
    if (any_requires_grad({&g})) {
      record(gx, std::make_shared<SliceScatterBackward>(dim_, start_, end_, step_), {&g});
    }
    return {gx};
  }
  bool supports_double_backward() const override { return true; }

 private:
  Shape input_shape_;
  int64_t dim_, start_, end_, step_;
};

class CopyBackward final : public Node {  // clone / contiguous / dtype or device change
 public:
  CopyBackward(DType dtype, Device device) : Node("copy"), dtype_(dtype), device_(device) {}
  std::vector<Tensor> backward(const Tensor& g) override {
    Tensor out = g;
    if (out.device() != device_) out = out.to(device_);
    if (out.dtype() != dtype_) out = out.to(dtype_);
    return {out};
  }
  bool supports_double_backward() const override { return true; }

 private:
  DType dtype_;
  Device device_;
};

}  // namespace

Tensor Tensor::reshape(const Shape& new_shape_in) const {
  RG_REQUIRE_DEFINED("Tensor::reshape");
  Shape new_shape = new_shape_in;
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < new_shape.size(); ++i) {
    if (new_shape[i] == -1) {
      RG_CHECK(infer < 0, "reshape: more than one -1 in ", shape_str(new_shape_in));
      infer = static_cast<int64_t>(i);
    } else {
      known *= new_shape[i];
    }
  }
  if (infer >= 0) {
    RG_CHECK(known > 0 && numel() % known == 0, "reshape: cannot reshape ", shape_str(shape()),
             " into ", shape_str(new_shape_in));
    new_shape[infer] = numel() / known;
  }
  check_shape(new_shape, "reshape");
  RG_CHECK(shape_numel(new_shape) == numel(), "reshape: cannot reshape ", shape_str(shape()),
           " (", numel(), " elements) into ", shape_str(new_shape_in));
  Tensor out;
  {
    NoGradGuard no_grad;  // the copy below must not record its own node
    Tensor base = is_contiguous() ? *this : contiguous().detach();
    out = make_view(base.impl_->storage, base.impl_->offset, new_shape,
                    contiguous_strides(new_shape), dtype());
  }
  if (any_requires_grad({this})) record(out, std::make_shared<ReshapeBackward>(shape()), {this});
  return out;
}

Tensor Tensor::permute(const std::vector<int64_t>& dims) const {
  RG_REQUIRE_DEFINED("Tensor::permute");
  const int64_t n = dim();
  RG_CHECK(static_cast<int64_t>(dims.size()) == n, "permute: ", dims.size(),
           " dims given for a tensor of shape ", shape_str(shape()));
  std::vector<bool> seen(n, false);
  Shape new_shape(n), new_strides(n);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t d = dims[i];
    RG_CHECK(d >= 0 && d < n && !seen[d], "permute: invalid permutation for shape ",
             shape_str(shape()));
    seen[d] = true;
    new_shape[i] = impl_->shape[d];
    new_strides[i] = impl_->strides[d];
  }
  Tensor out = make_view(impl_->storage, impl_->offset, new_shape, new_strides, dtype());
  if (any_requires_grad({this})) record(out, std::make_shared<PermuteBackward>(dims), {this});
  return out;
}

Tensor Tensor::slice(int64_t d, int64_t start, int64_t end, int64_t step) const {
  RG_REQUIRE_DEFINED("Tensor::slice");
  const int64_t n = dim();
  const int64_t axis = d < 0 ? d + n : d;
  RG_CHECK(axis >= 0 && axis < n, "slice: dim ", d, " out of range for shape ", shape_str(shape()));
  RG_CHECK(step > 0, "slice: step must be positive, got ", step);
  const int64_t len = impl_->shape[axis];
  if (start < 0) start += len;
  if (end < 0) end += len;
  start = std::clamp<int64_t>(start, 0, len);
  end = std::clamp<int64_t>(end, start, len);
  Shape new_shape = impl_->shape, new_strides = impl_->strides;
  new_shape[axis] = (end - start + step - 1) / step;
  new_strides[axis] = impl_->strides[axis] * step;
  Tensor out = make_view(impl_->storage, impl_->offset + start * impl_->strides[axis], new_shape,
                         new_strides, dtype());
  if (any_requires_grad({this})) {
    record(out, std::make_shared<SliceBackward>(shape(), axis, start, end, step), {this});
  }
  return out;
}

Tensor Tensor::contiguous() const {
  RG_REQUIRE_DEFINED("Tensor::contiguous");
  return is_contiguous() ? *this : clone();
}

Tensor Tensor::clone() const {
  RG_REQUIRE_DEFINED("Tensor::clone");
  Tensor out = empty(shape(), dtype(), device());
  out.copy_(*this);
  if (any_requires_grad({this})) {
    record(out, std::make_shared<CopyBackward>(dtype(), device()), {this});
  }
  return out;
}

Tensor Tensor::to(Device target) const {
  RG_REQUIRE_DEFINED("Tensor::to");
  if (target == device()) return *this;
  if (target.is_cpu()) g_host_reads.fetch_add(1, std::memory_order_relaxed);
  Tensor out = empty(shape(), dtype(), target);
  out.copy_(*this);
  if (any_requires_grad({this})) {
    record(out, std::make_shared<CopyBackward>(dtype(), device()), {this});
  }
  return out;
}

Tensor Tensor::to(DType target) const {
  RG_REQUIRE_DEFINED("Tensor::to");
  if (target == dtype()) return *this;
  Tensor out = empty(shape(), target, device());
  out.copy_(*this);
  if (any_requires_grad({this})) {
    RG_CHECK(is_floating(target), "Tensor::to(", dtype_name(target),
             "): cannot differentiate through a conversion to an integer type");
    record(out, std::make_shared<CopyBackward>(dtype(), device()), {this});
  }
  return out;
}

// ---------------------------------------------------------------- autograd accessors

bool Tensor::requires_grad() const {
  return impl_ != nullptr && (impl_->requires_grad || impl_->grad_fn != nullptr);
}

Tensor& Tensor::set_requires_grad(bool requires_grad) {
  RG_REQUIRE_DEFINED("Tensor::set_requires_grad");
  RG_CHECK(impl_->grad_fn == nullptr,
           "set_requires_grad: only leaf tensors can change requires_grad (this one was produced by ",
           impl_->grad_fn->name(), "); use detach()");
  RG_CHECK(!requires_grad || is_floating(dtype()),
           "set_requires_grad: only floating tensors can require grad, not ", dtype_name(dtype()));
  impl_->requires_grad = requires_grad;
  return *this;
}

bool Tensor::is_leaf() const { return impl_ != nullptr && impl_->grad_fn == nullptr; }

Tensor Tensor::grad() const {
  RG_REQUIRE_DEFINED("Tensor::grad");
  Tensor g;
  g.impl_ = impl_->grad;
  return g;
}

void Tensor::set_grad(const Tensor& grad) {
  RG_REQUIRE_DEFINED("Tensor::set_grad");
  if (grad.defined()) {
    RG_CHECK(grad.shape() == shape(), "set_grad: gradient shape ", shape_str(grad.shape()),
             " differs from tensor shape ", shape_str(shape()));
  }
  impl_->grad = grad.impl_;
}

void Tensor::zero_grad() {
  RG_REQUIRE_DEFINED("Tensor::zero_grad");
  impl_->grad.reset();
}

void Tensor::add_post_accumulate_hook(std::function<void(const Tensor&)> fn) {
  RG_REQUIRE_DEFINED("Tensor::add_post_accumulate_hook");
  RG_CHECK(is_leaf(), "add_post_accumulate_hook: only leaf tensors accumulate gradients");
  impl_->post_accumulate_hooks.push_back(std::move(fn));
}

void Tensor::clear_post_accumulate_hooks() {
  RG_REQUIRE_DEFINED("Tensor::clear_post_accumulate_hooks");
  impl_->post_accumulate_hooks.clear();
}

void Tensor::backward(const Tensor& grad) const {
  RG_REQUIRE_DEFINED("Tensor::backward");
  run_backward(*this, grad);
}

Tensor Tensor::detach() const {
  RG_REQUIRE_DEFINED("Tensor::detach");
  return make_view(impl_->storage, impl_->offset, impl_->shape, impl_->strides, impl_->dtype);
}

const std::shared_ptr<Node>& Tensor::grad_fn() const {
  RG_REQUIRE_DEFINED("Tensor::grad_fn");
  return impl_->grad_fn;
}

void Tensor::set_grad_fn(std::shared_ptr<Node> fn) {
  RG_REQUIRE_DEFINED("Tensor::set_grad_fn");
  impl_->grad_fn = std::move(fn);
}

// ---------------------------------------------------------------- printing

namespace {

void format_values(std::ostringstream& os, const std::vector<double>& v, const Shape& shape,
                   size_t dim, int64_t base, int64_t max_per_dim, int indent) {
  if (shape.empty()) {
    os << v[0];
    return;
  }
  const Shape strides = contiguous_strides(shape);
  const int64_t n = shape[dim];
  os << "[";
  for (int64_t i = 0; i < n; ++i) {
    if (n > max_per_dim && i == max_per_dim / 2) {
      os << "...";
      i = n - max_per_dim / 2 - 1;
      if (dim + 1 < shape.size()) os << ",\n" << std::string(indent + 1, ' ');
      else os << ", ";
      continue;
    }
    if (dim + 1 == shape.size()) {
      os << std::setw(10) << v[base + i * strides[dim]];
    } else {
      format_values(os, v, shape, dim + 1, base + i * strides[dim], max_per_dim, indent + 1);
    }
    if (i + 1 < n) {
      if (dim + 1 < shape.size()) os << ",\n" << std::string(indent + 1, ' ');
      else os << ", ";
    }
  }
  os << "]";
}

}  // namespace

std::string Tensor::str(int64_t max_per_dim) const {
  if (!defined()) return "Tensor(undefined)";
  std::ostringstream os;
  os << "Tensor(shape=" << shape_str(shape()) << ", dtype=" << dtype_name(dtype())
     << ", device=" << device().str();
  if (requires_grad()) os << ", requires_grad";
  if (grad_fn()) os << ", grad_fn=" << grad_fn()->name();
  os << ")\n";
  os << std::setprecision(5);
  format_values(os, to_vector<double>(), shape(), 0, 0, std::max<int64_t>(max_per_dim, 2), 0);
  return os.str();
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) { return os << t.str(); }

void check_defined(const Tensor& t, const char* op, const char* arg) {
  RG_CHECK(t.defined(), op, ": argument '", arg, "' is an undefined tensor");
}

void check_same_device(const Tensor& a, const Tensor& b, const char* op) {
  RG_CHECK(a.device() == b.device(), op, ": tensors on different devices (", a.device().str(),
           " with shape ", shape_str(a.shape()), " and ", b.device().str(), " with shape ",
           shape_str(b.shape()), ")");
}

}  // namespace rg
