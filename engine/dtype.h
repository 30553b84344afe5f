// Element types. f32 is the master type; bf16/f16 are storage and compute types for the GPU;
// f64 exists for the float64 finite-difference gradient checks the CPU reference is held to.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>

namespace rg {

enum class DType : uint8_t { F32, F64, BF16, F16, I32, U8 };

size_t dtype_size(DType t);
const char* dtype_name(DType t);
// Parses "f32", "float32", "bf16", ... ; throws naming the string otherwise.
DType dtype_from_name(const std::string& name);
inline bool is_floating(DType t) { return t != DType::I32 && t != DType::U8; }

// bfloat16: the top 16 bits of an IEEE float, rounded to nearest even.
struct BFloat16 {
  uint16_t bits = 0;
  BFloat16() = default;
  explicit BFloat16(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) {  // NaN stays a quiet NaN
      bits = static_cast<uint16_t>((u >> 16) | 0x40);
    } else {
      u += 0x7fffu + ((u >> 16) & 1u);
      bits = static_cast<uint16_t>(u >> 16);
    }
  }
  explicit operator float() const {
    uint32_t u = static_cast<uint32_t>(bits) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
};

// IEEE binary16, round to nearest even, with subnormals, inf and NaN.
struct Half {
  uint16_t bits = 0;
  Half() = default;
  explicit Half(float f);
  explicit operator float() const;
};

// Scalar type of a dtype, for templates that switch on it.
template <DType> struct DTypeTraits;
template <> struct DTypeTraits<DType::F32> { using type = float; };
template <> struct DTypeTraits<DType::F64> { using type = double; };
template <> struct DTypeTraits<DType::BF16> { using type = BFloat16; };
template <> struct DTypeTraits<DType::F16> { using type = Half; };
template <> struct DTypeTraits<DType::I32> { using type = int32_t; };
template <> struct DTypeTraits<DType::U8> { using type = uint8_t; };

template <typename T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::F32; }
template <> constexpr DType dtype_of<double>() { return DType::F64; }
template <> constexpr DType dtype_of<BFloat16>() { return DType::BF16; }
template <> constexpr DType dtype_of<Half>() { return DType::F16; }
template <> constexpr DType dtype_of<int32_t>() { return DType::I32; }
template <> constexpr DType dtype_of<uint8_t>() { return DType::U8; }

}  // namespace rg
