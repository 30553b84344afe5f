// Convolution backward-weight as an implicit GEMM over the output pixels:
//   dw[co][kk] = sum_m dy[m][co] * A[m][kk],   kk = (kh, kw, ci), m = (image, oh, ow)
// with A the im2col matrix of x (as in the forward), so M = c_out, N = kh*kw*c_in and the
// reduction runs over the n*out_h*out_w output pixels. Both operands are read along their
// rows (dy along co, x along ci), in 16-byte chunks when the channel counts and pointers allow.
//
// Split-K (conv_tile.cuh): the shallow layers have a small c_out x K and a huge pixel count, so
// the pixel range is split (blockIdx.z); the partials of dw and dbias go to a workspace
// [split][c_out*K + c_out] and are summed in split order (deterministic, no atomics). Without a
// split the GEMM writes dw directly.
//
// dbias: the blocks of the first column tile also sum the dy slices they multiply, per co, in
// fp32; split partials go through the same workspace and reduction as dw.
#include "kernels/cuda/conv.h"
#include "kernels/cuda/conv_tile.cuh"

namespace rg::kernels::cuda {
namespace conv_detail {
namespace {

template <typename T>
struct BackwardWeightParams {
  const T* x;
  const T* dy;
  float* dw_out;         // dw, or the workspace (split z at z * split_stride)
  float* db_out;         // dbias, its slot in the workspace, or null
  int64_t split_stride;  // elements between splits' partials (0 without a split)
  int h, w, c_in, kw, sh, sw, ph, pw;
  int c_out, k, pixels;  // GEMM: M, N, reduction
  int pixels_per_split;  // multiple of BK
  Divisor out_hw, out_w, c_in_div, kw_div;
};

// A (as k-major tile): dy[m][co] for the block's BM output channels, read along co.
template <typename T, int ROWS, int BK, int THREADS, int VEC>
class GradOutputAlongCout {
  using Assign = AlongRowsAssignment<ROWS, BK, THREADS, VEC>;
  static constexpr int kPasses = Assign::kPasses;

 public:
  __device__ GradOutputAlongCout(const BackwardWeightParams<T>& p, int m0, int k_end, int tid)
      : p_(p), tid_(tid), col_(Assign::row_offset(tid)), co_(m0 + col_), k_end_(k_end) {}

  __device__ __forceinline__ void load(int k0) {
#pragma unroll
    for (int pass = 0; pass < kPasses; ++pass) {
      const int m = k0 + Assign::k(tid_, pass);
      if (m < k_end_ && co_ < p_.c_out) {
        chunk_[pass] = load_chunk<T, VEC>(p_.dy + static_cast<int64_t>(m) * p_.c_out + co_);
      } else {
        chunk_[pass] = zero_chunk<T, VEC>();
      }
    }
  }

  template <class Tile>
  __device__ __forceinline__ void store(T* s) const {
#pragma unroll
    for (int pass = 0; pass < kPasses; ++pass) {
      put_along_rows<Tile, VEC>(s, Assign::k(tid_, pass), col_, chunk_[pass]);
    }
  }

 private:
  const BackwardWeightParams<T>& p_;
  int tid_, col_, co_, k_end_;
  Chunk<T, VEC> chunk_[kPasses];
};

// B (as k-major tile): im2col(x)[m][kk] for the block's BN columns kk, read along kk (ci).
template <typename T, int ROWS, int BK, int THREADS, int VEC>
class PatchAlongK {
  using Assign = AlongRowsAssignment<ROWS, BK, THREADS, VEC>;
  static constexpr int kPasses = Assign::kPasses;

 public:
  __device__ PatchAlongK(const BackwardWeightParams<T>& p, int n0, int k_end, int tid)
      : p_(p), tid_(tid), col_(Assign::row_offset(tid)), k_end_(k_end) {
    const int kk = n0 + col_;
    valid_ = kk < p.k;
    r_ = s_ = ci_ = 0;
    if (valid_) {
      const int tap = p.c_in_div.div(kk);
      ci_ = kk - tap * p.c_in;
      r_ = p.kw_div.div(tap);
      s_ = tap - r_ * p.kw;
    }
  }

  __device__ __forceinline__ void load(int k0) {
#pragma unroll
    for (int pass = 0; pass < kPasses; ++pass) {
      const int m = k0 + Assign::k(tid_, pass);
      chunk_[pass] = zero_chunk<T, VEC>();
      if (valid_ && m < k_end_) {
        const int img = p_.out_hw.div(m);
        const int rem = m - img * p_.out_hw.value();
        const int oh = p_.out_w.div(rem);
        const int ow = rem - oh * p_.out_w.value();
        const int ih = oh * p_.sh - p_.ph + r_, iw = ow * p_.sw - p_.pw + s_;
        if (static_cast<unsigned>(ih) < static_cast<unsigned>(p_.h) &&
            static_cast<unsigned>(iw) < static_cast<unsigned>(p_.w)) {
          const int64_t pixel = (img * p_.h + ih) * p_.w + iw;
          chunk_[pass] = load_chunk<T, VEC>(p_.x + pixel * p_.c_in + ci_);
        }
      }
    }
  }

  template <class Tile>
  __device__ __forceinline__ void store(T* s) const {
#pragma unroll
    for (int pass = 0; pass < kPasses; ++pass) {
      put_along_rows<Tile, VEC>(s, Assign::k(tid_, pass), col_, chunk_[pass]);
    }
  }

 private:
  const BackwardWeightParams<T>& p_;
  int tid_, col_, k_end_;
  bool valid_;
  int r_, s_, ci_;
  Chunk<T, VEC> chunk_[kPasses];
};

template <class Math, class Tile, bool kVecDy, bool kVecX>
__global__ void __launch_bounds__(Tile::kThreads, (min_blocks<Tile, kVecDy, kVecX>()))
    conv_backward_weight_kernel(
        const __grid_constant__ BackwardWeightParams<typename Math::Elem> p) {
  using T = typename Math::Elem;
  using TileA = AlongRowsTile<Math, Tile::kBM>;
  using TileB = AlongRowsTile<Math, Tile::kBN>;
  using LoaderA =
      GradOutputAlongCout<T, Tile::kBM, Math::kBK, Tile::kThreads, kVecDy ? kVec16<T> : 1>;
  using LoaderB = PatchAlongK<T, Tile::kBN, Math::kBK, Tile::kThreads, kVecX ? kVec16<T> : 1>;
  __shared__ __align__(128) unsigned char smem[smem_bytes<Math, Tile, TileA, TileB>()];

  const int tid = threadIdx.x;
  const int m0 = blockIdx.x * Tile::kBM, n0 = blockIdx.y * Tile::kBN;
  const int split = blockIdx.z;
  const int k_begin = split * p.pixels_per_split;
  const int k_end = min(p.pixels, k_begin + p.pixels_per_split);

  LoaderA a(p, m0, k_end, tid);
  LoaderB b(p, n0, k_end, tid);
  CoreOf<Math, Tile> core(tid);
  // dbias: in the blocks of the first column tile, thread c < BM sums channel m0 + c of every dy
  // slice while it is in shared memory (masked pixels are zeros), in pixel order.
  const bool sums_bias = p.db_out != nullptr && blockIdx.y == 0 && tid < Tile::kBM;
  float bias_sum = 0.f;
  main_loop<TileA, TileB>(smem, core, a, b, k_begin, k_end, [&](const T* dy_tile) {
    if (sums_bias) {
#pragma unroll
      for (int k = 0; k < TileA::kBK; ++k) bias_sum += elem_to_float(dy_tile[TileA::index(tid, k)]);
    }
  });
  if (sums_bias && m0 + tid < p.c_out) p.db_out[split * p.split_stride + m0 + tid] = bias_sum;

  float* out = p.dw_out + split * p.split_stride;
  core.emit(smem, [&](int row, int col, const auto& v) {
    constexpr int L = static_cast<int>(std::extent_v<std::remove_reference_t<decltype(v)>>);
    const int co = m0 + row, kk = n0 + col;
    if (co >= p.c_out || kk >= p.k) return;
    store_run<float, L>(out + static_cast<int64_t>(co) * p.k + kk, v, p.k - kk);
  });
}

}  // namespace
}  // namespace conv_detail

template <typename T>
void conv2d_backward_weight(const Conv2dShape& s, const T* x, const T* dy, float* dw, float* dbias,
                            ConvMath math, cudaStream_t stream) {
  using namespace conv_detail;
  const ConvSizes z = conv_sizes(s, "conv2d_backward_weight (CUDA)");
  if (z.c_out == 0) return;  // dw and dbias are empty
  const int64_t dw_count = int64_t{z.c_out} * z.k;
  if (z.pixels == 0) {  // no output pixel: the gradients are zero
    if (dw_count > 0) {
      RG_KERNEL_CUDA_CHECK(cudaMemsetAsync(dw, 0, dw_count * sizeof(float), stream));
    }
    if (dbias) RG_KERNEL_CUDA_CHECK(cudaMemsetAsync(dbias, 0, z.c_out * sizeof(float), stream));
    return;
  }

  BackwardWeightParams<T> p{};
  p.x = x;
  p.dy = dy;
  p.h = z.h;
  p.w = z.w;
  p.c_in = z.c_in;
  p.kw = z.kw;
  p.sh = z.sh;
  p.sw = z.sw;
  p.ph = z.ph;
  p.pw = z.pw;
  p.c_out = z.c_out;
  p.k = z.k;
  p.pixels = z.pixels;
  p.out_hw = Divisor(z.oh * z.ow);
  p.out_w = Divisor(z.ow);
  p.c_in_div = Divisor(z.c_in);
  p.kw_div = Divisor(z.kw);

  constexpr int kVec = kVec16<T>;
  const bool vec_dy = z.c_out % kVec == 0 && aligned16(dy);
  const bool vec_x = z.c_in % kVec == 0 && aligned16(x);
  // Split-K makes up for few tiles, so the big tile is used whenever both sides fill it.
  const bool big = z.c_out >= TileBig::kBM && z.k >= TileBig::kBN;
  with_math<T>(math, [&](auto math_tag) {
    using Math = decltype(math_tag);
    with_tile_and_vectors(big, vec_dy, vec_x, [&](auto tile_tag, auto va, auto vb) {
      using Tile = decltype(tile_tag);
      const int tiles_m = ceil_div(z.c_out, Tile::kBM);
      const int tiles_n = std::max(1, ceil_div(z.k, Tile::kBN));  // a block even for K = 0: dbias
      // Partials per split: dw, then dbias.
      const int64_t split_elems = dw_count + z.c_out;
      SplitPlan plan = plan_splits(tiles_m * tiles_n, z.pixels, Math::kBK, split_elems);
      const StreamWorkspace workspace(
          plan.splits > 1 ? static_cast<size_t>(plan.splits) * split_elems * sizeof(float) : 0,
          stream);
      if (workspace.get() != nullptr) {
        p.dw_out = workspace.get();
        p.db_out = dbias ? workspace.get() + dw_count : nullptr;
        p.split_stride = split_elems;
      } else {
        plan = SplitPlan{1, round_up(z.pixels, Math::kBK)};
        p.dw_out = dw;
        p.db_out = dbias;
        p.split_stride = 0;
      }
      p.pixels_per_split = plan.k_per_split;

      conv_backward_weight_kernel<Math, Tile, decltype(va)::value, decltype(vb)::value>
          <<<grid_of(tiles_m, tiles_n, plan.splits), Tile::kThreads, 0, stream>>>(p);
      RG_KERNEL_LAUNCH_CHECK("conv_backward_weight_kernel");
      if (workspace.get() != nullptr) {
        sum_splits<float>(workspace.get(), split_elems, plan.splits, dw_count, nullptr, 1, dw,
                          stream);
        if (dbias) {
          sum_splits<float>(workspace.get() + dw_count, split_elems, plan.splits, z.c_out, nullptr,
                            1, dbias, stream);
        }
      }
    });
  });
}

template void conv2d_backward_weight<float>(const Conv2dShape&, const float*, const float*, float*,
                                            float*, ConvMath, cudaStream_t);
template void conv2d_backward_weight<bf16>(const Conv2dShape&, const bf16*, const bf16*, float*,
                                           float*, ConvMath, cudaStream_t);

}  // namespace rg::kernels::cuda
