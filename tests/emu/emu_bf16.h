// CPU emulation of CUDA: the bf16 type of cuda_bf16.h (storage, conversions with
// round-to-nearest-even, NaN kept quiet), usable in host and emulated device code alike.
#pragma once

#include <cstdint>
#include <cstring>

struct __nv_bfloat16 {
  unsigned short __x;

  __nv_bfloat16() = default;
  // Implicit conversions, as cuda_bf16.h offers them by default.
  __nv_bfloat16(float f) : __x(from_float(f)) {}
  __nv_bfloat16(double d) : __x(from_float(static_cast<float>(d))) {}
  __nv_bfloat16(int i) : __x(from_float(static_cast<float>(i))) {}
  operator float() const {
    const uint32_t u = static_cast<uint32_t>(__x) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }

  static unsigned short from_float(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<unsigned short>((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return static_cast<unsigned short>(u >> 16);
  }
};
typedef __nv_bfloat16 nv_bfloat16;

inline __nv_bfloat16 __float2bfloat16(float f) { return __nv_bfloat16(f); }
inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __nv_bfloat16(f); }
inline float __bfloat162float(__nv_bfloat16 b) { return static_cast<float>(b); }
inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short v) {
  __nv_bfloat16 b;
  b.__x = v;
  return b;
}
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 b) { return b.__x; }
