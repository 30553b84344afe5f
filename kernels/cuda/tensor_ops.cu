// CUDA kernels behind Tensor itself (kernels/cuda/tensor_ops.h): fills, strided copies with
// dtype conversion, and the Philox random fills.
//
// Conversions follow the CPU's copy (engine/tensor.cpp: from_double(to_double(v))): bf16 and
// f16 round to nearest even from float (a double source is rounded to float first, exactly as
// the CPU does), floats to integers truncate toward zero. The bf16/f16 bit conversions below
// are the algorithms of engine/dtype.h/.cpp, written again for host and device, so NaN payloads,
// f16 subnormals and overflow to inf match the CPU bit for bit. Out-of-range float-to-integer
// conversions are undefined on the CPU; the GPU saturates them.
//
// Random fills: a device Philox4x32-10 identical to rg::philox4x32 and the element-to-counter
// mapping of engine/rng.h; each thread evaluates one counter block and writes the 4 (uniform,
// bernoulli) or 2 (normal) elements that block feeds. Products and sums are written with
// __fmul_rn/__fadd_rn so that nvcc cannot contract them into FMAs the CPU does not use. Uniform
// and bernoulli values are therefore bit-identical to the CPU. Normal uses logf and cosf,
// whose CUDA implementations are within 1 and 2 ulp of the true result (not correctly rounded,
// and glibc's logf/cosf are within 1 ulp), so a normal value can differ from the CPU's in the
// last 2-3 bits of the float (relative difference below 1e-6 of the deviate); after rounding
// to bf16 that rarely (near a rounding boundary) becomes one bf16 ulp.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "kernels/cuda/tensor_ops.h"
#include "kernels/cuda/device_util.cuh"

namespace rg::kernels::cuda {

namespace {

constexpr int kThreads = 256;



// ---------------------------------------------------------------- element types

// Storage types of the 16-bit floats: plain bits, converted by the functions below.
struct Bf16Bits {
  uint16_t bits;
};
struct F16Bits {
  uint16_t bits;
};

__host__ __device__ inline uint32_t bits_of(float f) {
#ifdef __CUDA_ARCH__
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
#endif
}
__host__ __device__ inline float float_of(uint32_t u) {
#ifdef __CUDA_ARCH__
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, 4);
  return f;
#endif
}

// engine/dtype.h BFloat16(float).
__host__ __device__ inline uint16_t float_to_bf16_bits(float f) {
  uint32_t u = bits_of(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
__host__ __device__ inline float bf16_bits_to_float(uint16_t b) {
  return float_of(static_cast<uint32_t>(b) << 16);
}

// engine/dtype.cpp Half(float).
__host__ __device__ inline uint16_t float_to_f16_bits(float f) {
  const uint32_t x = bits_of(f);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t abs = x & 0x7fffffffu;
  if (abs > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);
  if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);
  if (abs < 0x38800000u) {
    // Scale into the subnormal grid of 2^-24 (exact) and round the remainder to nearest even.
    const float scaled = float_of(abs) * 16777216.0f;
    uint32_t q = static_cast<uint32_t>(scaled);
    const float rem = scaled - static_cast<float>(q);
    if (rem > 0.5f || (rem == 0.5f && (q & 1u))) ++q;
    return static_cast<uint16_t>(sign | q);
  }
  uint32_t v = abs - 0x38000000u;
  v += 0x0fffu + ((v >> 13) & 1u);
  return static_cast<uint16_t>(sign | (v >> 13));
}

// engine/dtype.cpp Half::operator float().
__host__ __device__ inline float f16_bits_to_float(uint16_t h) {
  const uint32_t sign = (static_cast<uint32_t>(h) & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t man = h & 0x3ffu;
  uint32_t out;
  if (exp == 0) {
    if (man == 0) {
      out = sign;
    } else {
      out = bits_of(static_cast<float>(man) * (1.0f / 16777216.0f)) | sign;
    }
  } else if (exp == 31) {
    out = sign | 0x7f800000u | (man << 13);
  } else {
    out = sign | ((exp + 112u) << 23) | (man << 13);
  }
  return float_of(out);
}

// Widening to the intermediate type (float, or double when either side is f64: every
// conversion then gives what the CPU's trip through double gives; int32 -> float rounds once
// either way).
template <typename M, typename S>
__host__ __device__ inline M widen(S v) {
  if constexpr (std::is_same_v<S, Bf16Bits>) {
    return static_cast<M>(bf16_bits_to_float(v.bits));
  } else if constexpr (std::is_same_v<S, F16Bits>) {
    return static_cast<M>(f16_bits_to_float(v.bits));
  } else {
    return static_cast<M>(v);
  }
}

template <typename D, typename M>
__host__ __device__ inline D narrow(M v) {
  if constexpr (std::is_same_v<D, Bf16Bits>) {
    return Bf16Bits{float_to_bf16_bits(static_cast<float>(v))};
  } else if constexpr (std::is_same_v<D, F16Bits>) {
    return F16Bits{float_to_f16_bits(static_cast<float>(v))};
  } else {
    return static_cast<D>(v);
  }
}

template <typename D, typename S>
__host__ __device__ inline D convert(S v) {
  if constexpr (std::is_same_v<D, S>) {
    return v;
  } else if constexpr (std::is_same_v<D, double> || std::is_same_v<S, double>) {
    return narrow<D>(widen<double>(v));
  } else {
    return narrow<D>(widen<float>(v));
  }
}

template <typename F>
decltype(auto) dispatch_type(ElemType type, F&& f) {
  switch (type) {
    case ElemType::F32:
      return f(float{});
    case ElemType::F64:
      return f(double{});
    case ElemType::BF16:
      return f(Bf16Bits{});
    case ElemType::F16:
      return f(F16Bits{});
    case ElemType::I32:
      return f(int32_t{});
    case ElemType::U8:
      return f(uint8_t{});
  }
  throw std::invalid_argument("cuda: invalid ElemType " + std::to_string(static_cast<int>(type)));
}

// ---------------------------------------------------------------- fill

template <typename W>
__global__ void fill_kernel(int64_t n, W value, W* dst) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) dst[i] = value;
}

// dst[head, head + 16 * vectors / sizeof(W)) with 16-byte stores; block 0 writes the fewer
// than 16 / sizeof(W) elements before (head) and after that range.
template <typename W>
__global__ void fill_vector_kernel(int64_t n, W value, uint4 pattern, int64_t head, int64_t vectors,
                                   W* dst) {
  uint4* body = reinterpret_cast<uint4*>(dst + head);
  for (int64_t j = global_thread(); j < vectors; j += grid_threads()) body[j] = pattern;
  if (blockIdx.x == 0) {
    const int64_t tail = head + vectors * static_cast<int64_t>(16 / sizeof(W));
    if (threadIdx.x < head) dst[threadIdx.x] = value;
    if (tail + threadIdx.x < n) dst[tail + threadIdx.x] = value;
  }
}

template <typename W>
void fill_words(int64_t n, W value, void* dst_ptr, cudaStream_t stream) {
  W* dst = static_cast<W*>(dst_ptr);
  unsigned char bytes[sizeof(W)];
  std::memcpy(bytes, &value, sizeof(W));
  if (std::all_of(bytes, bytes + sizeof(W), [&](unsigned char b) { return b == bytes[0]; })) {
    RG_KERNEL_CUDA_CHECK(
        cudaMemsetAsync(dst, bytes[0], static_cast<size_t>(n) * sizeof(W), stream));
    return;
  }
  constexpr int64_t kPerVector = 16 / sizeof(W);
  const uintptr_t address = reinterpret_cast<uintptr_t>(dst);
  if (n >= 1024 && address % sizeof(W) == 0) {
    const int64_t head = static_cast<int64_t>((16 - address % 16) % 16 / sizeof(W));
    const int64_t vectors = (n - head) / kPerVector;
    uint4 pattern;
    W words[kPerVector];
    for (auto& w : words) w = value;
    std::memcpy(&pattern, words, 16);
    fill_vector_kernel<W>
        <<<grid_for(vectors), kThreads, 0, stream>>>(n, value, pattern, head, vectors, dst);
    RG_KERNEL_LAUNCH_CHECK("fill_vector_kernel");
    return;
  }
  fill_kernel<W><<<grid_for(n), kThreads, 0, stream>>>(n, value, dst);
  RG_KERNEL_LAUNCH_CHECK("fill_kernel");
}

// ---------------------------------------------------------------- strided copy

// The copy after dropping size-1 dimensions and merging neighbours that are contiguous with
// each other on both sides; dims [0, ndim) are used, outermost first.
struct CopyGeometry {
  int ndim = 0;
  int64_t shape[5] = {1, 1, 1, 1, 1};
  int64_t dst_strides[5] = {0, 0, 0, 0, 0};
  int64_t src_strides[5] = {0, 0, 0, 0, 0};
};

template <typename D, typename S>
__global__ void convert_contiguous_kernel(int64_t n, D* dst, const S* src) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) dst[i] = convert<D>(src[i]);
}

template <typename D, typename S, typename Index>
__global__ void strided_copy_kernel(int64_t total, CopyGeometry g, D* dst, const S* src) {
  for (int64_t i = global_thread(); i < total; i += grid_threads()) {
    Index rem = static_cast<Index>(i);
    int64_t d_off = 0, s_off = 0;
#pragma unroll
    for (int d = 4; d >= 0; --d) {
      if (d < g.ndim) {
        const Index size = static_cast<Index>(g.shape[d]);
        const Index coord = rem % size;
        rem /= size;
        d_off += static_cast<int64_t>(coord) * g.dst_strides[d];
        s_off += static_cast<int64_t>(coord) * g.src_strides[d];
      }
    }
    dst[d_off] = convert<D>(src[s_off]);
  }
}

// A batch of 2-D transposes: the innermost dimension (size cols) has dst stride 1, the one
// before it (size rows) has src stride 1, so each 32x32 tile is read along rows from src and
// written along cols to dst through shared memory. blockIdx.x picks the tile, blockIdx.y
// (strided) the batch element; threads are 32 x 8.
constexpr int kTile = 32;
constexpr int kTileRowsPerPass = 8;

template <typename D, typename S>
__global__ void transpose_copy_kernel(CopyGeometry g, int64_t batch, D* dst, const S* src) {
  __shared__ D tile[kTile][kTile + 1];  // [col][row]; the +1 staggers banks for column reads
  const int nb = g.ndim - 2;
  const int64_t rows = g.shape[nb], cols = g.shape[nb + 1];
  const int64_t src_col_stride = g.src_strides[nb + 1];
  const int64_t dst_row_stride = g.dst_strides[nb];
  const int64_t tiles_c = (cols + kTile - 1) / kTile;
  const int64_t r0 = static_cast<int64_t>(blockIdx.x) / tiles_c * kTile;
  const int64_t c0 = static_cast<int64_t>(blockIdx.x) % tiles_c * kTile;
  const int tx = threadIdx.x, ty = threadIdx.y;
  for (int64_t b = blockIdx.y; b < batch; b += gridDim.y) {
    int64_t rem = b, d_base = 0, s_base = 0;
    for (int d = nb - 1; d >= 0; --d) {
      const int64_t coord = rem % g.shape[d];
      rem /= g.shape[d];
      d_base += coord * g.dst_strides[d];
      s_base += coord * g.src_strides[d];
    }
#pragma unroll
    for (int k = 0; k < kTile; k += kTileRowsPerPass) {
      const int64_t r = r0 + tx, c = c0 + ty + k;
      if (r < rows && c < cols) tile[ty + k][tx] = convert<D>(src[s_base + r + c * src_col_stride]);
    }
    __syncthreads();
#pragma unroll
    for (int k = 0; k < kTile; k += kTileRowsPerPass) {
      const int64_t r = r0 + ty + k, c = c0 + tx;
      if (r < rows && c < cols) dst[d_base + r * dst_row_stride + c] = tile[tx][ty + k];
    }
    __syncthreads();  // the next batch element overwrites the tile
  }
}

CopyGeometry simplify(const StridedLayout& dst, const StridedLayout& src, int64_t& total) {
  if (dst.ndim < 0 || dst.ndim > 5 || src.ndim != dst.ndim) {
    throw std::invalid_argument("cuda::strided_copy: layouts of " + std::to_string(dst.ndim) +
                                " and " + std::to_string(src.ndim) + " dimensions");
  }
  CopyGeometry g;
  total = 1;
  for (int d = 0; d < dst.ndim; ++d) {
    if (dst.shape[d] != src.shape[d] || dst.shape[d] < 0) {
      throw std::invalid_argument("cuda::strided_copy: shapes differ in dimension " +
                                  std::to_string(d));
    }
    total *= dst.shape[d];
    if (dst.shape[d] == 1) continue;
    const int last = g.ndim - 1;
    if (last >= 0 && g.dst_strides[last] == dst.strides[d] * dst.shape[d] &&
        g.src_strides[last] == src.strides[d] * src.shape[d]) {
      g.shape[last] *= dst.shape[d];
      g.dst_strides[last] = dst.strides[d];
      g.src_strides[last] = src.strides[d];
    } else {
      g.shape[g.ndim] = dst.shape[d];
      g.dst_strides[g.ndim] = dst.strides[d];
      g.src_strides[g.ndim] = src.strides[d];
      ++g.ndim;
    }
  }
  if (g.ndim == 0) {  // one element
    g.ndim = 1;
    g.dst_strides[0] = g.src_strides[0] = 1;
  }
  return g;
}

template <typename D, typename S>
void copy_typed(const CopyGeometry& g, int64_t total, void* dst_ptr, const void* src_ptr,
                cudaStream_t stream) {
  D* dst = static_cast<D*>(dst_ptr);
  const S* src = static_cast<const S*>(src_ptr);
  const int last = g.ndim - 1;
  if (g.ndim == 1 && g.dst_strides[0] == 1 && g.src_strides[0] == 1) {
    if constexpr (std::is_same_v<D, S>) {
      RG_KERNEL_CUDA_CHECK(cudaMemcpyAsync(dst, src, static_cast<size_t>(total) * sizeof(D),
                                           cudaMemcpyDeviceToDevice, stream));
    } else {
      convert_contiguous_kernel<D, S><<<grid_for(total), kThreads, 0, stream>>>(total, dst, src);
      RG_KERNEL_LAUNCH_CHECK("convert_contiguous_kernel");
    }
    return;
  }
  // Permutes such as NHWC <-> NCHW: worth the tiles once both sides of the tile are filled.
  if (g.ndim >= 2 && g.dst_strides[last] == 1 && g.src_strides[last - 1] == 1 &&
      g.src_strides[last] != 1 && g.shape[last] >= 16 && g.shape[last - 1] >= 16) {
    const int64_t tiles =
        ((g.shape[last - 1] + kTile - 1) / kTile) * ((g.shape[last] + kTile - 1) / kTile);
    int64_t batch = 1;
    for (int d = 0; d < g.ndim - 2; ++d) batch *= g.shape[d];
    if (tiles <= INT32_MAX) {
      const dim3 grid(static_cast<unsigned>(tiles),
                      static_cast<unsigned>(std::min<int64_t>(batch, 65535)));
      transpose_copy_kernel<D, S>
          <<<grid, dim3(kTile, kTileRowsPerPass), 0, stream>>>(g, batch, dst, src);
      RG_KERNEL_LAUNCH_CHECK("transpose_copy_kernel");
      return;
    }
  }
  if (total < (int64_t{1} << 31)) {
    strided_copy_kernel<D, S, uint32_t>
        <<<grid_for(total), kThreads, 0, stream>>>(total, g, dst, src);
  } else {
    strided_copy_kernel<D, S, uint64_t>
        <<<grid_for(total), kThreads, 0, stream>>>(total, g, dst, src);
  }
  RG_KERNEL_LAUNCH_CHECK("strided_copy_kernel");
}

// ---------------------------------------------------------------- Philox

constexpr uint32_t kPhiloxMul0 = 0xD2511F53u, kPhiloxMul1 = 0xCD9E8D57u;
constexpr uint32_t kPhiloxWeyl0 = 0x9E3779B9u, kPhiloxWeyl1 = 0xBB67AE85u;

// rg::philox4x32(key, counter, 0).
__device__ __forceinline__ uint4 philox4x32_10(uint64_t key, uint64_t counter) {
  uint32_t c0 = static_cast<uint32_t>(counter), c1 = static_cast<uint32_t>(counter >> 32);
  uint32_t c2 = 0, c3 = 0;
  uint32_t k0 = static_cast<uint32_t>(key), k1 = static_cast<uint32_t>(key >> 32);
#pragma unroll
  for (int round = 0; round < 10; ++round) {
    const uint32_t hi0 = __umulhi(kPhiloxMul0, c0), lo0 = kPhiloxMul0 * c0;
    const uint32_t hi1 = __umulhi(kPhiloxMul1, c2), lo1 = kPhiloxMul1 * c2;
    const uint32_t next0 = hi1 ^ c1 ^ k0;
    const uint32_t next2 = hi0 ^ c3 ^ k1;
    c0 = next0;
    c1 = lo1;
    c2 = next2;
    c3 = lo0;
    k0 += kPhiloxWeyl0;
    k1 += kPhiloxWeyl1;
  }
  return make_uint4(c0, c1, c2, c3);
}

// rg::uint32_to_unit_float: (0, 1], every step exact.
__device__ __forceinline__ float unit_float(uint32_t x) {
  return __fmul_rn(static_cast<float>(x >> 8) + 1.0f, 1.0f / 16777216.0f);
}

__device__ __forceinline__ uint32_t word(const uint4& r, int w) {
  return w == 0 ? r.x : (w == 1 ? r.y : (w == 2 ? r.z : r.w));
}

template <typename T>
__device__ __forceinline__ T store_value(float v);
template <>
__device__ __forceinline__ float store_value<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ bf16 store_value<bf16>(float v) {
  return __float2bfloat16_rn(v);
}

// Block j of the fill feeds elements [4j, 4j + 4).
template <typename T>
__global__ void uniform_kernel(int64_t n, float low, float span, uint64_t seed, uint64_t offset,
                               T* out) {
  const int64_t blocks = (n + 3) / 4;
  for (int64_t j = global_thread(); j < blocks; j += grid_threads()) {
    const uint4 r = philox4x32_10(seed, offset + static_cast<uint64_t>(j));
#pragma unroll
    for (int w = 0; w < 4; ++w) {
      const int64_t i = 4 * j + w;
      // (0,1] -> [low, high): 1 - u is exact; low + span * (1 - u) rounded twice, as the CPU.
      const float u = unit_float(word(r, w));
      if (i < n) out[i] = store_value<T>(__fadd_rn(low, __fmul_rn(span, 1.0f - u)));
    }
  }
}

template <typename T>
__global__ void bernoulli_kernel(int64_t n, float prob, uint64_t seed, uint64_t offset, T* out) {
  const int64_t blocks = (n + 3) / 4;
  for (int64_t j = global_thread(); j < blocks; j += grid_threads()) {
    const uint4 r = philox4x32_10(seed, offset + static_cast<uint64_t>(j));
#pragma unroll
    for (int w = 0; w < 4; ++w) {
      const int64_t i = 4 * j + w;
      if (i < n) out[i] = store_value<T>(unit_float(word(r, w)) <= prob ? 1.0f : 0.0f);
    }
  }
}

// Block j feeds elements 2j (words 0, 1) and 2j + 1 (words 2, 3); Box-Muller's cosine branch.
template <typename T>
__global__ void normal_kernel(int64_t n, float mean, float stddev, uint64_t seed, uint64_t offset,
                              T* out) {
  const int64_t blocks = (n + 1) / 2;
  for (int64_t j = global_thread(); j < blocks; j += grid_threads()) {
    const uint4 r = philox4x32_10(seed, offset + static_cast<uint64_t>(j));
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int64_t i = 2 * j + half;
      if (i >= n) break;
      const float u1 = unit_float(word(r, 2 * half));
      const float u2 = unit_float(word(r, 2 * half + 1));
      const float radius = __fsqrt_rn(__fmul_rn(-2.0f, logf(u1)));
      const float angle = __fmul_rn(6.2831853071795864f, u2);
      out[i] = store_value<T>(__fadd_rn(mean, __fmul_rn(__fmul_rn(stddev, radius), cosf(angle))));
    }
  }
}

}  // namespace

// ---------------------------------------------------------------- entry points

void fill(ElemType type, int64_t n, double value, void* dst, cudaStream_t stream) {
  if (n <= 0) return;
  switch (type) {
    case ElemType::F32:
      fill_words<uint32_t>(n, bits_of(static_cast<float>(value)), dst, stream);
      break;
    case ElemType::F64: {
      uint64_t bits;
      std::memcpy(&bits, &value, 8);
      fill_words<uint64_t>(n, bits, dst, stream);
      break;
    }
    case ElemType::BF16:
      fill_words<uint16_t>(n, float_to_bf16_bits(static_cast<float>(value)), dst, stream);
      break;
    case ElemType::F16:
      fill_words<uint16_t>(n, float_to_f16_bits(static_cast<float>(value)), dst, stream);
      break;
    case ElemType::I32:
      fill_words<uint32_t>(n, static_cast<uint32_t>(static_cast<int32_t>(value)), dst, stream);
      break;
    case ElemType::U8:
      RG_KERNEL_CUDA_CHECK(
          cudaMemsetAsync(dst, static_cast<uint8_t>(value), static_cast<size_t>(n), stream));
      break;
  }
}

void strided_copy(ElemType dst_type, const StridedLayout& dst_layout, void* dst, ElemType src_type,
                  const StridedLayout& src_layout, const void* src, cudaStream_t stream) {
  int64_t total = 0;
  const CopyGeometry g = simplify(dst_layout, src_layout, total);
  if (total == 0) return;
  dispatch_type(dst_type, [&](auto dst_tag) {
    dispatch_type(src_type, [&](auto src_tag) {
      copy_typed<decltype(dst_tag), decltype(src_tag)>(g, total, dst, src, stream);
    });
  });
}

template <typename T>
void uniform_fill(int64_t n, float low, float high, uint64_t seed, uint64_t offset, T* out,
                  cudaStream_t stream) {
  if (n <= 0) return;
  // The CPU rounds (high - low) computed in double; from float bounds that is this.
  const float span = static_cast<float>(static_cast<double>(high) - static_cast<double>(low));
  uniform_kernel<T>
      <<<grid_for((n + 3) / 4), kThreads, 0, stream>>>(n, low, span, seed, offset, out);
  RG_KERNEL_LAUNCH_CHECK("uniform_kernel");
}

template <typename T>
void normal_fill(int64_t n, float mean, float stddev, uint64_t seed, uint64_t offset, T* out,
                 cudaStream_t stream) {
  if (n <= 0) return;
  normal_kernel<T>
      <<<grid_for((n + 1) / 2), kThreads, 0, stream>>>(n, mean, stddev, seed, offset, out);
  RG_KERNEL_LAUNCH_CHECK("normal_kernel");
}

template <typename T>
void bernoulli_fill(int64_t n, float prob, uint64_t seed, uint64_t offset, T* out,
                    cudaStream_t stream) {
  if (n <= 0) return;
  bernoulli_kernel<T><<<grid_for((n + 3) / 4), kThreads, 0, stream>>>(n, prob, seed, offset, out);
  RG_KERNEL_LAUNCH_CHECK("bernoulli_kernel");
}

#define RG_INSTANTIATE(T)                                                                     \
  template void uniform_fill<T>(int64_t, float, float, uint64_t, uint64_t, T*, cudaStream_t); \
  template void normal_fill<T>(int64_t, float, float, uint64_t, uint64_t, T*, cudaStream_t);  \
  template void bernoulli_fill<T>(int64_t, float, uint64_t, uint64_t, T*, cudaStream_t);
RG_INSTANTIATE(float)
RG_INSTANTIATE(bf16)
#undef RG_INSTANTIATE

}  // namespace rg::kernels::cuda
