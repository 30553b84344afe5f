// Tensor: a typed, strided view of device memory, plus the autograd state of that value.
// Copying a Tensor copies a handle (like a shared_ptr); clone() copies the data.
//
// Layout conventions (docs/design.md says why): activations are NHWC (channels innermost),
// conv weights OHWI. Shapes have at most kMaxDims dimensions (3-D volumes: NDHWC).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "engine/device.h"
#include "engine/dtype.h"
#include "engine/error.h"

namespace rg {

using Shape = std::vector<int64_t>;
constexpr int kMaxDims = 5;
std::string shape_str(const Shape& shape);

// How many times tensor values were read back to the host since the process started: item(),
// to_vector() and copies from a GPU to the CPU. On a GPU each such read waits for the device, so
// a training step must have none until it logs (tests count them around a step).
int64_t host_read_count();
int64_t shape_numel(const Shape& shape);
Shape contiguous_strides(const Shape& shape);

// A block of memory on one device, returned to its allocator when the last view drops it.
class Allocator;

class Storage {
 public:
  Storage(size_t bytes, Device device);  // from the device's allocator
  Storage(size_t bytes, Device device, Allocator& allocator);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  Device device() const { return device_; }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
  Device device_;
  Allocator* allocator_;
};

class Node;
struct TensorImpl;

class Tensor {
 public:
  Tensor() = default;  // undefined: defined() == false

  // ---- creation
  static Tensor empty(const Shape& shape, DType dtype = DType::F32, Device device = Device::cpu());
  // A CPU tensor in page-locked memory when a CUDA device is present (for batches that are
  // uploaded every step), ordinary host memory otherwise.
  static Tensor empty_pinned(const Shape& shape, DType dtype = DType::F32);
  static Tensor zeros(const Shape& shape, DType dtype = DType::F32, Device device = Device::cpu());
  static Tensor ones(const Shape& shape, DType dtype = DType::F32, Device device = Device::cpu());
  static Tensor full(const Shape& shape, double value, DType dtype = DType::F32,
                     Device device = Device::cpu());
  static Tensor scalar(double value, DType dtype = DType::F32, Device device = Device::cpu());
  // Copies host values into a new tensor of the given shape, converted to dtype, on device.
  static Tensor from_vector(const std::vector<float>& values, const Shape& shape,
                            DType dtype = DType::F32, Device device = Device::cpu());
  static Tensor from_vector(const std::vector<double>& values, const Shape& shape,
                            DType dtype = DType::F64, Device device = Device::cpu());

  // ---- properties
  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const;
  const Shape& strides() const;
  int64_t dim() const { return static_cast<int64_t>(shape().size()); }
  // size(-1) is the last dimension.
  int64_t size(int64_t d) const;
  int64_t numel() const;
  int64_t offset() const;  // in elements, into the storage
  DType dtype() const;
  Device device() const;
  bool is_contiguous() const;
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype()); }
  const std::shared_ptr<Storage>& storage() const;

  // Pointer to the first element. data<T>() checks that T matches dtype().
  void* raw_data() const;
  template <typename T>
  T* data() const {
    RG_CHECK(dtype() == dtype_of<T>(), "Tensor::data<", dtype_name(dtype_of<T>()),
             ">() called on a ", dtype_name(dtype()), " tensor of shape ", shape_str(shape()));
    return static_cast<T*>(raw_data());
  }
  // The value of a one-element tensor, as double (copies from the device if needed).
  double item() const;
  // All values, converted to T, in logical (row-major) order; copies from the device if needed.
  template <typename T>
  std::vector<T> to_vector() const;

  // ---- views (share storage; differentiable)
  Tensor reshape(const Shape& shape) const;  // one dimension may be -1; copies if not viewable
  Tensor permute(const std::vector<int64_t>& dims) const;
  Tensor slice(int64_t dim, int64_t start, int64_t end, int64_t step = 1) const;
  Tensor flatten() const { return reshape({-1}); }

  // ---- copies
  Tensor contiguous() const;  // self if already contiguous
  Tensor clone() const;       // always a new contiguous copy (differentiable)
  Tensor to(Device device) const;
  Tensor to(DType dtype) const;  // differentiable between floating types
  // Copies src's values into this tensor (same shape; any dtype/device). Not recorded by autograd.
  void copy_(const Tensor& src);
  // Sets every element to value. Not recorded by autograd.
  void fill_(double value);

  // ---- autograd
  bool requires_grad() const;
  // Marks a leaf as a trainable input (or freezes it). Throws on a non-leaf.
  Tensor& set_requires_grad(bool requires_grad);
  bool is_leaf() const;
  // Accumulated gradient (undefined until a backward pass reaches this tensor).
  Tensor grad() const;
  void set_grad(const Tensor& grad);
  // Drops the accumulated gradient (the next backward writes a fresh one).
  void zero_grad();
  // Registers fn(leaf) to run each time backward has accumulated a gradient into this leaf
  // (e.g. to start all-reducing a bucket of gradients while backward continues). Leaves only.
  void add_post_accumulate_hook(std::function<void(const Tensor&)> fn);
  void clear_post_accumulate_hooks();
  // Runs reverse-mode differentiation from this tensor. A non-scalar needs an explicit gradient
  // of the same shape. The graph is freed afterwards (a second backward through it throws).
  void backward(const Tensor& grad = Tensor()) const;
  // Same data, no history: gradients do not flow through the result.
  Tensor detach() const;
  const std::shared_ptr<Node>& grad_fn() const;
  void set_grad_fn(std::shared_ptr<Node> fn);  // used by the op layer when recording

  // ---- printing
  std::string str(int64_t max_per_dim = 6) const;

  // Identity (same impl), for tests and maps.
  bool same(const Tensor& other) const { return impl_ == other.impl_; }
  const TensorImpl* impl() const { return impl_.get(); }

  // Low level: a view of existing storage.
  static Tensor make_view(std::shared_ptr<Storage> storage, int64_t offset, const Shape& shape,
                          const Shape& strides, DType dtype);

 private:
  std::shared_ptr<TensorImpl> impl_;
};

std::ostream& operator<<(std::ostream& os, const Tensor& t);

// Throws "op: expected <what>, got <shape>" style errors; shared by every op's argument checks.
void check_defined(const Tensor& t, const char* op, const char* arg);
void check_same_device(const Tensor& a, const Tensor& b, const char* op);

}  // namespace rg
