// CUDA elementwise arithmetic, activations and reductions (kernels/cuda/elementwise.h).
//
// Every elementwise kernel maps fp32 functors over the elements: values are widened to fp32 in
// registers and rounded once on the store, with the CPU reference's formulas. Contiguous
// operands whose pointers are 16-byte aligned are moved with 16-byte vector loads/stores
// (4 floats or 8 bf16); the few trailing elements past the last full vector are handled by
// block 0. Outputs may alias an input element for element (in-place ops), so no pointer is
// declared __restrict__.
//
// Binary ops first simplify the broadcast: size-1 dimensions are dropped and neighbours that
// are contiguous with each other in both operands are merged. Each operand is then either
// "banded" (its index is (i / inner) % period for output element i: contiguous, scalar,
// a [C] vector against NHWC, a per-sample [N,1,1,1] factor, ...) or general (5-D index
// arithmetic per element). Two banded operands with inner == 1 and periods that are whole
// vectors take the vectorized path.
//
// Reductions are deterministic: the work split depends only on the shape, partial sums are
// combined in a fixed tree order, and no floating-point atomics are used. sum_columns needs a
// second pass over per-chunk partials; their buffer comes from cudaMallocAsync/cudaFreeAsync
// on the caller's stream (stream ordered, served from the driver's pool, legal inside CUDA
// graph capture), since the kernel library has no allocator of its own.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/device_util.cuh"

namespace rg::kernels::cuda {

namespace {

constexpr int kThreads = 256;
// Below this many elements the vector path's setup buys nothing.
constexpr int64_t kVectorMinElements = 1024;




// 16 bytes of T, moved as one uint4. The copy between the uint4 and the element array goes
// through memcpy (as in conv_tile.cuh): reading a Pack<T> through a uint4 pointer breaks strict
// aliasing, and g++ -O2 then reads the array before the store (garbage on the CPU emulation's
// LeakyReLU and Tanh vector paths). nvcc compiles the memcpy of 16 aligned bytes to the same
// single vector load or store.
template <typename T>
constexpr int kVec = 16 / static_cast<int>(sizeof(T));
template <typename T>
struct alignas(16) Pack {
  T v[kVec<T>];
};
template <typename T>
__device__ __forceinline__ Pack<T> load_pack(const T* p) {
  const uint4 raw = *reinterpret_cast<const uint4*>(p);
  Pack<T> r;
  memcpy(&r, &raw, sizeof(raw));
  return r;
}
template <typename T>
__device__ __forceinline__ void store_pack(T* p, const Pack<T>& r) {
  uint4 raw;
  memcpy(&raw, &r, sizeof(raw));
  *reinterpret_cast<uint4*>(p) = raw;
}


// ---------------------------------------------------------------- functors (fp32)

struct AddOp {
  __device__ float operator()(float a, float b) const { return a + b; }
};
struct SubOp {
  __device__ float operator()(float a, float b) const { return a - b; }
};
struct MulOp {
  __device__ float operator()(float a, float b) const { return a * b; }
};
struct DivOp {
  __device__ float operator()(float a, float b) const { return a / b; }
};

struct NegOp {
  __device__ float operator()(float v) const { return -v; }
};
struct ExpOp {
  __device__ float operator()(float v) const { return expf(v); }
};
struct LogOp {
  __device__ float operator()(float v) const { return logf(v); }
};
struct SqrtOp {
  __device__ float operator()(float v) const { return sqrtf(v); }
};
struct SquareOp {
  __device__ float operator()(float v) const { return v * v; }
};
struct AddScalarOp {
  float c;
  __device__ float operator()(float v) const { return v + c; }
};
struct MulScalarOp {
  float c;
  __device__ float operator()(float v) const { return v * c; }
};

// NaN inputs give 0 as in the CPU reference (the comparison is false).
struct ReluOp {
  __device__ float operator()(float v) const { return v > 0.f ? v : 0.f; }
};
struct LeakyReluOp {
  float slope;
  __device__ float operator()(float v) const { return v > 0.f ? v : v * slope; }
};
struct SigmoidOp {
  // Two branches keep expf() from overflowing for large |v|.
  __device__ float operator()(float v) const {
    if (v >= 0.f) return 1.f / (1.f + expf(-v));
    const float e = expf(v);
    return e / (1.f + e);
  }
};
struct TanhOp {
  __device__ float operator()(float v) const { return tanhf(v); }
};

// Backward functors take (y, dy).
struct ReluBackOp {
  __device__ float operator()(float y, float dy) const { return y > 0.f ? dy : 0.f; }
};
struct LeakyReluBackOp {
  float slope;
  __device__ float operator()(float y, float dy) const { return y > 0.f ? dy : dy * slope; }
};
struct SigmoidBackOp {
  __device__ float operator()(float y, float dy) const { return dy * y * (1.f - y); }
};
struct TanhBackOp {
  __device__ float operator()(float y, float dy) const { return dy * (1.f - y * y); }
};

// ---------------------------------------------------------------- flat maps

template <int kInputs, typename F>
__device__ __forceinline__ float apply(const F& f, float a, float b) {
  if constexpr (kInputs == 1) {
    return f(a);
  } else {
    return f(a, b);
  }
}

// y[i] = f(x0[i] [, x1[i]]) for i < n.
template <typename T, int kInputs, typename F>
__global__ void map_kernel(int64_t n, const T* x0, const T* x1, T* y, F f) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) {
    const float b = kInputs == 2 ? to_f32(x1[i]) : 0.f;
    y[i] = from_f32<T>(apply<kInputs>(f, to_f32(x0[i]), b));
  }
}

// Same with 16-byte vectors; all pointers 16-byte aligned. Block 0 finishes the < kVec tail.
template <typename T, int kInputs, typename F>
__global__ void map_vector_kernel(int64_t n, const T* x0, const T* x1, T* y, F f) {
  constexpr int V = kVec<T>;
  const int64_t vectors = n / V;
  for (int64_t j = global_thread(); j < vectors; j += grid_threads()) {
    const Pack<T> a = load_pack(x0 + j * V);
    Pack<T> b;
    if constexpr (kInputs == 2) b = load_pack(x1 + j * V);
    Pack<T> r;
#pragma unroll
    for (int k = 0; k < V; ++k) {
      const float bv = kInputs == 2 ? to_f32(b.v[k]) : 0.f;
      r.v[k] = from_f32<T>(apply<kInputs>(f, to_f32(a.v[k]), bv));
    }
    store_pack(y + j * V, r);
  }
  const int64_t i = vectors * V + threadIdx.x;
  if (blockIdx.x == 0 && i < n) {
    const float bv = kInputs == 2 ? to_f32(x1[i]) : 0.f;
    y[i] = from_f32<T>(apply<kInputs>(f, to_f32(x0[i]), bv));
  }
}

template <typename T, int kInputs, typename F>
void launch_map(int64_t n, const T* x0, const T* x1, T* y, F f, cudaStream_t stream) {
  if (n <= 0) return;
  const bool vector =
      n >= kVectorMinElements && aligned16(x0) && aligned16(y) && (kInputs == 1 || aligned16(x1));
  if (vector) {
    map_vector_kernel<T, kInputs, F>
        <<<grid_for(n / kVec<T>), kThreads, 0, stream>>>(n, x0, x1, y, f);
    RG_KERNEL_LAUNCH_CHECK("map_vector_kernel");
  } else {
    map_kernel<T, kInputs, F><<<grid_for(n), kThreads, 0, stream>>>(n, x0, x1, y, f);
    RG_KERNEL_LAUNCH_CHECK("map_kernel");
  }
}

// ---------------------------------------------------------------- broadcast binary ops

// The broadcast after dropping size-1 dimensions and merging neighbours that are contiguous
// with each other in both operands; dims [0, ndim) are used, outermost first.
struct Simplified {
  int ndim = 0;
  int64_t shape[5] = {1, 1, 1, 1, 1};
  int64_t a_strides[5] = {0, 0, 0, 0, 0};
  int64_t b_strides[5] = {0, 0, 0, 0, 0};
};

Simplified simplify(const BroadcastShape& s) {
  Simplified r;
  for (int d = 0; d < 5; ++d) {
    if (s.shape[d] == 1) continue;
    const int last = r.ndim - 1;
    if (last >= 0 && r.a_strides[last] == s.a_strides[d] * s.shape[d] &&
        r.b_strides[last] == s.b_strides[d] * s.shape[d]) {
      r.shape[last] *= s.shape[d];
      r.a_strides[last] = s.a_strides[d];
      r.b_strides[last] = s.b_strides[d];
    } else {
      r.shape[r.ndim] = s.shape[d];
      r.a_strides[r.ndim] = s.a_strides[d];
      r.b_strides[r.ndim] = s.b_strides[d];
      ++r.ndim;
    }
  }
  return r;
}

// Operand element for output element i: (i / inner) % period.
struct Band {
  bool ok = false;
  int64_t inner = 1;
  int64_t period = 1;
};

// An operand is banded when its non-zero strides sit on one run of dimensions [first, last]
// that is packed contiguously (innermost stride 1).
Band band_of(const Simplified& s, const int64_t* strides) {
  int first = -1, last = -1;
  for (int d = 0; d < s.ndim; ++d) {
    if (strides[d] != 0) {
      if (first < 0) first = d;
      last = d;
    }
  }
  Band band;
  if (first < 0) {  // a scalar
    band.ok = true;
    return band;
  }
  int64_t expected = 1;
  for (int d = last; d >= first; --d) {
    if (strides[d] != expected) return band;
    expected *= s.shape[d];
  }
  band.ok = true;
  band.period = expected;
  for (int d = last + 1; d < s.ndim; ++d) band.inner *= s.shape[d];
  return band;
}

template <typename Index>
struct BandIndex {
  Index inner, period;
  bool divide, wrap;
  __device__ __forceinline__ Index operator()(Index i) const {
    Index q = divide ? i / inner : i;
    return wrap ? q % period : q;
  }
};

template <typename Index>
BandIndex<Index> band_index(const Band& band, int64_t total) {
  return {static_cast<Index>(band.inner), static_cast<Index>(band.period), band.inner > 1,
          band.inner * band.period < total};
}

template <typename T, typename Op, typename Index>
__global__ void binary_band_kernel(int64_t total, const T* a, BandIndex<Index> a_index, const T* b,
                                   BandIndex<Index> b_index, T* out, Op op) {
  for (int64_t i = global_thread(); i < total; i += grid_threads()) {
    const Index ii = static_cast<Index>(i);
    out[i] = from_f32<T>(op(to_f32(a[a_index(ii)]), to_f32(b[b_index(ii)])));
  }
}

// Both operands banded with inner == 1: a vector of output elements [jV, jV+V) reads the
// vector j (contiguous) or j % (period / V) (periodic, period a multiple of V) of each operand.
template <typename T, typename Op, bool kWrapA, bool kWrapB>
__global__ void binary_vector_kernel(int64_t total, const T* a, int64_t a_period_vectors,
                                     const T* b, int64_t b_period_vectors, T* out, Op op) {
  constexpr int V = kVec<T>;
  const int64_t vectors = total / V;
  for (int64_t j = global_thread(); j < vectors; j += grid_threads()) {
    const int64_t ja = kWrapA ? j % a_period_vectors : j;
    const int64_t jb = kWrapB ? j % b_period_vectors : j;
    const Pack<T> av = load_pack(a + ja * V);
    const Pack<T> bv = load_pack(b + jb * V);
    Pack<T> r;
#pragma unroll
    for (int k = 0; k < V; ++k) r.v[k] = from_f32<T>(op(to_f32(av.v[k]), to_f32(bv.v[k])));
    store_pack(out + j * V, r);
  }
  const int64_t i = vectors * V + threadIdx.x;
  if (blockIdx.x == 0 && i < total) {
    const int64_t ia = kWrapA ? i % (a_period_vectors * V) : i;
    const int64_t ib = kWrapB ? i % (b_period_vectors * V) : i;
    out[i] = from_f32<T>(op(to_f32(a[ia]), to_f32(b[ib])));
  }
}

template <typename T, typename Op, typename Index>
__global__ void binary_general_kernel(int64_t total, Simplified s, const T* a, const T* b, T* out,
                                      Op op) {
  for (int64_t i = global_thread(); i < total; i += grid_threads()) {
    Index rem = static_cast<Index>(i);
    int64_t ao = 0, bo = 0;
#pragma unroll
    for (int d = 4; d >= 0; --d) {
      if (d < s.ndim) {
        const Index size = static_cast<Index>(s.shape[d]);
        const Index coord = rem % size;
        rem /= size;
        ao += static_cast<int64_t>(coord) * s.a_strides[d];
        bo += static_cast<int64_t>(coord) * s.b_strides[d];
      }
    }
    out[i] = from_f32<T>(op(to_f32(a[ao]), to_f32(b[bo])));
  }
}

template <typename T, typename Op, bool kWrapA, bool kWrapB>
void launch_binary_vector(int64_t total, const T* a, const Band& ba, const T* b, const Band& bb,
                          T* out, Op op, cudaStream_t stream) {
  constexpr int V = kVec<T>;
  binary_vector_kernel<T, Op, kWrapA, kWrapB><<<grid_for(total / V), kThreads, 0, stream>>>(
      total, a, ba.period / V, b, bb.period / V, out, op);
  RG_KERNEL_LAUNCH_CHECK("binary_vector_kernel");
}

template <typename T, typename Op>
void binary_dispatch(const BroadcastShape& shape, const T* a, const T* b, T* out, Op op,
                     cudaStream_t stream) {
  const int64_t total = shape.numel();
  if (total <= 0) return;
  const Simplified s = simplify(shape);
  const Band ba = band_of(s, s.a_strides), bb = band_of(s, s.b_strides);
  // 32-bit index arithmetic whenever i + the grid stride cannot overflow it.
  const bool small = total < (int64_t{1} << 31);
  if (ba.ok && bb.ok) {
    const bool a_contiguous = ba.inner == 1 && ba.period == total;
    const bool b_contiguous = bb.inner == 1 && bb.period == total;
    if (a_contiguous && b_contiguous) {
      launch_map<T, 2>(total, a, b, out, op, stream);
      return;
    }
    constexpr int V = kVec<T>;
    const bool a_vec = a_contiguous || (ba.inner == 1 && ba.period % V == 0);
    const bool b_vec = b_contiguous || (bb.inner == 1 && bb.period % V == 0);
    if (a_vec && b_vec && total >= kVectorMinElements && aligned16(a) && aligned16(b) &&
        aligned16(out)) {
      if (a_contiguous) {
        launch_binary_vector<T, Op, false, true>(total, a, ba, b, bb, out, op, stream);
      } else if (b_contiguous) {
        launch_binary_vector<T, Op, true, false>(total, a, ba, b, bb, out, op, stream);
      } else {
        launch_binary_vector<T, Op, true, true>(total, a, ba, b, bb, out, op, stream);
      }
      return;
    }
    if (small) {
      binary_band_kernel<T, Op, uint32_t><<<grid_for(total), kThreads, 0, stream>>>(
          total, a, band_index<uint32_t>(ba, total), b, band_index<uint32_t>(bb, total), out, op);
    } else {
      binary_band_kernel<T, Op, uint64_t><<<grid_for(total), kThreads, 0, stream>>>(
          total, a, band_index<uint64_t>(ba, total), b, band_index<uint64_t>(bb, total), out, op);
    }
    RG_KERNEL_LAUNCH_CHECK("binary_band_kernel");
    return;
  }
  if (small) {
    binary_general_kernel<T, Op, uint32_t>
        <<<grid_for(total), kThreads, 0, stream>>>(total, s, a, b, out, op);
  } else {
    binary_general_kernel<T, Op, uint64_t>
        <<<grid_for(total), kThreads, 0, stream>>>(total, s, a, b, out, op);
  }
  RG_KERNEL_LAUNCH_CHECK("binary_general_kernel");
}

// ---------------------------------------------------------------- reductions

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
  return v;
}

// Sum over the block; the result is valid in thread 0. `scratch` holds 32 floats; the trailing
// barrier lets the caller reuse it at once.
__device__ float block_sum(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int warps = (blockDim.x + 31) >> 5;
  v = warp_sum(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < warps ? scratch[lane] : 0.f;
    v = warp_sum(v);
  }
  __syncthreads();
  return v;
}

// kGroup lanes per row (rows of at most kGroup columns, or any length for kGroup == 32),
// 32 / kGroup rows per warp, then a shuffle tree inside each group.
template <typename T, int kGroup>
__global__ void sum_rows_group_kernel(int64_t rows, int64_t cols, const T* x, float* out) {
  constexpr int kRowsPerWarp = 32 / kGroup;
  const int lane = threadIdx.x & 31;
  const int64_t warp = global_thread() >> 5;
  const int64_t warps = grid_threads() >> 5;
  // The loop bound is uniform over the warp, so every lane reaches the shuffles.
  for (int64_t base = warp * kRowsPerWarp; base < rows; base += warps * kRowsPerWarp) {
    const int64_t r = base + lane / kGroup;
    float acc = 0.f;
    if (r < rows) {
      const T* row = x + r * cols;
      for (int64_t c = lane % kGroup; c < cols; c += kGroup) acc += to_f32(row[c]);
    }
#pragma unroll
    for (int offset = kGroup / 2; offset > 0; offset >>= 1) {
      acc += __shfl_down_sync(0xffffffffu, acc, offset, kGroup);
    }
    if (lane % kGroup == 0 && r < rows) out[r] = acc;
  }
}

// Long rows: one block per row.
template <typename T>
__global__ void sum_rows_block_kernel(int64_t rows, int64_t cols, const T* x, float* out) {
  __shared__ float scratch[32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* row = x + r * cols;
    float acc = 0.f;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) acc += to_f32(row[c]);
    acc = block_sum(acc, scratch);
    if (threadIdx.x == 0) out[r] = acc;
  }
}

template <typename T, int kGroup>
void launch_sum_rows_group(int64_t rows, int64_t cols, const T* x, float* out,
                           cudaStream_t stream) {
  const int64_t warps = (rows + (32 / kGroup) - 1) / (32 / kGroup);
  sum_rows_group_kernel<T, kGroup>
      <<<grid_for(warps * 32), kThreads, 0, stream>>>(rows, cols, x, out);
  RG_KERNEL_LAUNCH_CHECK("sum_rows_group_kernel");
}

// Block (tile, chunk) sums rows [chunk * rows_per_chunk, ...) of the `lanes_c` columns
// starting at tile * lanes_c into out[chunk * cols + column]. Thread t reads column t % lanes_c
// of every (blockDim / lanes_c)-th row, so for lanes_c == cols a warp reads consecutive memory.
template <typename T>
__global__ void column_sums_kernel(int64_t rows, int64_t cols, int lanes_c, int64_t rows_per_chunk,
                                   const T* x, float* out) {
  __shared__ float partial[kThreads];
  const int tid = threadIdx.x;
  const int lanes_r = blockDim.x / lanes_c;
  const int lane_c = tid % lanes_c, lane_r = tid / lanes_c;
  const int64_t c = static_cast<int64_t>(blockIdx.x) * lanes_c + lane_c;
  const int64_t r_begin = static_cast<int64_t>(blockIdx.y) * rows_per_chunk;
  const int64_t r_end = r_begin + rows_per_chunk < rows ? r_begin + rows_per_chunk : rows;
  float acc = 0.f;
  if (c < cols) {
    for (int64_t r = r_begin + lane_r; r < r_end; r += lanes_r) acc += to_f32(x[r * cols + c]);
  }
  partial[tid] = acc;
  __syncthreads();
  // Tree over the row lanes (any count): step s folds lane r + s into lane r.
  int span = 1;
  while (span < lanes_r) span <<= 1;
  for (int s = span >> 1; s > 0; s >>= 1) {
    if (lane_r < s && lane_r + s < lanes_r) partial[tid] += partial[tid + s * lanes_c];
    __syncthreads();
  }
  if (lane_r == 0 && c < cols) out[static_cast<int64_t>(blockIdx.y) * cols + c] = partial[tid];
}

// Scratch memory ordered on a stream: freed (asynchronously) when the launches using it have
// been enqueued, reused by the driver's pool only after they complete.
class StreamScratch {
 public:
  StreamScratch(size_t bytes, cudaStream_t stream) : stream_(stream) {
    RG_KERNEL_CUDA_CHECK(cudaMallocAsync(&ptr_, bytes, stream));
  }
  ~StreamScratch() {
    if (ptr_ != nullptr) cudaFreeAsync(ptr_, stream_);
  }
  StreamScratch(const StreamScratch&) = delete;
  StreamScratch& operator=(const StreamScratch&) = delete;
  float* floats() const { return static_cast<float*>(ptr_); }

 private:
  void* ptr_ = nullptr;
  cudaStream_t stream_;
};

}  // namespace

// ---------------------------------------------------------------- entry points

template <typename T>
void binary_forward(BinaryOp op, const BroadcastShape& s, const T* a, const T* b, T* out,
                    cudaStream_t stream) {
  switch (op) {
    case BinaryOp::Add:
      binary_dispatch(s, a, b, out, AddOp{}, stream);
      break;
    case BinaryOp::Sub:
      binary_dispatch(s, a, b, out, SubOp{}, stream);
      break;
    case BinaryOp::Mul:
      binary_dispatch(s, a, b, out, MulOp{}, stream);
      break;
    case BinaryOp::Div:
      binary_dispatch(s, a, b, out, DivOp{}, stream);
      break;
  }
}

template <typename T>
void unary_forward(UnaryOp op, float scalar, int64_t n, const T* x, T* y, cudaStream_t stream) {
  const T* none = nullptr;
  switch (op) {
    case UnaryOp::Neg:
      launch_map<T, 1>(n, x, none, y, NegOp{}, stream);
      break;
    case UnaryOp::Exp:
      launch_map<T, 1>(n, x, none, y, ExpOp{}, stream);
      break;
    case UnaryOp::Log:
      launch_map<T, 1>(n, x, none, y, LogOp{}, stream);
      break;
    case UnaryOp::Sqrt:
      launch_map<T, 1>(n, x, none, y, SqrtOp{}, stream);
      break;
    case UnaryOp::Square:
      launch_map<T, 1>(n, x, none, y, SquareOp{}, stream);
      break;
    case UnaryOp::AddScalar:
      launch_map<T, 1>(n, x, none, y, AddScalarOp{scalar}, stream);
      break;
    case UnaryOp::MulScalar:
      launch_map<T, 1>(n, x, none, y, MulScalarOp{scalar}, stream);
      break;
  }
}

template <typename T>
void activation_forward(Activation act, float negative_slope, int64_t n, const T* x, T* y,
                        cudaStream_t stream) {
  const T* none = nullptr;
  switch (act) {
    case Activation::ReLU:
      launch_map<T, 1>(n, x, none, y, ReluOp{}, stream);
      break;
    case Activation::LeakyReLU:
      launch_map<T, 1>(n, x, none, y, LeakyReluOp{negative_slope}, stream);
      break;
    case Activation::Sigmoid:
      launch_map<T, 1>(n, x, none, y, SigmoidOp{}, stream);
      break;
    case Activation::Tanh:
      launch_map<T, 1>(n, x, none, y, TanhOp{}, stream);
      break;
  }
}

template <typename T>
void activation_backward(Activation act, float negative_slope, int64_t n, const T* y, const T* dy,
                         T* dx, cudaStream_t stream) {
  switch (act) {
    case Activation::ReLU:
      launch_map<T, 2>(n, y, dy, dx, ReluBackOp{}, stream);
      break;
    case Activation::LeakyReLU:
      launch_map<T, 2>(n, y, dy, dx, LeakyReluBackOp{negative_slope}, stream);
      break;
    case Activation::Sigmoid:
      launch_map<T, 2>(n, y, dy, dx, SigmoidBackOp{}, stream);
      break;
    case Activation::Tanh:
      launch_map<T, 2>(n, y, dy, dx, TanhBackOp{}, stream);
      break;
  }
}

template <typename T>
void sum_rows(int64_t rows, int64_t cols, const T* x, float* out, cudaStream_t stream) {
  if (rows <= 0) return;
  if (cols <= 0) {
    RG_KERNEL_CUDA_CHECK(
        cudaMemsetAsync(out, 0, static_cast<size_t>(rows) * sizeof(float), stream));
    return;
  }
  // Short rows share a warp (a power-of-two group of lanes per row); rows up to a few thousand
  // get a warp; longer rows, or too few rows to fill the GPU with warps, a block.
  const bool block_per_row = cols > 4096 || (cols > 256 && rows < 1024);
  if (block_per_row) {
    const int blocks = static_cast<int>(std::min<int64_t>(rows, kMaxBlocks));
    sum_rows_block_kernel<T><<<blocks, kThreads, 0, stream>>>(rows, cols, x, out);
    RG_KERNEL_LAUNCH_CHECK("sum_rows_block_kernel");
  } else if (cols <= 1) {
    launch_sum_rows_group<T, 1>(rows, cols, x, out, stream);
  } else if (cols <= 2) {
    launch_sum_rows_group<T, 2>(rows, cols, x, out, stream);
  } else if (cols <= 4) {
    launch_sum_rows_group<T, 4>(rows, cols, x, out, stream);
  } else if (cols <= 8) {
    launch_sum_rows_group<T, 8>(rows, cols, x, out, stream);
  } else if (cols <= 16) {
    launch_sum_rows_group<T, 16>(rows, cols, x, out, stream);
  } else {
    launch_sum_rows_group<T, 32>(rows, cols, x, out, stream);
  }
}

template <typename T>
void sum_columns(int64_t rows, int64_t cols, const T* x, float* out, cudaStream_t stream) {
  if (cols <= 0) return;
  if (rows <= 0) {
    RG_KERNEL_CUDA_CHECK(
        cudaMemsetAsync(out, 0, static_cast<size_t>(cols) * sizeof(float), stream));
    return;
  }
  // Up to 256 columns: one column tile holding every column, 256 / cols row lanes. Wider:
  // tiles of 32 columns (one warp reads 32 neighbours of a row) with 8 row lanes.
  const int lanes_c = cols <= kThreads ? static_cast<int>(cols) : 32;
  const int lanes_r = cols <= kThreads ? kThreads / lanes_c : kThreads / 32;
  const int threads = lanes_c * lanes_r;
  const int64_t tiles = (cols + lanes_c - 1) / lanes_c;
  // Split the rows into chunks until there are about 1024 blocks, keeping >= 16 rows per lane.
  constexpr int64_t kTargetBlocks = 1024;
  const int64_t max_chunks_by_rows = std::max<int64_t>(1, rows / (int64_t{16} * lanes_r));
  const int64_t wanted_chunks = std::max<int64_t>(1, kTargetBlocks / tiles);
  int64_t chunks = std::min(max_chunks_by_rows, wanted_chunks);
  const int64_t rows_per_chunk = (rows + chunks - 1) / chunks;
  chunks = (rows + rows_per_chunk - 1) / rows_per_chunk;
  if (chunks == 1) {
    column_sums_kernel<T><<<dim3(static_cast<unsigned>(tiles), 1), threads, 0, stream>>>(
        rows, cols, lanes_c, rows, x, out);
    RG_KERNEL_LAUNCH_CHECK("column_sums_kernel");
    return;
  }
  StreamScratch partials(static_cast<size_t>(chunks * cols) * sizeof(float), stream);
  column_sums_kernel<T>
      <<<dim3(static_cast<unsigned>(tiles), static_cast<unsigned>(chunks)), threads, 0, stream>>>(
          rows, cols, lanes_c, rows_per_chunk, x, partials.floats());
  RG_KERNEL_LAUNCH_CHECK("column_sums_kernel");
  // The partials are a [chunks][cols] matrix: the same kernel, one chunk, finishes the sum.
  column_sums_kernel<float><<<dim3(static_cast<unsigned>(tiles), 1), threads, 0, stream>>>(
      chunks, cols, lanes_c, chunks, partials.floats(), out);
  RG_KERNEL_LAUNCH_CHECK("column_sums_kernel");
}

template <typename T>
void accumulate(int64_t n, const T* src, T* dst, cudaStream_t stream) {
  launch_map<T, 2>(n, dst, src, dst, AddOp{}, stream);
}

#define RG_INSTANTIATE(T)                                                                      \
  template void binary_forward<T>(BinaryOp, const BroadcastShape&, const T*, const T*, T*,     \
                                  cudaStream_t);                                               \
  template void unary_forward<T>(UnaryOp, float, int64_t, const T*, T*, cudaStream_t);         \
  template void activation_forward<T>(Activation, float, int64_t, const T*, T*, cudaStream_t); \
  template void activation_backward<T>(Activation, float, int64_t, const T*, const T*, T*,     \
                                       cudaStream_t);                                          \
  template void sum_rows<T>(int64_t, int64_t, const T*, float*, cudaStream_t);                 \
  template void sum_columns<T>(int64_t, int64_t, const T*, float*, cudaStream_t);              \
  template void accumulate<T>(int64_t, const T*, T*, cudaStream_t);
RG_INSTANTIATE(float)
RG_INSTANTIATE(bf16)
#undef RG_INSTANTIATE

}  // namespace rg::kernels::cuda
