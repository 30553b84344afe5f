// Convolution backward-data (and so the transposed-convolution forward) as a gather: every
// input pixel sums, over the kernel taps (r, s) that reach it and over co,
//   dx[i][ih][iw][ci] = sum dy[i][oh][ow][co] * w[co][r][s][ci],  oh = (ih + pad_h - r) / stride_h
// where the division must be exact and oh in range (the same for ow). No atomics: each dx
// element is written once.
//
// With stride > 1 only the taps r = (ih + pad_h) mod stride_h (mod stride_h) reach row ih, so
// the pixels are split into stride_h * stride_w phases by the residue of (ih + pad_h, iw + pad_w):
// the pixels of one phase all see the same taps and each phase is an implicit GEMM of its own,
//   dx_phase[m][ci] = sum_kk A[m][kk] * B[kk][ci],   kk = (tap row, tap column, co), co fastest,
// with A gathered from dy (zero where the output position is out of range) and B from the OHWI
// weights. Phases run as blockIdx.z of one launch. A 4x4 stride-2 kernel gives 4 phases of 2x2
// taps: no invalid tap is iterated, as a zero-inserted (dilated) formulation would. Few output
// tiles with a long reduction (the U-Net's deep layers) split it (conv_tile.cuh).
#include "kernels/cuda/conv.h"
#include "kernels/cuda/conv_tile.cuh"

namespace rg::kernels::cuda {
namespace conv_detail {
namespace {

template <typename T>
struct BackwardDataParams {
  const T* dy;
  const T* wt;
  T* dx;
  float* partials;       // split-K: fp32 partials [split][dx element] instead of dx (null: none)
  int64_t split_stride;  // dx elements
  int splits, k_per_split;
  int n, h, w, c_in;        // dx
  int out_h, out_w, c_out;  // dy
  int kh, kw, sh, sw, ph, pw;
  Divisor c_out_div;
};

// One spatial axis of a phase: the input coordinates first + j*stride (j < count) are reached
// by the kernel taps phase + t*stride (t < taps) from output coordinate base + j - t.
struct PhaseAxis {
  int phase, first, count, taps, base;
  __device__ PhaseAxis(int phase_, int size, int kernel, int stride, int pad) : phase(phase_) {
    taps = phase < kernel ? (kernel - phase + stride - 1) / stride : 0;
    // Smallest i >= 0 with (i + pad) % stride == phase.
    first = ((phase - pad) % stride + stride) % stride;
    count = first < size ? (size - first + stride - 1) / stride : 0;
    // first + pad - phase is a non-negative multiple of stride: if pad < phase, first is
    // phase - pad and it is 0.
    base = (first + pad - phase) / stride;
  }
};

// Everything a block needs about its phase.
struct Phase {
  PhaseAxis y, x;
  int m;  // pixels in the phase
  int k;  // taps_y * taps_x * c_out
  Divisor pixels_per_image, count_x, taps_x;

  __device__ Phase(const PhaseAxis& ay, const PhaseAxis& ax, int n, int c_out)
      : y(ay),
        x(ax),
        m(n * ay.count * ax.count),
        k(ay.taps * ax.taps * c_out),
        pixels_per_image(ay.count * ax.count),
        count_x(ax.count),
        taps_x(ax.taps) {}

  // Phase pixel m -> (image, row index j_y, column index j_x) within the phase.
  __device__ __forceinline__ void pixel(int m_idx, int& img, int& jy, int& jx) const {
    img = pixels_per_image.div(m_idx);
    const int rem = m_idx - img * pixels_per_image.value();
    jy = count_x.div(rem);
    jx = rem - jy * x.count;
  }
};

// kk -> (tap row index, tap column index, co) within the phase.
template <typename T>
__device__ __forceinline__ void split_kk(const BackwardDataParams<T>& p, const Phase& ph, int kk,
                                         int& ty, int& tx, int& co) {
  const int tap = p.c_out_div.div(kk);
  co = kk - tap * p.c_out;
  ty = ph.taps_x.div(tap);
  tx = tap - ty * ph.x.taps;
}

// A: dy gathered for the block's BM phase pixels, read along kk (co contiguous).
template <typename T, int ROWS, int BK, int THREADS, int VEC>
class GradOutputRows {
  using Assign = AlongKAssignment<ROWS, BK, THREADS, VEC>;
  static constexpr int kPasses = Assign::kPasses;

 public:
  __device__ GradOutputRows(const BackwardDataParams<T>& p, const Phase& ph, int m0, int tid)
      : p_(p), ph_(ph), tid_(tid), k_off_(Assign::k_offset(tid)) {
#pragma unroll
    for (int pass = 0; pass < kPasses; ++pass) {
      const int m = m0 + Assign::row(tid, pass);
      if (m < ph.m) {
        int img, jy, jx;
        ph.pixel(m, img, jy, jx);
        image_row_[pass] = img * p.out_h;
        oh0_[pass] = ph.y.base + jy;
        ow0_[pass] = ph.x.base + jx;
      } else {
        image_row_[pass] = 0;
        oh0_[pass] = kFarAway;
        ow0_[pass] = kFarAway;
      }
    }
  }

  __device__ __forceinline__ void load(int k0) {
    const int kk = k0 + k_off_;
    const bool k_valid = kk < ph_.k;
    int ty = 0, tx = 0, co = 0;
    if (k_valid) split_kk(p_, ph_, kk, ty, tx, co);
#pragma unroll
    for (int pass = 0; pass < kPasses; ++pass) {
      const int oh = oh0_[pass] - ty, ow = ow0_[pass] - tx;
      if (k_valid && static_cast<unsigned>(oh) < static_cast<unsigned>(p_.out_h) &&
          static_cast<unsigned>(ow) < static_cast<unsigned>(p_.out_w)) {
        const int64_t pixel = (image_row_[pass] + oh) * p_.out_w + ow;
        chunk_[pass] = load_chunk<T, VEC>(p_.dy + pixel * p_.c_out + co);
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
  const BackwardDataParams<T>& p_;
  const Phase& ph_;
  int tid_, k_off_;
  int image_row_[kPasses], oh0_[kPasses], ow0_[kPasses];
  Chunk<T, VEC> chunk_[kPasses];
};

// B: w[co][r][s][ci] for the phase's taps and the block's BN input channels, read along ci.
template <typename T, int ROWS, int BK, int THREADS, int VEC>
class WeightAlongCin {
  using Assign = AlongRowsAssignment<ROWS, BK, THREADS, VEC>;
  static constexpr int kPasses = Assign::kPasses;

 public:
  __device__ WeightAlongCin(const BackwardDataParams<T>& p, const Phase& ph, int n0, int tid)
      : p_(p), ph_(ph), tid_(tid), col_(Assign::row_offset(tid)), ci_(n0 + col_) {}

  __device__ __forceinline__ void load(int k0) {
#pragma unroll
    for (int pass = 0; pass < kPasses; ++pass) {
      const int kk = k0 + Assign::k(tid_, pass);
      if (kk < ph_.k && ci_ < p_.c_in) {
        int ty, tx, co;
        split_kk(p_, ph_, kk, ty, tx, co);
        const int r = ph_.y.phase + ty * p_.sh, s = ph_.x.phase + tx * p_.sw;
        const int64_t row = (co * p_.kh + r) * p_.kw + s;
        chunk_[pass] = load_chunk<T, VEC>(p_.wt + row * p_.c_in + ci_);
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
  const BackwardDataParams<T>& p_;
  const Phase& ph_;
  int tid_, col_, ci_;
  Chunk<T, VEC> chunk_[kPasses];
};

template <class Math, class Tile, bool kVecDy, bool kVecW>
__global__ void __launch_bounds__(Tile::kThreads, (min_blocks<Tile, kVecDy, kVecW>()))
    conv_backward_data_kernel(const __grid_constant__ BackwardDataParams<typename Math::Elem> p) {
  using T = typename Math::Elem;
  using TileA = AlongKTile<Math, Tile::kBM>;
  using TileB = AlongRowsTile<Math, Tile::kBN>;
  __shared__ __align__(128) unsigned char smem[smem_bytes<Math, Tile, TileA, TileB>()];

  // blockIdx.z = (phase, split); a split past a phase's (shorter) K writes zero partials.
  const int phase = blockIdx.z / p.splits, split = blockIdx.z - phase * p.splits;
  const int phase_y = phase / p.sw, phase_x = phase - phase_y * p.sw;
  const Phase ph(PhaseAxis(phase_y, p.h, p.kh, p.sh, p.ph),
                 PhaseAxis(phase_x, p.w, p.kw, p.sw, p.pw), p.n, p.c_out);
  const int m0 = blockIdx.x * Tile::kBM, n0 = blockIdx.y * Tile::kBN;
  // The grid covers the largest phase; the whole block leaves before any barrier.
  if (m0 >= ph.m) return;

  const int tid = threadIdx.x;
  GradOutputRows<T, Tile::kBM, Math::kBK, Tile::kThreads, kVecDy ? kVec16<T> : 1> a(p, ph, m0, tid);
  WeightAlongCin<T, Tile::kBN, Math::kBK, Tile::kThreads, kVecW ? kVec16<T> : 1> b(p, ph, n0, tid);
  CoreOf<Math, Tile> core(tid);
  // A phase without taps (kernel smaller than the stride) runs no slice and writes zeros.
  const int k_begin = split * p.k_per_split;
  main_loop<TileA, TileB>(smem, core, a, b, k_begin, min(ph.k, k_begin + p.k_per_split));

  core.emit(smem, [&](int row, int col, const auto& v) {
    constexpr int L = static_cast<int>(std::extent_v<std::remove_reference_t<decltype(v)>>);
    const int m = m0 + row, n = n0 + col;
    if (m >= ph.m || n >= p.c_in) return;
    int img, jy, jx;
    ph.pixel(m, img, jy, jx);
    const int ih = ph.y.first + jy * p.sh, iw = ph.x.first + jx * p.sw;
    const int64_t offset = static_cast<int64_t>((img * p.h + ih) * p.w + iw) * p.c_in + n;
    if (p.partials != nullptr) {
      store_run<float, L>(p.partials + split * p.split_stride + offset, v, p.c_in - n);
    } else {
      store_run<T, L>(p.dx + offset, v, p.c_in - n);
    }
  });
}

}  // namespace
}  // namespace conv_detail

template <typename T>
void conv2d_backward_data(const Conv2dShape& s, const T* dy, const T* w, T* dx, ConvMath math,
                          cudaStream_t stream) {
  using namespace conv_detail;
  const ConvSizes z = conv_sizes(s, "conv2d_backward_data (CUDA)");
  if (z.n * z.h * z.w == 0 || z.c_in == 0) return;  // empty dx

  BackwardDataParams<T> p{};
  p.dy = dy;
  p.wt = w;
  p.dx = dx;
  p.n = z.n;
  p.h = z.h;
  p.w = z.w;
  p.c_in = z.c_in;
  p.out_h = z.oh;
  p.out_w = z.ow;
  p.c_out = z.c_out;
  p.kh = z.kh;
  p.kw = z.kw;
  p.sh = z.sh;
  p.sw = z.sw;
  p.ph = z.ph;
  p.pw = z.pw;
  p.c_out_div = Divisor(z.c_out);

  // The phase with the most pixels has ceil(h / stride_h) * ceil(w / stride_w) per image.
  const int max_phase_pixels = z.n * ceil_div(z.h, z.sh) * ceil_div(z.w, z.sw);
  const int phases = z.sh * z.sw;
  // The longest phase reduction: ceil(kh / sh) * ceil(kw / sw) taps of c_out.
  const int max_phase_k = ceil_div(z.kh, z.sh) * ceil_div(z.kw, z.sw) * z.c_out;
  constexpr int kVec = kVec16<T>;
  const bool vec_dy = z.c_out % kVec == 0 && aligned16(dy);
  const bool vec_w = z.c_in % kVec == 0 && aligned16(w);
  with_math<T>(math, [&](auto math_tag) {
    using Math = decltype(math_tag);
    const bool big = use_big_tiles(int64_t{z.n} * z.h * z.w, z.c_in);
    with_tile_and_vectors(big, vec_dy, vec_w, [&](auto tile_tag, auto va, auto vb) {
      using Tile = decltype(tile_tag);
      const int tiles_m = ceil_div(max_phase_pixels, Tile::kBM);
      const int tiles_n = ceil_div(z.c_in, Tile::kBN);
      const int64_t dx_elems = int64_t{z.n} * z.h * z.w * z.c_in;
      SplitPlan plan = plan_splits(tiles_m * tiles_n * phases, max_phase_k, Math::kBK, dx_elems);
      const StreamWorkspace workspace(
          plan.splits > 1 ? static_cast<size_t>(plan.splits) * dx_elems * sizeof(float) : 0,
          stream);
      if (workspace.get() == nullptr) plan = SplitPlan{1, round_up(max_phase_k, Math::kBK)};
      p.partials = workspace.get();
      p.split_stride = dx_elems;
      p.splits = plan.splits;
      p.k_per_split = plan.k_per_split;
      conv_backward_data_kernel<Math, Tile, decltype(va)::value, decltype(vb)::value>
          <<<grid_of(tiles_m, tiles_n, phases * plan.splits), Tile::kThreads, 0, stream>>>(p);
      RG_KERNEL_LAUNCH_CHECK("conv_backward_data_kernel");
      if (workspace.get() != nullptr) {
        sum_splits<T>(workspace.get(), dx_elems, plan.splits, dx_elems, nullptr, 1, dx, stream);
      }
    });
  });
}

template void conv2d_backward_data<float>(const Conv2dShape&, const float*, const float*, float*,
                                          ConvMath, cudaStream_t);
template void conv2d_backward_data<bf16>(const Conv2dShape&, const bf16*, const bf16*, bf16*,
                                         ConvMath, cudaStream_t);

}  // namespace rg::kernels::cuda
