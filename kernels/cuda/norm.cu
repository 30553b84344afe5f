// CUDA normalization kernels (kernels/cuda/norm.h).
//
// Both norms reduce the columns of row-major [rows, c] matrices: batch norm sees x as one
// [n*hw, c] matrix, instance norm as n matrices [hw, c], one per image (a "group", blockIdx.z).
// Every kernel shares one 2-D decomposition (Plan): a block covers a tile of channels with its
// threads along the channel axis (each thread V adjacent channels, so a warp reads contiguous
// memory, 16-byte vectors where alignment allows) and a chunk of rows with threadIdx.y.
// The decomposition depends only on the shape, so every result is reproducible bit for bit.
//
// Statistics: each thread runs Welford's update over its rows (no cancellation when the mean
// is much larger than the spread, as after a ReLU), the threads of a block are merged along the
// rows with Chan's pairwise formula in a fixed tree, and each chunk's partials go to a
// stream-ordered workspace that a finalize kernel merges in chunk order. No float atomics.
// When one chunk covers all rows (the small inner layers of the U-Net) one kernel computes the
// statistics and applies them. Gradient sums (sum dy, sum dy*(x - mean)) take the same path as
// plain fp32 sums.
#include "kernels/cuda/norm.h"
#include "kernels/cuda/device_util.cuh"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <type_traits>

namespace rg::kernels::cuda {
namespace {

constexpr int kBlockThreads = 256;
constexpr int kMaxTileX = 32;  // threads along channels in one block
// Enough blocks to fill an H100 several times over; more only adds partials to merge.
constexpr int64_t kTargetBlocks = 1024;
// A thread should have at least this many rows to reduce before chunks are split further.
constexpr int64_t kMinRowsPerThread = 16;
constexpr int64_t kMaxChunks = 1024;
constexpr int64_t kMaxGroups = 65535;  // gridDim.z
constexpr int kFinalizeX = 32, kFinalizeY = 8;
static_assert(kFinalizeX * kFinalizeY == kBlockThreads, "finalize blocks share the scratch size");

// Rows whose loads are issued together before they are used (memory-level parallelism); fewer
// for the widest vectors to bound register use.
template <int V>
inline constexpr int kRowsPerBatch = V >= 8 ? 2 : 4;

int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

// ---------------------------------------------------------------------------------------------
// Element access



template <int kBytes>
struct RawVec;
template <>
struct RawVec<2> {
  using type = unsigned short;
};
template <>
struct RawVec<4> {
  using type = unsigned int;
};
template <>
struct RawVec<8> {
  using type = uint2;
};
template <>
struct RawVec<16> {
  using type = uint4;
};

// V adjacent elements at p (aligned to V elements), converted to fp32, in one load.
template <typename T, int V>
__device__ __forceinline__ void load_vec(const T* __restrict__ p, float (&out)[V]) {
  using Raw = typename RawVec<static_cast<int>(sizeof(T)) * V>::type;
  const Raw raw = *reinterpret_cast<const Raw*>(p);
  T vals[V];
  memcpy(vals, &raw, sizeof(Raw));
#pragma unroll
  for (int j = 0; j < V; ++j) out[j] = to_f32(vals[j]);
}

template <typename T, int V>
__device__ __forceinline__ void store_vec(T* __restrict__ p, const float (&in)[V]) {
  using Raw = typename RawVec<static_cast<int>(sizeof(T)) * V>::type;
  T vals[V];
#pragma unroll
  for (int j = 0; j < V; ++j) vals[j] = from_f32<T>(in[j]);
  Raw raw;
  memcpy(&raw, vals, sizeof(Raw));
  *reinterpret_cast<Raw*>(p) = raw;
}

// ---------------------------------------------------------------------------------------------
// Fused activation

// Same comparisons as kernels::cpu::activation_forward/backward (NaN maps like the CPU).
__device__ __forceinline__ float activate(float v, const NormFusion& f) {
  switch (f.act) {
    case NormActivation::ReLU:
      return v > 0.f ? v : 0.f;
    case NormActivation::LeakyReLU:
      return v > 0.f ? v : v * f.negative_slope;
    default:
      return v;
  }
}

// dy of the normalized value, from dy of the activation output y.
__device__ __forceinline__ float activation_grad(float dy, float y, const NormFusion& f) {
  switch (f.act) {
    case NormActivation::ReLU:
      return y > 0.f ? dy : 0.f;
    case NormActivation::LeakyReLU:
      return y > 0.f ? dy : dy * f.negative_slope;
    default:
      return dy;
  }
}

// ---------------------------------------------------------------------------------------------
// Statistics and reductions

// Count, mean and sum of squared deviations of V channels over the rows seen so far.
template <int V>
struct Moments {
  float n = 0.f;
  float mean[V] = {};
  float m2[V] = {};

  __device__ __forceinline__ void add(const float (&v)[V]) {
    n += 1.f;
    const float inv_n = __frcp_rn(n);
#pragma unroll
    for (int j = 0; j < V; ++j) {
      const float d = v[j] - mean[j];
      mean[j] = fmaf(d, inv_n, mean[j]);
      m2[j] = fmaf(d, v[j] - mean[j], m2[j]);
    }
  }

  // Chan et al.: the moments of the union with a disjoint set (nb, mb, qb).
  __device__ __forceinline__ void merge(float nb, const float (&mb)[V], const float (&qb)[V]) {
    if (nb == 0.f) return;
    const float total = n + nb;
    const float fb = nb / total;
    const float fab = n * fb;  // n * nb / total
#pragma unroll
    for (int j = 0; j < V; ++j) {
      const float delta = mb[j] - mean[j];
      mean[j] = fmaf(delta, fb, mean[j]);
      m2[j] += qb[j] + delta * delta * fab;
    }
    n = total;
  }
};

// Shared storage for combining per-thread moments along threadIdx.y ([j][tid]: consecutive
// lanes hit consecutive banks).
template <int V>
struct MomentsScratch {
  float n[kBlockThreads];
  float mean[V][kBlockThreads];
  float m2[V][kBlockThreads];
};

// Merges the moments of the threads of a block column (same threadIdx.x) in a fixed tree;
// the threads with threadIdx.y == 0 end with the column's result. blockDim.y is a power of two
// and blockDim.x * blockDim.y <= kBlockThreads. Ends with a barrier.
template <int V>
__device__ void merge_moments_down_rows(Moments<V>& acc, MomentsScratch<V>& s) {
  const int tid = threadIdx.y * blockDim.x + threadIdx.x;
  s.n[tid] = acc.n;
#pragma unroll
  for (int j = 0; j < V; ++j) {
    s.mean[j][tid] = acc.mean[j];
    s.m2[j][tid] = acc.m2[j];
  }
  for (int stride = blockDim.y / 2; stride > 0; stride /= 2) {
    __syncthreads();
    if (static_cast<int>(threadIdx.y) < stride) {
      const int other = tid + stride * blockDim.x;
      float mb[V], qb[V];
#pragma unroll
      for (int j = 0; j < V; ++j) {
        mb[j] = s.mean[j][other];
        qb[j] = s.m2[j][other];
      }
      acc.merge(s.n[other], mb, qb);
      s.n[tid] = acc.n;
#pragma unroll
      for (int j = 0; j < V; ++j) {
        s.mean[j][tid] = acc.mean[j];
        s.m2[j][tid] = acc.m2[j];
      }
    }
  }
  __syncthreads();
}

// Plain sums of N values per thread down a block column, same tree as above. Ends with a
// barrier; threadIdx.y == 0 holds the result.
template <int N>
__device__ void sum_down_rows(float (&acc)[N], float (&s)[N][kBlockThreads]) {
  const int tid = threadIdx.y * blockDim.x + threadIdx.x;
#pragma unroll
  for (int j = 0; j < N; ++j) s[j][tid] = acc[j];
  for (int stride = blockDim.y / 2; stride > 0; stride /= 2) {
    __syncthreads();
    if (static_cast<int>(threadIdx.y) < stride) {
      const int other = tid + stride * blockDim.x;
#pragma unroll
      for (int j = 0; j < N; ++j) {
        acc[j] += s[j][other];
        s[j][tid] = acc[j];
      }
    }
  }
  __syncthreads();
}

// Per-(group, channel) statistics as given to a kernel: mean and either invstd or the variance
// (eval mode, invstd = 1/sqrt(var + eps)). Indexed [group * c + channel].
struct StatArgs {
  const float* mean;
  const float* stat;
  bool stat_is_var;
  float eps;

  __device__ __forceinline__ float invstd(int64_t i) const {
    return stat_is_var ? 1.f / sqrtf(stat[i] + eps) : stat[i];
  }
};

// What the single-chunk moments kernel needs to finish the forward pass itself.
struct ForwardArgs {
  const float* gamma;
  const float* beta;
  float eps;
  NormFusion fusion;
  float* save_mean;    // [groups][c]
  float* save_invstd;  // [groups][c]
};

// Position of a thread in the Plan decomposition.
struct Tile {
  int64_t col;    // first of its V channels
  bool active;    // col < c (all V channels valid: c is a multiple of V)
  int64_t group;  // blockIdx.z
  int64_t first;  // its first row
  int64_t end;    // end of the block's row chunk
  int64_t step;   // rows between its consecutive rows (blockDim.y)
};

template <int V>
__device__ __forceinline__ Tile tile_of_thread(int64_t rows, int64_t c, int64_t rows_per_chunk) {
  Tile t;
  t.col = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) * V;
  t.active = t.col < c;
  t.group = blockIdx.z;
  const int64_t r0 = static_cast<int64_t>(blockIdx.y) * rows_per_chunk;
  t.first = r0 + threadIdx.y;
  t.end = min(rows, r0 + rows_per_chunk);
  t.step = blockDim.y;
  return t;
}

// y = act((x - mean) * scale + shift) over the thread's rows.
template <typename T, int V>
__device__ __forceinline__ void normalize_rows(const T* __restrict__ x, T* __restrict__ y,
                                               const Tile& t, int64_t c, const float (&mean)[V],
                                               const float (&scale)[V], const float (&shift)[V],
                                               const NormFusion& f) {
  constexpr int U = kRowsPerBatch<V>;
  for (int64_t r = t.first; r < t.end; r += U * t.step) {
    float v[U][V];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int64_t row = r + u * t.step;
      if (row < t.end) load_vec<T, V>(x + row * c + t.col, v[u]);
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int64_t row = r + u * t.step;
      if (row < t.end) {
        float out[V];
#pragma unroll
        for (int j = 0; j < V; ++j)
          out[j] = activate(fmaf(v[u][j] - mean[j], scale[j], shift[j]), f);
        store_vec<T, V>(y + row * c + t.col, out);
      }
    }
  }
}

// dx = a * (dy' - b - k * (x - mean)) over the thread's rows, dy' = dy * act'(y). This form
// (rather than a*dy' - a*b - ...) keeps dx exactly 0 where a group has a single row.
template <typename T, int V>
__device__ __forceinline__ void grad_rows(const T* __restrict__ x, const T* __restrict__ y,
                                          const T* __restrict__ dy, T* __restrict__ dx,
                                          const Tile& t, int64_t c, const float (&mean)[V],
                                          const float (&a)[V], const float (&b)[V],
                                          const float (&k)[V], const NormFusion& f) {
  constexpr int U = kRowsPerBatch<V>;
  const bool use_y = f.act != NormActivation::None;
  for (int64_t r = t.first; r < t.end; r += U * t.step) {
    float xv[U][V], dv[U][V], yv[U][V];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int64_t row = r + u * t.step;
      if (row < t.end) {
        const int64_t off = row * c + t.col;
        load_vec<T, V>(x + off, xv[u]);
        load_vec<T, V>(dy + off, dv[u]);
        if (use_y) load_vec<T, V>(y + off, yv[u]);
      }
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int64_t row = r + u * t.step;
      if (row < t.end) {
        float out[V];
#pragma unroll
        for (int j = 0; j < V; ++j) {
          const float d = use_y ? activation_grad(dv[u][j], yv[u][j], f) : dv[u][j];
          out[j] = a[j] * (d - fmaf(k[j], xv[u][j] - mean[j], b[j]));
        }
        store_vec<T, V>(dx + row * c + t.col, out);
      }
    }
  }
}

// dx = a * dy' over the thread's rows (eval mode: statistics are constants, x is not read).
template <typename T, int V>
__device__ __forceinline__ void scale_grad_rows(const T* __restrict__ y, const T* __restrict__ dy,
                                                T* __restrict__ dx, const Tile& t, int64_t c,
                                                const float (&a)[V], const NormFusion& f) {
  constexpr int U = kRowsPerBatch<V>;
  const bool use_y = f.act != NormActivation::None;
  for (int64_t r = t.first; r < t.end; r += U * t.step) {
    float dv[U][V], yv[U][V];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int64_t row = r + u * t.step;
      if (row < t.end) {
        load_vec<T, V>(dy + row * c + t.col, dv[u]);
        if (use_y) load_vec<T, V>(y + row * c + t.col, yv[u]);
      }
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int64_t row = r + u * t.step;
      if (row < t.end) {
        float out[V];
#pragma unroll
        for (int j = 0; j < V; ++j)
          out[j] = a[j] * (use_y ? activation_grad(dv[u][j], yv[u][j], f) : dv[u][j]);
        store_vec<T, V>(dx + row * c + t.col, out);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Kernels

// Moments of each (group, channel) over the block's row chunk. With several chunks
// (gridDim.y > 1) writes the chunk's partial mean / m2 to part_*[group][chunk][c]; with one,
// finishes the forward pass: statistics to fwd.save_*, y = act(norm(x)).
template <typename T, int V>
__global__ void __launch_bounds__(kBlockThreads)
    moments_kernel(const T* __restrict__ x, int64_t rows, int64_t c, int64_t rows_per_chunk,
                   float* __restrict__ part_mean, float* __restrict__ part_m2, ForwardArgs fwd,
                   T* __restrict__ y) {
  constexpr int U = kRowsPerBatch<V>;
  const Tile t = tile_of_thread<V>(rows, c, rows_per_chunk);
  const T* xg = x + t.group * rows * c;
  Moments<V> acc;
  if (t.active) {
    for (int64_t r = t.first; r < t.end; r += U * t.step) {
      float v[U][V];
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const int64_t row = r + u * t.step;
        if (row < t.end) load_vec<T, V>(xg + row * c + t.col, v[u]);
      }
#pragma unroll
      for (int u = 0; u < U; ++u) {
        if (r + u * t.step < t.end) acc.add(v[u]);
      }
    }
  }
  __shared__ MomentsScratch<V> scratch;
  merge_moments_down_rows(acc, scratch);

  if (gridDim.y > 1) {
    if (threadIdx.y == 0 && t.active) {
      const int64_t base = (t.group * gridDim.y + blockIdx.y) * c + t.col;
#pragma unroll
      for (int j = 0; j < V; ++j) {
        part_mean[base + j] = acc.mean[j];
        part_m2[base + j] = acc.m2[j];
      }
    }
    return;
  }

  // One chunk holds every row of the group: finish here. coef[0]: mean, [1]: scale, [2]: shift.
  __shared__ float coef[3][kMaxTileX * V];
  const int lane = threadIdx.x * V;
  if (threadIdx.y == 0 && t.active) {
#pragma unroll
    for (int j = 0; j < V; ++j) {
      const int64_t ch = t.col + j;
      const float var = acc.n > 0.f ? acc.m2[j] / acc.n : 0.f;
      const float invstd = 1.f / sqrtf(var + fwd.eps);
      fwd.save_mean[t.group * c + ch] = acc.mean[j];
      fwd.save_invstd[t.group * c + ch] = invstd;
      coef[0][lane + j] = acc.mean[j];
      coef[1][lane + j] = invstd * (fwd.gamma ? fwd.gamma[ch] : 1.f);
      coef[2][lane + j] = fwd.beta ? fwd.beta[ch] : 0.f;
    }
  }
  __syncthreads();
  if (!t.active) return;
  float mean[V], scale[V], shift[V];
#pragma unroll
  for (int j = 0; j < V; ++j) {
    mean[j] = coef[0][lane + j];
    scale[j] = coef[1][lane + j];
    shift[j] = coef[2][lane + j];
  }
  normalize_rows<T, V>(xg, y + t.group * rows * c, t, c, mean, scale, shift, fwd.fusion);
}

// Merges the chunk partials of moments_kernel in chunk order. Grid (ceil(c/32), groups), block
// (32, 8): thread (x, y) merges chunks y, y+8, ... of one channel, then a tree merges the 8.
__global__ void __launch_bounds__(kBlockThreads)
    moments_finalize_kernel(const float* __restrict__ part_mean, const float* __restrict__ part_m2,
                            int64_t rows, int64_t c, int64_t chunks, int64_t rows_per_chunk,
                            float eps, float* __restrict__ save_mean,
                            float* __restrict__ save_invstd) {
  const int64_t col = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t group = blockIdx.y;
  Moments<1> acc;
  if (col < c) {
#pragma unroll 4
    for (int64_t k = threadIdx.y; k < chunks; k += blockDim.y) {
      const int64_t i = (group * chunks + k) * c + col;
      const float count = static_cast<float>(min(rows_per_chunk, rows - k * rows_per_chunk));
      const float mb[1] = {part_mean[i]};
      const float qb[1] = {part_m2[i]};
      acc.merge(count, mb, qb);
    }
  }
  __shared__ MomentsScratch<1> scratch;
  merge_moments_down_rows(acc, scratch);
  if (threadIdx.y == 0 && col < c) {
    const float var = acc.n > 0.f ? acc.m2[0] / acc.n : 0.f;
    save_mean[group * c + col] = acc.mean[0];
    save_invstd[group * c + col] = 1.f / sqrtf(var + eps);
  }
}

// y = act((x - mean) * invstd * gamma + beta) with given statistics.
template <typename T, int V>
__global__ void __launch_bounds__(kBlockThreads)
    normalize_kernel(const T* __restrict__ x, int64_t rows, int64_t c, int64_t rows_per_chunk,
                     StatArgs st, const float* __restrict__ gamma, const float* __restrict__ beta,
                     NormFusion fusion, T* __restrict__ y) {
  const Tile t = tile_of_thread<V>(rows, c, rows_per_chunk);
  if (!t.active) return;
  float mean[V], scale[V], shift[V];
#pragma unroll
  for (int j = 0; j < V; ++j) {
    const int64_t ch = t.col + j;
    mean[j] = st.mean[t.group * c + ch];
    scale[j] = st.invstd(t.group * c + ch) * (gamma ? gamma[ch] : 1.f);
    shift[j] = beta ? beta[ch] : 0.f;
  }
  const int64_t off = t.group * rows * c;
  normalize_rows<T, V>(x + off, y + off, t, c, mean, scale, shift, fusion);
}

// Per (group, channel) sum(dy') and sum(dy' * (x - mean)) over the block's row chunk,
// dy' = dy * act'(y). kEval: also writes dx = gamma * invstd * dy' on the way.
// Several chunks: partials to part_*[group][chunk][c]. One chunk: writes out_sdy = sum(dy')
// and out_sdyxhat = sum(dy' * xhat) ([group][c], each when non-null) and, in training mode,
// finishes dx itself.
template <typename T, int V, bool kEval>
__global__ void __launch_bounds__(kBlockThreads)
    grad_sums_kernel(const T* __restrict__ x, const T* __restrict__ y, const T* __restrict__ dy,
                     int64_t rows, int64_t c, int64_t rows_per_chunk, StatArgs st,
                     const float* __restrict__ gamma, NormFusion fusion, T* __restrict__ dx,
                     float* __restrict__ part_sdy, float* __restrict__ part_sdyx,
                     float* __restrict__ out_sdy, float* __restrict__ out_sdyxhat) {
  constexpr int U = kRowsPerBatch<V>;
  const Tile t = tile_of_thread<V>(rows, c, rows_per_chunk);
  const int64_t off = t.group * rows * c;
  const bool use_y = fusion.act != NormActivation::None;
  const T* xg = x + off;
  const T* yg = use_y ? y + off : nullptr;
  const T* dyg = dy + off;
  T* dxg = dx + off;

  float mean[V], invstd[V], a[V];
  float sums[2 * V];  // [0, V): sum dy', [V, 2V): sum dy' * (x - mean)
#pragma unroll
  for (int j = 0; j < V; ++j) {
    mean[j] = invstd[j] = a[j] = 0.f;
    sums[j] = sums[V + j] = 0.f;
  }
  if (t.active) {
#pragma unroll
    for (int j = 0; j < V; ++j) {
      const int64_t ch = t.col + j;
      mean[j] = st.mean[t.group * c + ch];
      invstd[j] = st.invstd(t.group * c + ch);
      a[j] = invstd[j] * (gamma ? gamma[ch] : 1.f);
    }
    for (int64_t r = t.first; r < t.end; r += U * t.step) {
      float xv[U][V], dv[U][V], yv[U][V];
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const int64_t row = r + u * t.step;
        if (row < t.end) {
          const int64_t o = row * c + t.col;
          load_vec<T, V>(xg + o, xv[u]);
          load_vec<T, V>(dyg + o, dv[u]);
          if (use_y) load_vec<T, V>(yg + o, yv[u]);
        }
      }
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const int64_t row = r + u * t.step;
        if (row < t.end) {
          float d[V];
#pragma unroll
          for (int j = 0; j < V; ++j) {
            d[j] = use_y ? activation_grad(dv[u][j], yv[u][j], fusion) : dv[u][j];
            sums[j] += d[j];
            sums[V + j] = fmaf(d[j], xv[u][j] - mean[j], sums[V + j]);
          }
          if constexpr (kEval) {
            float out[V];
#pragma unroll
            for (int j = 0; j < V; ++j) out[j] = a[j] * d[j];
            store_vec<T, V>(dxg + row * c + t.col, out);
          }
        }
      }
    }
  }
  __shared__ float scratch[2 * V][kBlockThreads];
  sum_down_rows<2 * V>(sums, scratch);

  if (gridDim.y > 1) {
    if (threadIdx.y == 0 && t.active) {
      const int64_t base = (t.group * gridDim.y + blockIdx.y) * c + t.col;
#pragma unroll
      for (int j = 0; j < V; ++j) {
        part_sdy[base + j] = sums[j];
        part_sdyx[base + j] = sums[V + j];
      }
    }
    return;
  }

  // One chunk: coef[0] = sum(dy') / rows, coef[1] = invstd * sum(dy' * xhat) / rows.
  __shared__ float coef[2][kMaxTileX * V];
  const int lane = threadIdx.x * V;
  if (threadIdx.y == 0 && t.active) {
    const float inv_rows = rows > 0 ? 1.f / static_cast<float>(rows) : 0.f;
#pragma unroll
    for (int j = 0; j < V; ++j) {
      const int64_t i = t.group * c + t.col + j;
      const float sdyxhat = sums[V + j] * invstd[j];
      if (out_sdy) out_sdy[i] = sums[j];
      if (out_sdyxhat) out_sdyxhat[i] = sdyxhat;
      coef[0][lane + j] = sums[j] * inv_rows;
      coef[1][lane + j] = invstd[j] * sdyxhat * inv_rows;
    }
  }
  if constexpr (kEval) return;
  __syncthreads();
  if (!t.active) return;
  float b[V], k[V];
#pragma unroll
  for (int j = 0; j < V; ++j) {
    b[j] = coef[0][lane + j];
    k[j] = coef[1][lane + j];
  }
  grad_rows<T, V>(xg, yg, dyg, dxg, t, c, mean, a, b, k, fusion);
}

// Sums the chunk partials of grad_sums_kernel in chunk order (grid and block as
// moments_finalize_kernel). Writes out_sdy / out_sdyxhat [group][c] when non-null and, when
// coef is non-null, the dx coefficients coef[0][group][c] = sum(dy') / rows and
// coef[1][group][c] = invstd * sum(dy' * xhat) / rows (coef_stride = groups * c).
__global__ void __launch_bounds__(kBlockThreads)
    grad_finalize_kernel(const float* __restrict__ part_sdy, const float* __restrict__ part_sdyx,
                         int64_t rows, int64_t c, int64_t chunks, StatArgs st,
                         float* __restrict__ out_sdy, float* __restrict__ out_sdyxhat,
                         float* __restrict__ coef, int64_t coef_stride) {
  const int64_t col = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t group = blockIdx.y;
  float sums[2] = {0.f, 0.f};
  if (col < c) {
#pragma unroll 4
    for (int64_t k = threadIdx.y; k < chunks; k += blockDim.y) {
      const int64_t i = (group * chunks + k) * c + col;
      sums[0] += part_sdy[i];
      sums[1] += part_sdyx[i];
    }
  }
  __shared__ float scratch[2][kBlockThreads];
  sum_down_rows<2>(sums, scratch);
  if (threadIdx.y != 0 || col >= c) return;
  const int64_t i = group * c + col;
  const float invstd = st.invstd(i);
  const float sdyxhat = sums[1] * invstd;
  if (out_sdy) out_sdy[i] = sums[0];
  if (out_sdyxhat) out_sdyxhat[i] = sdyxhat;
  if (coef) {
    const float inv_rows = rows > 0 ? 1.f / static_cast<float>(rows) : 0.f;
    coef[i] = sums[0] * inv_rows;
    coef[coef_stride + i] = invstd * sdyxhat * inv_rows;
  }
}

// dx from precomputed coefficients (training mode, coef as written by grad_finalize_kernel) or
// dx = gamma * invstd * dy' (kEval, statistics constant; x and coef unused).
template <typename T, int V, bool kEval>
__global__ void __launch_bounds__(kBlockThreads)
    grad_apply_kernel(const T* __restrict__ x, const T* __restrict__ y, const T* __restrict__ dy,
                      int64_t rows, int64_t c, int64_t rows_per_chunk, StatArgs st,
                      const float* __restrict__ gamma, const float* __restrict__ coef,
                      int64_t coef_stride, NormFusion fusion, T* __restrict__ dx) {
  const Tile t = tile_of_thread<V>(rows, c, rows_per_chunk);
  if (!t.active) return;
  const int64_t off = t.group * rows * c;
  float mean[V], a[V], b[V], k[V];
#pragma unroll
  for (int j = 0; j < V; ++j) {
    const int64_t ch = t.col + j;
    const int64_t i = t.group * c + ch;
    const float invstd = st.invstd(i);
    a[j] = invstd * (gamma ? gamma[ch] : 1.f);
    if constexpr (!kEval) {
      mean[j] = st.mean[i];
      b[j] = coef[i];
      k[j] = coef[coef_stride + i];
    }
  }
  const T* yg = fusion.act != NormActivation::None ? y + off : nullptr;
  if constexpr (kEval) {
    scale_grad_rows<T, V>(yg, dy + off, dx + off, t, c, a, fusion);
  } else {
    grad_rows<T, V>(x + off, yg, dy + off, dx + off, t, c, mean, a, b, k, fusion);
  }
}

// dgamma[c] = sum over groups of sdyxhat[g][c], dbeta[c] = sum of sdy[g][c], in group order.
__global__ void sum_groups_kernel(const float* __restrict__ group_sdy,
                                  const float* __restrict__ group_sdyxhat, int64_t groups,
                                  int64_t c, float* __restrict__ dgamma,
                                  float* __restrict__ dbeta) {
  const int64_t col = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (col >= c) return;
  float sdy = 0.f, sdyxhat = 0.f;
  for (int64_t g = 0; g < groups; ++g) {
    sdy += group_sdy[g * c + col];
    sdyxhat += group_sdyxhat[g * c + col];
  }
  if (dgamma) dgamma[col] = sdyxhat;
  if (dbeta) dbeta[col] = sdy;
}

// In double: c is at most a few hundred, and this matches the op layer's arithmetic.
__global__ void update_running_kernel(int64_t c, double momentum, double eps, double unbias,
                                      const float* __restrict__ save_mean,
                                      const float* __restrict__ save_invstd,
                                      float* __restrict__ running_mean,
                                      float* __restrict__ running_var) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= c) return;
  const double invstd = save_invstd[i];
  const double var = 1.0 / (invstd * invstd) - eps;
  running_mean[i] =
      static_cast<float>((1.0 - momentum) * running_mean[i] + momentum * save_mean[i]);
  running_var[i] = static_cast<float>((1.0 - momentum) * running_var[i] + momentum * var * unbias);
}

// ---------------------------------------------------------------------------------------------
// Host side

// The block/grid decomposition of a [groups][rows][c] problem with V channels per thread.
struct Plan {
  int tx = 1, ty = kBlockThreads;  // threads along channels / rows; tx * ty == kBlockThreads
  int64_t col_blocks = 1;
  int64_t chunks = 1;  // row chunks per group (gridDim.y)
  int64_t rows_per_chunk = 1;
  int64_t groups = 1;

  dim3 grid() const {
    return dim3(static_cast<unsigned>(col_blocks), static_cast<unsigned>(chunks),
                static_cast<unsigned>(groups));
  }
  dim3 block() const { return dim3(static_cast<unsigned>(tx), static_cast<unsigned>(ty)); }
};

// Depends on the shape only (never on the device), so results are the same on every run.
Plan make_plan(int64_t groups, int64_t rows, int64_t c, int vec) {
  Plan p;
  p.groups = groups;
  const int64_t col_threads = ceil_div(c, vec);
  while (p.tx < kMaxTileX && p.tx < col_threads) p.tx *= 2;
  p.ty = kBlockThreads / p.tx;
  p.col_blocks = ceil_div(col_threads, p.tx);
  const int64_t wanted = std::max<int64_t>(1, kTargetBlocks / (p.col_blocks * groups));
  const int64_t useful = std::max<int64_t>(1, ceil_div(rows, p.ty * kMinRowsPerThread));
  const int64_t chunks = std::min({wanted, useful, kMaxChunks});
  p.rows_per_chunk = std::max<int64_t>(1, ceil_div(rows, chunks));
  p.chunks = std::max<int64_t>(1, ceil_div(rows, p.rows_per_chunk));
  return p;
}

dim3 finalize_grid(int64_t c, int64_t groups) {
  return dim3(static_cast<unsigned>(ceil_div(c, kFinalizeX)), static_cast<unsigned>(groups));
}
const dim3 kFinalizeBlock(kFinalizeX, kFinalizeY);

void check_groups(int64_t groups, const char* op) {
  if (groups > kMaxGroups) {
    throw std::invalid_argument(std::string(op) + ": batch of " + std::to_string(groups) +
                                " images exceeds the CUDA kernel's limit of " +
                                std::to_string(kMaxGroups));
  }
}

// Channels per thread: the widest vector (up to 16 bytes) that divides c and to which every
// given pointer is aligned.
template <typename T>
int pick_vec(int64_t c, std::initializer_list<const void*> ptrs) {
  for (int v = static_cast<int>(16 / sizeof(T)); v > 1; v /= 2) {
    if (c % v != 0) continue;
    const uintptr_t bytes = static_cast<uintptr_t>(v) * sizeof(T);
    bool aligned = true;
    for (const void* p : ptrs) {
      if (p && reinterpret_cast<uintptr_t>(p) % bytes != 0) aligned = false;
    }
    if (aligned) return v;
  }
  return 1;
}

// Calls fn(std::integral_constant<int, V>) for the vector width picked by pick_vec<T>.
template <typename T, typename Fn>
void dispatch_vec(int vec, Fn&& fn) {
  switch (vec) {
    case 8:
      if constexpr (sizeof(T) * 8 <= 16) {
        fn(std::integral_constant<int, 8>{});
        return;
      }
      break;
    case 4:
      fn(std::integral_constant<int, 4>{});
      return;
    case 2:
      fn(std::integral_constant<int, 2>{});
      return;
    default:
      break;
  }
  fn(std::integral_constant<int, 1>{});
}

// Scratch memory ordered on the stream (the driver's pool makes this cheap); freed on scope exit
// after the kernels enqueued before, also when a launch check throws.
class StreamWorkspace {
 public:
  StreamWorkspace(size_t floats, cudaStream_t stream) : stream_(stream) {
    if (floats > 0) {
      RG_KERNEL_CUDA_CHECK(
          cudaMallocAsync(reinterpret_cast<void**>(&ptr_), floats * sizeof(float), stream));
    }
  }
  ~StreamWorkspace() {
    if (ptr_) (void)cudaFreeAsync(ptr_, stream_);
  }
  StreamWorkspace(const StreamWorkspace&) = delete;
  StreamWorkspace& operator=(const StreamWorkspace&) = delete;
  float* get() const { return ptr_; }

 private:
  float* ptr_ = nullptr;
  cudaStream_t stream_;
};

// Training-mode forward of `groups` independent [rows, c] problems (statistics per group and
// channel).
template <typename T>
void forward_train(int64_t groups, int64_t rows, int64_t c, const T* x, const float* gamma,
                   const float* beta, float eps, NormFusion fusion, T* y, float* save_mean,
                   float* save_invstd, cudaStream_t stream, const char* op) {
  if (c <= 0 || groups <= 0) return;
  check_groups(groups, op);
  const ForwardArgs fwd{gamma, beta, eps, fusion, save_mean, save_invstd};
  dispatch_vec<T>(pick_vec<T>(c, {x, y}), [&](auto vec) {
    constexpr int V = decltype(vec)::value;
    const Plan p = make_plan(groups, rows, c, V);
    if (p.chunks == 1) {
      moments_kernel<T, V><<<p.grid(), p.block(), 0, stream>>>(x, rows, c, p.rows_per_chunk,
                                                               nullptr, nullptr, fwd, y);
      RG_KERNEL_LAUNCH_CHECK("moments_kernel");
      return;
    }
    const size_t part = static_cast<size_t>(groups * p.chunks * c);
    StreamWorkspace ws(2 * part, stream);
    moments_kernel<T, V><<<p.grid(), p.block(), 0, stream>>>(x, rows, c, p.rows_per_chunk, ws.get(),
                                                             ws.get() + part, fwd, y);
    RG_KERNEL_LAUNCH_CHECK("moments_kernel");
    moments_finalize_kernel<<<finalize_grid(c, groups), kFinalizeBlock, 0, stream>>>(
        ws.get(), ws.get() + part, rows, c, p.chunks, p.rows_per_chunk, eps, save_mean,
        save_invstd);
    RG_KERNEL_LAUNCH_CHECK("moments_finalize_kernel");
    const StatArgs st{save_mean, save_invstd, false, 0.f};
    normalize_kernel<T, V><<<p.grid(), p.block(), 0, stream>>>(x, rows, c, p.rows_per_chunk, st,
                                                               gamma, beta, fusion, y);
    RG_KERNEL_LAUNCH_CHECK("normalize_kernel");
  });
}

// Training-mode backward (statistics depend on x) of `groups` independent [rows, c] problems;
// dgamma/dbeta sum over the groups.
template <typename T>
void backward_train(int64_t groups, int64_t rows, int64_t c, const T* x, const T* y, const T* dy,
                    const float* gamma, const float* save_mean, const float* save_invstd,
                    NormFusion fusion, T* dx, float* dgamma, float* dbeta, cudaStream_t stream,
                    const char* op) {
  if (c <= 0) return;
  if (groups <= 0) {  // no images: zero parameter gradients, as the CPU kernel
    if (dgamma) RG_KERNEL_CUDA_CHECK(cudaMemsetAsync(dgamma, 0, c * sizeof(float), stream));
    if (dbeta) RG_KERNEL_CUDA_CHECK(cudaMemsetAsync(dbeta, 0, c * sizeof(float), stream));
    return;
  }
  check_groups(groups, op);
  const bool use_y = fusion.act != NormActivation::None;
  const StatArgs st{save_mean, save_invstd, false, 0.f};
  dispatch_vec<T>(pick_vec<T>(c, {x, use_y ? y : nullptr, dy, dx}), [&](auto vec) {
    constexpr int V = decltype(vec)::value;
    const Plan p = make_plan(groups, rows, c, V);
    const int64_t gc = groups * c;
    // With several groups, per-group sums go to the workspace and are summed in group order.
    const bool per_group = groups > 1 && (dgamma || dbeta);
    const int64_t part = p.chunks > 1 ? groups * p.chunks * c : 0;
    const int64_t coef_size = p.chunks > 1 ? 2 * gc : 0;
    StreamWorkspace ws(static_cast<size_t>(2 * part + coef_size + (per_group ? 2 * gc : 0)),
                       stream);
    // Workspace layout: part_sdy, part_sdyx [groups][chunks][c] and coef [2][groups][c] (several
    // chunks only), then group_sdy, group_sdyxhat [groups][c] (per_group only).
    float* part_sdy = p.chunks > 1 ? ws.get() : nullptr;
    float* part_sdyx = p.chunks > 1 ? ws.get() + part : nullptr;
    float* coef = p.chunks > 1 ? ws.get() + 2 * part : nullptr;
    float* group_sdy = per_group ? ws.get() + 2 * part + coef_size : nullptr;
    float* group_sdyxhat = per_group ? group_sdy + gc : nullptr;
    float* out_sdy = per_group ? group_sdy : (groups == 1 ? dbeta : nullptr);
    float* out_sdyxhat = per_group ? group_sdyxhat : (groups == 1 ? dgamma : nullptr);

    if (p.chunks == 1) {
      grad_sums_kernel<T, V, false>
          <<<p.grid(), p.block(), 0, stream>>>(x, y, dy, rows, c, p.rows_per_chunk, st, gamma,
                                               fusion, dx, nullptr, nullptr, out_sdy, out_sdyxhat);
      RG_KERNEL_LAUNCH_CHECK("grad_sums_kernel");
    } else {
      grad_sums_kernel<T, V, false>
          <<<p.grid(), p.block(), 0, stream>>>(x, y, dy, rows, c, p.rows_per_chunk, st, gamma,
                                               fusion, dx, part_sdy, part_sdyx, nullptr, nullptr);
      RG_KERNEL_LAUNCH_CHECK("grad_sums_kernel");
      grad_finalize_kernel<<<finalize_grid(c, groups), kFinalizeBlock, 0, stream>>>(
          part_sdy, part_sdyx, rows, c, p.chunks, st, out_sdy, out_sdyxhat, coef, gc);
      RG_KERNEL_LAUNCH_CHECK("grad_finalize_kernel");
      grad_apply_kernel<T, V, false><<<p.grid(), p.block(), 0, stream>>>(
          x, y, dy, rows, c, p.rows_per_chunk, st, gamma, coef, gc, fusion, dx);
      RG_KERNEL_LAUNCH_CHECK("grad_apply_kernel");
    }
    if (per_group) {
      sum_groups_kernel<<<static_cast<unsigned>(ceil_div(c, kBlockThreads)), kBlockThreads, 0,
                          stream>>>(group_sdy, group_sdyxhat, groups, c, dgamma, dbeta);
      RG_KERNEL_LAUNCH_CHECK("sum_groups_kernel");
    }
  });
}

}  // namespace

template <typename T>
void batch_norm_forward_train(const NormShape& s, const T* x, const float* gamma, const float* beta,
                              float eps, NormFusion fusion, T* y, float* save_mean,
                              float* save_invstd, cudaStream_t stream) {
  forward_train<T>(1, s.n * s.hw, s.c, x, gamma, beta, eps, fusion, y, save_mean, save_invstd,
                   stream, "batch_norm_forward_train");
}

template <typename T>
void batch_norm_forward_eval(const NormShape& s, const T* x, const float* gamma, const float* beta,
                             const float* mean, const float* var, float eps, NormFusion fusion,
                             T* y, cudaStream_t stream) {
  const int64_t rows = s.n * s.hw, c = s.c;
  if (c <= 0 || rows <= 0) return;
  const StatArgs st{mean, var, true, eps};
  dispatch_vec<T>(pick_vec<T>(c, {x, y}), [&](auto vec) {
    constexpr int V = decltype(vec)::value;
    const Plan p = make_plan(1, rows, c, V);
    normalize_kernel<T, V><<<p.grid(), p.block(), 0, stream>>>(x, rows, c, p.rows_per_chunk, st,
                                                               gamma, beta, fusion, y);
    RG_KERNEL_LAUNCH_CHECK("normalize_kernel");
  });
}

template <typename T>
void batch_norm_backward_train(const NormShape& s, const T* x, const T* y, const T* dy,
                               const float* gamma, const float* save_mean, const float* save_invstd,
                               NormFusion fusion, T* dx, float* dgamma, float* dbeta,
                               cudaStream_t stream) {
  backward_train<T>(1, s.n * s.hw, s.c, x, y, dy, gamma, save_mean, save_invstd, fusion, dx, dgamma,
                    dbeta, stream, "batch_norm_backward_train");
}

template <typename T>
void batch_norm_backward_eval(const NormShape& s, const T* x, const T* y, const T* dy,
                              const float* gamma, const float* mean, const float* var, float eps,
                              NormFusion fusion, T* dx, float* dgamma, float* dbeta,
                              cudaStream_t stream) {
  const int64_t rows = s.n * s.hw, c = s.c;
  if (c <= 0) return;
  const bool want_sums = dgamma || dbeta;
  const bool use_y = fusion.act != NormActivation::None;
  const StatArgs st{mean, var, true, eps};
  dispatch_vec<T>(
      pick_vec<T>(c, {want_sums ? x : nullptr, use_y ? y : nullptr, dy, dx}), [&](auto vec) {
        constexpr int V = decltype(vec)::value;
        const Plan p = make_plan(1, rows, c, V);
        if (!want_sums) {  // x is not read
          if (rows <= 0) return;
          grad_apply_kernel<T, V, true><<<p.grid(), p.block(), 0, stream>>>(
              x, y, dy, rows, c, p.rows_per_chunk, st, gamma, nullptr, 0, fusion, dx);
          RG_KERNEL_LAUNCH_CHECK("grad_apply_kernel");
          return;
        }
        if (p.chunks == 1) {
          grad_sums_kernel<T, V, true>
              <<<p.grid(), p.block(), 0, stream>>>(x, y, dy, rows, c, p.rows_per_chunk, st, gamma,
                                                   fusion, dx, nullptr, nullptr, dbeta, dgamma);
          RG_KERNEL_LAUNCH_CHECK("grad_sums_kernel");
          return;
        }
        const size_t part = static_cast<size_t>(p.chunks * c);
        StreamWorkspace ws(2 * part, stream);
        grad_sums_kernel<T, V, true><<<p.grid(), p.block(), 0, stream>>>(
            x, y, dy, rows, c, p.rows_per_chunk, st, gamma, fusion, dx, ws.get(), ws.get() + part,
            nullptr, nullptr);
        RG_KERNEL_LAUNCH_CHECK("grad_sums_kernel");
        grad_finalize_kernel<<<finalize_grid(c, 1), kFinalizeBlock, 0, stream>>>(
            ws.get(), ws.get() + part, rows, c, p.chunks, st, dbeta, dgamma, nullptr, 0);
        RG_KERNEL_LAUNCH_CHECK("grad_finalize_kernel");
      });
}

void batch_norm_update_running(int64_t c, int64_t count, float momentum, float eps,
                               const float* save_mean, const float* save_invstd,
                               float* running_mean, float* running_var, cudaStream_t stream) {
  if (c <= 0) return;
  // The op layer refuses training with one value per channel; should a caller still get here,
  // the biased variance is used rather than dividing by zero.
  const double unbias =
      count > 1 ? static_cast<double>(count) / static_cast<double>(count - 1) : 1.0;
  update_running_kernel<<<static_cast<unsigned>(ceil_div(c, kBlockThreads)), kBlockThreads, 0,
                          stream>>>(c, momentum, eps, unbias, save_mean, save_invstd, running_mean,
                                    running_var);
  RG_KERNEL_LAUNCH_CHECK("update_running_kernel");
}

template <typename T>
void instance_norm_forward(const NormShape& s, const T* x, const float* gamma, const float* beta,
                           float eps, NormFusion fusion, T* y, float* save_mean, float* save_invstd,
                           cudaStream_t stream) {
  forward_train<T>(s.n, s.hw, s.c, x, gamma, beta, eps, fusion, y, save_mean, save_invstd, stream,
                   "instance_norm_forward");
}

template <typename T>
void instance_norm_backward(const NormShape& s, const T* x, const T* y, const T* dy,
                            const float* gamma, const float* save_mean, const float* save_invstd,
                            NormFusion fusion, T* dx, float* dgamma, float* dbeta,
                            cudaStream_t stream) {
  backward_train<T>(s.n, s.hw, s.c, x, y, dy, gamma, save_mean, save_invstd, fusion, dx, dgamma,
                    dbeta, stream, "instance_norm_backward");
}

#define RG_INSTANTIATE_CUDA_NORM(T)                                                                \
  template void batch_norm_forward_train<T>(const NormShape&, const T*, const float*,              \
                                            const float*, float, NormFusion, T*, float*, float*,   \
                                            cudaStream_t);                                         \
  template void batch_norm_forward_eval<T>(const NormShape&, const T*, const float*, const float*, \
                                           const float*, const float*, float, NormFusion, T*,      \
                                           cudaStream_t);                                          \
  template void batch_norm_backward_train<T>(const NormShape&, const T*, const T*, const T*,       \
                                             const float*, const float*, const float*, NormFusion, \
                                             T*, float*, float*, cudaStream_t);                    \
  template void batch_norm_backward_eval<T>(const NormShape&, const T*, const T*, const T*,        \
                                            const float*, const float*, const float*, float,       \
                                            NormFusion, T*, float*, float*, cudaStream_t);         \
  template void instance_norm_forward<T>(const NormShape&, const T*, const float*, const float*,   \
                                         float, NormFusion, T*, float*, float*, cudaStream_t);     \
  template void instance_norm_backward<T>(const NormShape&, const T*, const T*, const T*,          \
                                          const float*, const float*, const float*, NormFusion,    \
                                          T*, float*, float*, cudaStream_t);

RG_INSTANTIATE_CUDA_NORM(float)
RG_INSTANTIATE_CUDA_NORM(bf16)

#undef RG_INSTANTIATE_CUDA_NORM

}  // namespace rg::kernels::cuda
