// CPU emulation of CUDA, device side: what kernels/cuda/*.cu use inside kernels, for the host
// compiler. Force-included (-include) before every emulated translation unit, so the kernel
// sources compile unmodified as C++.
//
// The model (tests/emu/README.md has the whole picture): a kernel launch runs its blocks one
// after another on the calling thread; the threads of a block are fibers (emu_scheduler.h) that
// switch only at barriers and warp collectives. threadIdx and friends are plain globals the
// scheduler sets before it resumes a fiber: nothing else runs in between, and the compiler must
// reload them after every (opaque) call into the scheduler.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

// ---- Qualifiers ----------------------------------------------------------------------------

#define __host__
#define __device__
#define __global__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __grid_constant__
#define __align__(n) __attribute__((aligned(n)))
#define __constant__ static
// Static shared memory: one object per kernel instantiation, shared by the block's fibers (a
// function-local static; blocks run one at a time). All of them live in one linker section, so
// the scheduler can fill the whole section with 0xFF before each block: a read of shared memory
// that no thread of the block wrote gives NaN (or -1), as uninitialized shared memory would give
// garbage on the GPU.
#define __shared__ __attribute__((section("rg_emu_shared"))) static

// ---- Vector and index types ----------------------------------------------------------------

struct uint3 {
  unsigned x, y, z;
};
struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
};
struct __align__(8) uint2 {
  unsigned x, y;
};
struct __align__(16) uint4 {
  unsigned x, y, z, w;
};
struct __align__(8) int2 {
  int x, y;
};
struct __align__(16) int4 {
  int x, y, z, w;
};
struct __align__(8) float2 {
  float x, y;
};
struct __align__(16) float4 {
  float x, y, z, w;
};
struct __align__(16) double2 {
  double x, y;
};
inline uint2 make_uint2(unsigned x, unsigned y) { return {x, y}; }
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return {x, y, z, w}; }
inline int2 make_int2(int x, int y) { return {x, y}; }
inline int4 make_int4(int x, int y, int z, int w) { return {x, y, z, w}; }
inline float2 make_float2(float x, float y) { return {x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }

// The running thread's coordinates (set by the scheduler, tests/emu/emu_scheduler.cpp).
extern uint3 threadIdx;
extern uint3 blockIdx;
extern dim3 blockDim;
extern dim3 gridDim;
constexpr int warpSize = 32;

// ---- Barriers and warp collectives (tests/emu/emu_scheduler.cpp) ---------------------------

namespace rg_emu {

// What a lane brings to a warp collective; the last lane to arrive calls `complete` once with
// every participating lane's record (index = lane), while all of them wait.
struct WarpRecord {
  const void* args = nullptr;  // the lane's arguments (kind-specific)
  void* result = nullptr;      // where the lane's result goes (kind-specific)
};
using WarpCompletion = void (*)(WarpRecord* records, unsigned mask, const void* context);

void syncthreads(const char* what);
void syncwarp(unsigned mask);
// Blocks until every lane of `mask` arrived with the same `kind`; the last one runs `complete`.
void warp_collective(const char* kind, unsigned mask, const WarpRecord& mine,
                     WarpCompletion complete, const void* context);
// The calling thread's lane within its warp.
unsigned lane_id();

// Raises an emulation error (an exception out of the launch): a broken hardware rule, a
// deadlock, a misuse of the runtime.
[[noreturn]] void fail(const char* what);

template <typename T>
struct ShuffleArgs {
  T value;
  int src;  // source lane; -1 keeps the own value (out of the lane's segment)
};

template <typename T>
void shuffle_complete(WarpRecord* records, unsigned mask, const void*) {
  for (int lane = 0; lane < 32; ++lane) {
    if (!(mask & (1u << lane))) continue;
    const auto* mine = static_cast<const ShuffleArgs<T>*>(records[lane].args);
    T* out = static_cast<T*>(records[lane].result);
    if (mine->src < 0) {
      *out = mine->value;
    } else if (mask & (1u << mine->src)) {
      *out = static_cast<const ShuffleArgs<T>*>(records[mine->src].args)->value;
    } else {
      fail("__shfl_*_sync reads a lane outside the mask (undefined on the GPU)");
    }
  }
}

// Source lane of a shuffle within segments of `width` lanes; -1: the lane keeps its value.
inline int shuffle_source(const char* kind, int width, int target_in_segment) {
  (void)kind;
  if (target_in_segment < 0 || target_in_segment >= width) return -1;
  return static_cast<int>(lane_id()) / width * width + target_in_segment;
}

template <typename T>
T shuffle(const char* kind, unsigned mask, T value, int src) {
  static_assert(std::is_trivially_copyable_v<T>, "shuffles move trivially copyable values");
  ShuffleArgs<T> args{value, src};
  T out{};
  warp_collective(kind, mask, WarpRecord{&args, &out}, &shuffle_complete<T>, nullptr);
  return out;
}

inline void check_width(int width) {
  if (width < 1 || width > 32 || (width & (width - 1)) != 0) {
    fail("__shfl_*_sync: width must be a power of two in [1, 32]");
  }
}

}  // namespace rg_emu

inline void __syncthreads() { rg_emu::syncthreads("__syncthreads"); }
inline void __syncwarp(unsigned mask = 0xffffffffu) { rg_emu::syncwarp(mask); }
inline void __threadfence_block() {}
inline void __threadfence() {}

template <typename T>
T __shfl_sync(unsigned mask, T v, int src_lane, int width = 32) {
  rg_emu::check_width(width);
  const int src = static_cast<int>(rg_emu::lane_id()) / width * width + (src_lane % width);
  return rg_emu::shuffle("__shfl_sync", mask, v, src);
}
template <typename T>
T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  rg_emu::check_width(width);
  const int in_segment = static_cast<int>(rg_emu::lane_id()) % width + static_cast<int>(delta);
  return rg_emu::shuffle("__shfl_down_sync", mask, v,
                         rg_emu::shuffle_source("__shfl_down_sync", width, in_segment));
}
template <typename T>
T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  rg_emu::check_width(width);
  const int in_segment = static_cast<int>(rg_emu::lane_id()) % width - static_cast<int>(delta);
  return rg_emu::shuffle("__shfl_up_sync", mask, v,
                         rg_emu::shuffle_source("__shfl_up_sync", width, in_segment));
}
template <typename T>
T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
  rg_emu::check_width(width);
  const int in_segment = (static_cast<int>(rg_emu::lane_id()) % width) ^ lane_mask;
  return rg_emu::shuffle("__shfl_xor_sync", mask, v,
                         rg_emu::shuffle_source("__shfl_xor_sync", width, in_segment));
}

// ---- Loads and integer / float intrinsics --------------------------------------------------

template <typename T>
inline T __ldg(const T* p) {
  return *p;
}

inline unsigned __umulhi(unsigned a, unsigned b) {
  return static_cast<unsigned>((static_cast<uint64_t>(a) * b) >> 32);
}
inline unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
  return static_cast<unsigned long long>((static_cast<unsigned __int128>(a) * b) >> 64);
}
inline int __popc(unsigned v) { return __builtin_popcount(v); }
inline int __clz(unsigned v) { return v == 0 ? 32 : __builtin_clz(v); }
inline int __ffs(unsigned v) { return __builtin_ffs(static_cast<int>(v)); }

inline unsigned __float_as_uint(float f) {
  unsigned u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float __uint_as_float(unsigned u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline int __float_as_int(float f) { return static_cast<int>(__float_as_uint(f)); }
inline float __int_as_float(int i) { return __uint_as_float(static_cast<unsigned>(i)); }

// The _rn intrinsics: IEEE round-to-nearest, never contracted into FMAs. The emulated sources
// are compiled with -ffp-contract=off, so a plain expression here is exactly one rounding.
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __frcp_rn(float a) { return 1.f / a; }
inline float __fsqrt_rn(float a) { return std::sqrt(a); }
inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __fma_rn(double a, double b, double c) { return std::fma(a, b, c); }
// The fast approximations: the correctly rounded functions (within their documented error).
inline float __expf(float v) { return std::exp(v); }
inline float __logf(float v) { return std::log(v); }
inline float __fdividef(float a, float b) { return a / b; }
inline float rsqrtf(float v) { return 1.f / std::sqrt(v); }
inline double rsqrt(double v) { return 1.0 / std::sqrt(v); }
inline float __saturatef(float v) { return v < 0.f ? 0.f : (v > 1.f ? 1.f : v); }

// CUDA's global min/max overloads (device code calls them unqualified).
#define RG_EMU_MINMAX(T)                                   \
  inline T min(T a, T b) { return b < a ? b : a; }         \
  inline T max(T a, T b) { return a < b ? b : a; }
RG_EMU_MINMAX(int)
RG_EMU_MINMAX(unsigned)
RG_EMU_MINMAX(long)
RG_EMU_MINMAX(unsigned long)
RG_EMU_MINMAX(long long)
RG_EMU_MINMAX(unsigned long long)
#undef RG_EMU_MINMAX
inline float min(float a, float b) { return std::fmin(a, b); }
inline float max(float a, float b) { return std::fmax(a, b); }
inline double min(double a, double b) { return std::fmin(a, b); }
inline double max(double a, double b) { return std::fmax(a, b); }
