// Convolution forward as an implicit GEMM: y[m][co] = sum_k A[m][k] * W[co][k] (+ bias[co]),
// m = (image, oh, ow) over n*out_h*out_w output pixels, k = (kh, kw, ci) over kh*kw*c_in. A is
// the im2col matrix gathered from NHWC x while loading (zero where the patch is padding); with
// OHWI weights row co of W is contiguous in k. Both operands are read along k, in 16-byte
// chunks when c_in (A) or K (B) and the pointer allow it. Few output tiles with a long K (the
// U-Net's deep layers: 1-64 pixels, K = 8192) split K (conv_tile.cuh).
#include "kernels/cuda/conv.h"
#include "kernels/cuda/conv_tile.cuh"

namespace rg::kernels::cuda {
namespace conv_detail {
namespace {

template <typename T>
struct ForwardParams {
  const T* x;
  const T* wt;
  const float* bias;  // may be null
  T* y;
  float* partials;       // split-K: fp32 partials [split][m][n] instead of y (null: no split)
  int64_t split_stride;  // m * n
  int k_per_split;       // multiple of BK
  int h, w, c_in, kw, sh, sw, ph, pw;
  int m, n, k;  // GEMM: output pixels, c_out, kh*kw*c_in
  Divisor out_hw, out_w, c_in_div, kw_div;
};

// A: im2col(x)[m][k] for the block's BM output pixels.
template <typename T, int ROWS, int BK, int THREADS, int VEC>
class PatchRows {
  using Assign = AlongKAssignment<ROWS, BK, THREADS, VEC>;
  static constexpr int kPasses = Assign::kPasses;

 public:
  __device__ PatchRows(const ForwardParams<T>& p, int m0, int tid)
      : p_(p), tid_(tid), k_off_(Assign::k_offset(tid)) {
#pragma unroll
    for (int pass = 0; pass < kPasses; ++pass) {
      const int m = m0 + Assign::row(tid, pass);
      if (m < p.m) {
        const int img = p.out_hw.div(m);
        const int rem = m - img * p.out_hw.value();
        const int oh = p.out_w.div(rem);
        const int ow = rem - oh * p.out_w.value();
        image_base_[pass] = img * p.h * p.w;
        ih0_[pass] = oh * p.sh - p.ph;
        iw0_[pass] = ow * p.sw - p.pw;
      } else {
        image_base_[pass] = 0;
        ih0_[pass] = kFarAway;
        iw0_[pass] = kFarAway;
      }
    }
  }

  __device__ __forceinline__ void load(int k0) {
    const int k = k0 + k_off_;
    const bool k_valid = k < p_.k;
    int r = 0, s = 0, ci = 0;
    if (k_valid) {
      const int tap = p_.c_in_div.div(k);
      ci = k - tap * p_.c_in;
      r = p_.kw_div.div(tap);
      s = tap - r * p_.kw;
    }
#pragma unroll
    for (int pass = 0; pass < kPasses; ++pass) {
      const int ih = ih0_[pass] + r, iw = iw0_[pass] + s;
      if (k_valid && static_cast<unsigned>(ih) < static_cast<unsigned>(p_.h) &&
          static_cast<unsigned>(iw) < static_cast<unsigned>(p_.w)) {
        const int64_t pixel = image_base_[pass] + ih * p_.w + iw;
        chunk_[pass] = load_chunk<T, VEC>(p_.x + pixel * p_.c_in + ci);
      } else {
        chunk_[pass] = zero_chunk<T, VEC>();
      }
    }
  }

  template <class Tile>
  __device__ __forceinline__ void store(T* s) const {
#pragma unroll
    for (int pass = 0; pass < kPasses; ++pass) {
      put_along_k<Tile, VEC>(s, Assign::row(tid_, pass), k_off_, chunk_[pass]);
    }
  }

 private:
  const ForwardParams<T>& p_;
  int tid_, k_off_;
  int image_base_[kPasses], ih0_[kPasses], iw0_[kPasses];
  Chunk<T, VEC> chunk_[kPasses];
};

// B: W[co][k] for the block's BN output channels.
template <typename T, int ROWS, int BK, int THREADS, int VEC>
class WeightRows {
  using Assign = AlongKAssignment<ROWS, BK, THREADS, VEC>;
  static constexpr int kPasses = Assign::kPasses;

 public:
  __device__ WeightRows(const ForwardParams<T>& p, int n0, int tid)
      : p_(p), tid_(tid), n0_(n0), k_off_(Assign::k_offset(tid)) {}

  __device__ __forceinline__ void load(int k0) {
    const int k = k0 + k_off_;
#pragma unroll
    for (int pass = 0; pass < kPasses; ++pass) {
      const int n = n0_ + Assign::row(tid_, pass);
      if (n < p_.n && k < p_.k) {
        chunk_[pass] = load_chunk<T, VEC>(p_.wt + static_cast<int64_t>(n) * p_.k + k);
      } else {
        chunk_[pass] = zero_chunk<T, VEC>();
      }
    }
  }

  template <class Tile>
  __device__ __forceinline__ void store(T* s) const {
#pragma unroll
    for (int pass = 0; pass < kPasses; ++pass) {
      put_along_k<Tile, VEC>(s, Assign::row(tid_, pass), k_off_, chunk_[pass]);
    }
  }

 private:
  const ForwardParams<T>& p_;
  int tid_, n0_, k_off_;
  Chunk<T, VEC> chunk_[kPasses];
};

template <class Math, class Tile, bool kVecX, bool kVecW>
__global__ void __launch_bounds__(Tile::kThreads, (min_blocks<Tile, kVecX, kVecW>()))
    conv_forward_kernel(const __grid_constant__ ForwardParams<typename Math::Elem> p) {
  using T = typename Math::Elem;
  using TileA = AlongKTile<Math, Tile::kBM>;
  using TileB = AlongKTile<Math, Tile::kBN>;
  __shared__ __align__(128) unsigned char smem[smem_bytes<Math, Tile, TileA, TileB>()];

  const int tid = threadIdx.x;
  const int m0 = blockIdx.x * Tile::kBM, n0 = blockIdx.y * Tile::kBN;
  PatchRows<T, Tile::kBM, Math::kBK, Tile::kThreads, kVecX ? kVec16<T> : 1> a(p, m0, tid);
  WeightRows<T, Tile::kBN, Math::kBK, Tile::kThreads, kVecW ? kVec16<T> : 1> b(p, n0, tid);
  CoreOf<Math, Tile> core(tid);
  const int split = blockIdx.z;
  const int k_begin = split * p.k_per_split;
  main_loop<TileA, TileB>(smem, core, a, b, k_begin, min(p.k, k_begin + p.k_per_split));

  core.emit(smem, [&](int row, int col, const auto& v) {
    constexpr int L = static_cast<int>(std::extent_v<std::remove_reference_t<decltype(v)>>);
    const int m = m0 + row, n = n0 + col;
    if (m >= p.m || n >= p.n) return;
    const int64_t offset = static_cast<int64_t>(m) * p.n + n;
    if (p.partials != nullptr) {  // bias and rounding come with the sum of the splits
      store_run<float, L>(p.partials + split * p.split_stride + offset, v, p.n - n);
      return;
    }
    float out[L];
#pragma unroll
    for (int i = 0; i < L; ++i) {
      out[i] = v[i];
      if (p.bias != nullptr && n + i < p.n) out[i] += p.bias[n + i];
    }
    store_run<T, L>(p.y + offset, out, p.n - n);
  });
}

}  // namespace
}  // namespace conv_detail

template <typename T>
void conv2d_forward(const Conv2dShape& s, const T* x, const T* w, const float* bias, T* y,
                    ConvMath math, cudaStream_t stream) {
  using namespace conv_detail;
  const ConvSizes z = conv_sizes(s, "conv2d_forward (CUDA)");
  if (z.pixels == 0 || z.c_out == 0) return;  // empty output

  ForwardParams<T> p{};
  p.x = x;
  p.wt = w;
  p.bias = bias;
  p.y = y;
  p.h = z.h;
  p.w = z.w;
  p.c_in = z.c_in;
  p.kw = z.kw;
  p.sh = z.sh;
  p.sw = z.sw;
  p.ph = z.ph;
  p.pw = z.pw;
  p.m = z.pixels;
  p.n = z.c_out;
  p.k = z.k;
  p.out_hw = Divisor(z.oh * z.ow);
  p.out_w = Divisor(z.ow);
  p.c_in_div = Divisor(z.c_in);
  p.kw_div = Divisor(z.kw);

  constexpr int kVec = kVec16<T>;
  const bool vec_x = z.c_in % kVec == 0 && aligned16(x);
  const bool vec_w = z.k % kVec == 0 && aligned16(w);
  with_math<T>(math, [&](auto math_tag) {
    using Math = decltype(math_tag);
    const bool big = use_big_tiles(z.pixels, z.c_out);
    with_tile_and_vectors(big, vec_x, vec_w, [&](auto tile_tag, auto vx, auto vw) {
      using Tile = decltype(tile_tag);
      const int tiles_m = ceil_div(p.m, Tile::kBM), tiles_n = ceil_div(p.n, Tile::kBN);
      const int64_t out_elems = int64_t{p.m} * p.n;
      SplitPlan plan = plan_splits(tiles_m * tiles_n, p.k, Math::kBK, out_elems);
      const StreamWorkspace workspace(
          plan.splits > 1 ? static_cast<size_t>(plan.splits) * out_elems * sizeof(float) : 0,
          stream);
      if (workspace.get() == nullptr) plan = SplitPlan{1, round_up(p.k, Math::kBK)};
      p.partials = workspace.get();
      p.split_stride = out_elems;
      p.k_per_split = plan.k_per_split;
      conv_forward_kernel<Math, Tile, decltype(vx)::value, decltype(vw)::value>
          <<<grid_of(tiles_m, tiles_n, plan.splits), Tile::kThreads, 0, stream>>>(p);
      RG_KERNEL_LAUNCH_CHECK("conv_forward_kernel");
      if (workspace.get() != nullptr) {
        sum_splits<T>(workspace.get(), out_elems, plan.splits, out_elems, bias, p.n, y, stream);
      }
    });
  });
}

template void conv2d_forward<float>(const Conv2dShape&, const float*, const float*, const float*,
                                    float*, ConvMath, cudaStream_t);
template void conv2d_forward<bf16>(const Conv2dShape&, const bf16*, const bf16*, const float*,
                                   bf16*, ConvMath, cudaStream_t);

}  // namespace rg::kernels::cuda
