#include "engine/ops/op_utils.h"

namespace rg::ops_detail {

DType promote(DType a, DType b) {
  if (a == b) return a;
  if (a == DType::F64 || b == DType::F64) return DType::F64;
  return DType::F32;
}

DType compute_dtype(DType t, Device device, const char* op) {
  if (device.is_cpu()) return t == DType::F64 ? DType::F64 : DType::F32;
  RG_CHECK(t != DType::F64, op, ": float64 tensors have no CUDA kernels (", device.str(),
           "); use f32 or bf16 on the GPU, or move the tensors to the CPU");
  return t == DType::BF16 ? DType::BF16 : DType::F32;
}

Tensor kernel_input(const Tensor& t, DType dtype) {
  Tensor d = t.detach();
  if (d.dtype() != dtype) d = d.to(dtype);
  return d.contiguous();
}

Tensor kernel_output(const Tensor& t, DType dtype) {
  return t.dtype() == dtype ? t : t.to(dtype);
}

void require_cpu(const char* op, std::initializer_list<const Tensor*> tensors) {
  for (const Tensor* t : tensors) {
    if (t == nullptr || !t->defined()) continue;
    RG_CHECK(t->device().is_cpu(), op, ": no ", t->device().str(),
             " kernel is registered for this op yet (tensor of shape ", shape_str(t->shape()),
             "); move the tensors to the CPU");
  }
}

void require_floating(const Tensor& t, const char* op, const char* arg) {
  RG_CHECK(is_floating(t.dtype()), op, ": argument '", arg, "' must be floating point, got ",
           dtype_name(t.dtype()), " with shape ", shape_str(t.shape()));
}

std::vector<double> cpu_values(const Tensor& t) {
  RG_CHECK(t.defined() && t.device().is_cpu(), "cpu_values: needs a CPU tensor");
  NoGradGuard no_grad;
  const Tensor d = t.to(DType::F64).contiguous();
  const double* p = d.data<double>();
  return std::vector<double>(p, p + d.numel());
}

double cpu_scalar(const Tensor& t) {
  RG_CHECK(t.defined() && t.numel() == 1, "cpu_scalar: needs a one-element tensor, got ",
           t.defined() ? shape_str(t.shape()) : std::string("an undefined one"));
  return cpu_values(t)[0];
}

}  // namespace rg::ops_detail
