// Runs a generic lambda with a value of the C++ type of a dtype:
//   dispatch_dtype(t.dtype(), [&](auto tag) { using T = decltype(tag); ... });
#pragma once

#include "engine/dtype.h"
#include "engine/error.h"

namespace rg {

template <typename F>
decltype(auto) dispatch_dtype(DType t, F&& f) {
  switch (t) {
    case DType::F32: return f(float{});
    case DType::F64: return f(double{});
    case DType::BF16: return f(BFloat16{});
    case DType::F16: return f(Half{});
    case DType::I32: return f(int32_t{});
    case DType::U8: return f(uint8_t{});
  }
  RG_FAIL("dispatch_dtype: invalid dtype");
}

// Only the types the CPU kernels compute in (f32, f64).
template <typename F>
decltype(auto) dispatch_compute(DType t, const char* op, F&& f) {
  switch (t) {
    case DType::F32: return f(float{});
    case DType::F64: return f(double{});
    default: RG_FAIL(op, ": no kernel computes in ", dtype_name(t));
  }
}

template <typename T>
inline double to_double(T v) {
  if constexpr (std::is_same_v<T, BFloat16> || std::is_same_v<T, Half>) {
    return static_cast<double>(static_cast<float>(v));
  } else {
    return static_cast<double>(v);
  }
}

template <typename T>
inline T from_double(double v) {
  if constexpr (std::is_same_v<T, BFloat16> || std::is_same_v<T, Half>) {
    return T(static_cast<float>(v));
  } else {
    return static_cast<T>(v);
  }
}

}  // namespace rg
