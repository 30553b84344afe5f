// CPU convolution kernels: im2col + BLAS GEMM over NHWC activations and OHWI weights.
//
// With NHWC input, the patch of one output pixel laid out as [kh][kw][c_in] is exactly the
// row layout of an OHWI weight ([c_out][kh][kw][c_in]), so with K = kh*kw*c_in and
// M = n*out_h*out_w:
//   forward          y[M, c_out]   = col[M, K] * W[c_out, K]^T          (+ bias)
//   backward data    dcol[M, K]    = dy[M, c_out] * W[c_out, K]          then col2im (dx)
//   backward weight  dw[c_out, K]  = dy[M, c_out]^T * col[M, K]          (summed over chunks)
// A 1x1 / stride 1 / pad 0 convolution needs no column buffer: col == x.
//
// The column buffer covers a chunk of whole output rows (one (n, oh) row = out_w pixels) and is
// bounded by a byte budget, so memory stays bounded for any batch and image size, while each GEMM
// stays large enough for OpenBLAS to use all cores. The buffer is cached per thread (and per
// element type) so repeated calls do not pay page faults on a fresh allocation.
//
// Threading: OpenBLAS never threads here. Its own threads split a GEMM by the thread count, and
// the rounding of an output element then depends on that count (OpenBLAS 0.3.21: 7% of a
// 256x4096x2048 SGEMM's outputs differ between 1 and 2 threads). Instead each GEMM's output is
// cut into blocks by its shape alone, each block is one single-threaded BLAS call over the whole
// K, and OpenMP threads take the blocks dynamically (gemm_blocks below). Every output element then
// gets the same arithmetic for any thread count, and a thread whose core another process takes
// holds up one block instead of half of every GEMM. im2col, col2im, bias fill and the bias
// reduction are OpenMP loops with fixed orders as well, so results do not depend on the number
// of threads.
#include "kernels/conv.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstddef>
#include <cstring>
#include <memory>
#include <new>
#include <vector>

namespace rg::kernels::cpu {

namespace detail {

constexpr std::size_t kDefaultColBudgetBytes = std::size_t{16} << 20;

// Upper bound for the column buffer of one chunk, in bytes. 16 MiB keeps every GEMM large
// (hundreds of rows even for K = 4*4*512) and measured as fast as 64 MiB on the U-Net shapes
// (4 MiB too; 1 MiB was slower).
static std::atomic<std::size_t> g_col_budget_bytes{kDefaultColBudgetBytes};

// 0: decide by size (loops_parallel below); 1: never parallel; 2: always parallel.
static std::atomic<int> g_parallel_mode{0};

// Test/benchmark hooks, not declared in a public header.
// Sets the column-buffer budget in bytes (0 restores the default); returns the previous one.
std::size_t set_conv_col_budget_bytes(std::size_t bytes) {
  if (bytes == 0) bytes = kDefaultColBudgetBytes;
  return g_col_budget_bytes.exchange(bytes);
}
// Sets the OpenMP mode of the blocked GEMMs and the im2col/col2im/bias loops (0 by size,
// 1 serial, 2 always parallel whatever the size); returns the previous one.
int set_conv_parallel_mode(int mode) { return g_parallel_mode.exchange(mode); }

}  // namespace detail

namespace {

// ---- BLAS wrappers -----------------------------------------------------------------------

void gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int64_t m, int64_t n, int64_t k, float alpha,
          const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
          int64_t ldc) {
  cblas_sgemm(CblasRowMajor, ta, tb, static_cast<int>(m), static_cast<int>(n), static_cast<int>(k),
              alpha, a, static_cast<int>(lda), b, static_cast<int>(ldb), beta, c,
              static_cast<int>(ldc));
}

void gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int64_t m, int64_t n, int64_t k, double alpha,
          const double* a, int64_t lda, const double* b, int64_t ldb, double beta, double* c,
          int64_t ldc) {
  cblas_dgemm(CblasRowMajor, ta, tb, static_cast<int>(m), static_cast<int>(n), static_cast<int>(k),
              alpha, a, static_cast<int>(lda), b, static_cast<int>(ldb), beta, c,
              static_cast<int>(ldc));
}

void gemv(CBLAS_TRANSPOSE ta, int64_t m, int64_t n, const float* a, const float* x, float* y) {
  cblas_sgemv(CblasRowMajor, ta, static_cast<int>(m), static_cast<int>(n), 1.f, a,
              static_cast<int>(n), x, 1, 1.f, y, 1);
}

void gemv(CBLAS_TRANSPOSE ta, int64_t m, int64_t n, const double* a, const double* x, double* y) {
  cblas_dgemv(CblasRowMajor, ta, static_cast<int>(m), static_cast<int>(n), 1.0, a,
              static_cast<int>(n), x, 1, 1.0, y, 1);
}

// ---- GEMM in shape-determined blocks ----------------------------------------------------

// A block has at least this much work (8 M multiply-adds, ~0.1-0.2 ms on one core) and this many
// rows or columns: every block packs the whole shared operand again (the weights in the forward),
// so small blocks spend their time packing. 2^23 and 128 measured fastest on the CPU default step
// (2^21 and 32: +10%; 2^24/256 or 2^23/512: +5-15%; docs/performance.md). At most kGemmMaxBlocks.
constexpr int64_t kGemmBlockMinMacs = int64_t{1} << 23;
constexpr int64_t kGemmBlockMinWidth = 128;
constexpr int64_t kGemmMaxBlocks = 64;

// How C[m, n] is cut: along its rows when it is at least as tall as wide, else along its columns.
struct GemmSplit {
  bool rows = true;
  int64_t blocks = 1;
};

GemmSplit gemm_split(int64_t m, int64_t n, int64_t k) {
  GemmSplit sp;
  sp.rows = m >= n;
  const int64_t dim = sp.rows ? m : n;
  const int64_t by_work = m * n * k / kGemmBlockMinMacs;
  sp.blocks = std::clamp<int64_t>(std::min(by_work, dim / kGemmBlockMinWidth), 1, kGemmMaxBlocks);
  return sp;
}

// [begin, end) of block b of `blocks` over [0, dim), boundaries on multiples of 16.
void block_bounds(int64_t dim, int64_t blocks, int64_t b, int64_t& begin, int64_t& end) {
  auto edge = [&](int64_t i) { return i == blocks ? dim : std::min(dim, (dim * i / blocks) / 16 * 16); };
  begin = edge(b);
  end = edge(b + 1);
}

bool loops_parallel(int64_t elems);

// Runs fn(b) for every b in [0, blocks), on up to omp_get_max_threads() threads taking blocks
// dynamically when `parallel`. OpenBLAS's OpenMP build sizes its team from omp_get_max_threads(),
// so each task sets it to 1 first (the setting is scoped to the region): every BLAS call here is
// single-threaded.
template <typename Fn>
void run_blocks(int64_t blocks, bool parallel, Fn&& fn) {
  const int nt = parallel ? static_cast<int>(std::min<int64_t>(omp_get_max_threads(), blocks)) : 1;
#pragma omp parallel num_threads(nt)
  {
    omp_set_num_threads(1);
#pragma omp for schedule(dynamic, 1)
    for (int64_t b = 0; b < blocks; ++b) fn(b);
  }
}

// C[m, n] = alpha * op(A)[m, k] * op(B)[k, n] + beta * C, row-major, in shape-determined blocks.
template <typename T>
void gemm_blocks(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int64_t m, int64_t n, int64_t k, T alpha,
                 const T* a, int64_t lda, const T* b, int64_t ldb, T beta, T* c, int64_t ldc) {
  const GemmSplit sp = gemm_split(m, n, k);
  run_blocks(sp.blocks, sp.blocks > 1 && loops_parallel(m * n * k), [&](int64_t blk) {
    int64_t i0 = 0, i1 = 0;
    block_bounds(sp.rows ? m : n, sp.blocks, blk, i0, i1);
    if (i1 <= i0) return;
    if (sp.rows) {  // rows [i0, i1) of C and of op(A)
      const T* ab = ta == CblasNoTrans ? a + i0 * lda : a + i0;
      gemm(ta, tb, i1 - i0, n, k, alpha, ab, lda, b, ldb, beta, c + i0 * ldc, ldc);
    } else {  // columns [i0, i1) of C and of op(B)
      const T* bb = tb == CblasNoTrans ? b + i0 : b + i0 * ldb;
      gemm(ta, tb, m, i1 - i0, k, alpha, a, lda, bb, ldb, beta, c + i0, ldc);
    }
  });
}

// With only a few rows (the 2x2 -> 1x1 and 4x4 -> 2x2 layers of a U-Net at batch 1) OpenBLAS's
// GEMM spends its time packing the weight; one GEMV per row measured 2.5-6x faster there.
constexpr int64_t kGemvMaxRows = 4;

// y[p][:] = (beta ? y[p][:] : 0) + W[co, k] * a[p][:] for p < rows (y = a * W^T).
template <typename T>
void rows_times_wt(int64_t rows, int64_t k, int64_t co, const T* a, const T* w, bool accumulate,
                   T* y) {
  if (rows > kGemvMaxRows) {
    gemm_blocks(CblasNoTrans, CblasTrans, rows, co, k, T(1), a, k, w, k, accumulate ? T(1) : T(0), y, co);
    return;
  }
  if (!accumulate) std::fill_n(y, rows * co, T(0));  // GEMV's beta = 0 may keep NaNs in some BLAS
  run_blocks(1, false, [&](int64_t) {
    for (int64_t p = 0; p < rows; ++p) gemv(CblasNoTrans, co, k, w, a + p * k, y + p * co);
  });
}

// out[p][:] = dy[p][:] * W[co, k] for p < rows (overwritten).
template <typename T>
void rows_times_w(int64_t rows, int64_t co, int64_t k, const T* dy, const T* w, T* out) {
  if (rows > kGemvMaxRows) {
    gemm_blocks(CblasNoTrans, CblasNoTrans, rows, k, co, T(1), dy, co, w, k, T(0), out, k);
    return;
  }
  std::fill_n(out, rows * k, T(0));
  run_blocks(1, false, [&](int64_t) {
    for (int64_t p = 0; p < rows; ++p) gemv(CblasTrans, co, k, w, dy + p * co, out + p * k);
  });
}

// ---- Per-thread scratch buffer -----------------------------------------------------------

struct AlignedFree {
  void operator()(void* p) const { ::operator delete(p, std::align_val_t{64}); }
};

template <typename T>
T* scratch(std::size_t count) {
  thread_local std::unique_ptr<void, AlignedFree> buf;
  thread_local std::size_t capacity = 0;
  if (count > capacity) {
    buf.reset();
    capacity = 0;
    buf.reset(::operator new(count * sizeof(T), std::align_val_t{64}));
    capacity = count;
  }
  return static_cast<T*>(buf.get());
}

// ---- Geometry ----------------------------------------------------------------------------

struct Geo {
  int64_t n, h, w, c;         // input
  int64_t co, kh, kw;         // weight
  int64_t sh, sw, ph, pw;     // stride, padding
  int64_t oh, ow;             // output spatial size
  int64_t k;                  // patch length kh*kw*c
  int64_t rows;               // output rows n*oh (a "row" is one (n, oh) line of ow pixels)
  int64_t m;                  // output pixels n*oh*ow
  bool empty;                 // no output pixels at all
  bool pointwise;             // 1x1, stride 1, pad 0: col == x
};

Geo make_geo(const Conv2dShape& s) {
  Geo g{};
  g.n = s.n; g.h = s.h; g.w = s.w; g.c = s.c_in;
  g.co = s.c_out; g.kh = s.kh; g.kw = s.kw;
  g.sh = s.stride_h; g.sw = s.stride_w; g.ph = s.pad_h; g.pw = s.pad_w;
  // Shape::out_h() truncates toward zero, which would report 1 for a kernel larger than the
  // padded input; such a convolution has no output.
  const int64_t span_h = g.h + 2 * g.ph - g.kh, span_w = g.w + 2 * g.pw - g.kw;
  g.oh = span_h < 0 ? 0 : span_h / g.sh + 1;
  g.ow = span_w < 0 ? 0 : span_w / g.sw + 1;
  g.k = g.kh * g.kw * g.c;
  g.rows = g.n * g.oh;
  g.m = g.rows * g.ow;
  g.empty = g.m <= 0 || g.co <= 0 || g.k <= 0;
  g.pointwise = g.kh == 1 && g.kw == 1 && g.sh == 1 && g.sw == 1 && g.ph == 0 && g.pw == 0;
  return g;
}

// Number of output rows per chunk so that the column buffer (rows * ow * k elements) fits the
// budget (at least one row), and every GEMM dimension fits BLAS's int.
template <typename T>
int64_t rows_per_chunk(const Geo& g) {
  const int64_t row_elems = g.ow * g.k;
  const int64_t budget_elems =
      static_cast<int64_t>(detail::g_col_budget_bytes.load(std::memory_order_relaxed) / sizeof(T));
  int64_t r = g.pointwise ? g.rows  // no column buffer
                          : std::max<int64_t>(1, budget_elems / std::max<int64_t>(1, row_elems));
  r = std::min<int64_t>(r, std::max<int64_t>(1, (INT_MAX / 2) / std::max<int64_t>(1, g.ow)));
  return std::min(r, g.rows);
}

// Valid kernel columns [j_lo, j_hi) for output column ow (iw = ow*sw - pw + j in [0, w)).
inline void valid_cols(const Geo& g, int64_t ow, int64_t& iw0, int64_t& j_lo, int64_t& j_hi) {
  iw0 = ow * g.sw - g.pw;
  j_lo = std::max<int64_t>(0, -iw0);
  j_hi = std::min<int64_t>(g.kw, g.w - iw0);
}

constexpr int64_t kParallelMinElems = int64_t{1} << 15;

// Whether a loop (or a blocked GEMM) of `elems` elements of work uses the OpenMP threads: by size,
// unless a test forces it (set_conv_parallel_mode). Results are the same either way.
bool loops_parallel(int64_t elems) {
  switch (detail::g_parallel_mode.load(std::memory_order_relaxed)) {
    case 1: return false;
    case 2: return true;
    default: return elems >= kParallelMinElems;
  }
}

// ---- im2col / col2im ---------------------------------------------------------------------

// col[(r - r0)*ow + ow][kh][kw][c] for output rows r in [r0, r1); zero where the patch is padding.
template <typename T>
void im2col(const Geo& g, const T* x, int64_t r0, int64_t r1, T* col) {
  const int64_t pixels = (r1 - r0) * g.ow;
  const int64_t seg = g.kw * g.c;  // one kernel row of the patch
#pragma omp parallel for schedule(static) if (loops_parallel(pixels * g.k))
  for (int64_t p = 0; p < pixels; ++p) {
    const int64_t r = r0 + p / g.ow, ow = p % g.ow;
    const int64_t n = r / g.oh, oh = r % g.oh;
    int64_t iw0, j_lo, j_hi;
    valid_cols(g, ow, iw0, j_lo, j_hi);
    T* dst = col + p * g.k;
    for (int64_t i = 0; i < g.kh; ++i, dst += seg) {
      const int64_t ih = oh * g.sh - g.ph + i;
      if (ih < 0 || ih >= g.h || j_lo >= j_hi) {
        std::fill_n(dst, seg, T(0));
        continue;
      }
      std::fill_n(dst, j_lo * g.c, T(0));
      const T* src = x + ((n * g.h + ih) * g.w + iw0 + j_lo) * g.c;
      std::memcpy(dst + j_lo * g.c, src, sizeof(T) * (j_hi - j_lo) * g.c);
      std::fill_n(dst + j_hi * g.c, (g.kw - j_hi) * g.c, T(0));
    }
  }
}

// dx += contributions of dcol for output rows r in [r0, r1). Gather form: each parallel task owns
// one input row (n, ih) and sums everything that lands in it in a fixed order, so there are no
// write races and the result does not depend on the thread count.
template <typename T>
void col2im_add(const Geo& g, const T* dcol, int64_t r0, int64_t r1, T* dx) {
  const int64_t n_first = r0 / g.oh, n_last = (r1 - 1) / g.oh;
  const int64_t q0 = n_first * g.h, q1 = (n_last + 1) * g.h;  // input rows (n, ih) flattened
  const int64_t seg = g.kw * g.c;
  const bool par = loops_parallel((r1 - r0) * g.ow * g.k);
#pragma omp parallel for schedule(static) if (par)
  for (int64_t q = q0; q < q1; ++q) {
    const int64_t n = q / g.h, ih = q % g.h;
    T* out_row = dx + q * g.w * g.c;
    for (int64_t i = 0; i < g.kh; ++i) {
      const int64_t t = ih + g.ph - i;  // = oh * sh
      if (t < 0 || t % g.sh != 0) continue;
      const int64_t oh = t / g.sh;
      if (oh >= g.oh) continue;
      const int64_t r = n * g.oh + oh;
      if (r < r0 || r >= r1) continue;
      const T* src_row = dcol + (r - r0) * g.ow * g.k + i * seg;
      for (int64_t ow = 0; ow < g.ow; ++ow) {
        int64_t iw0, j_lo, j_hi;
        valid_cols(g, ow, iw0, j_lo, j_hi);
        if (j_lo >= j_hi) continue;
        const T* s = src_row + ow * g.k + j_lo * g.c;
        T* d = out_row + (iw0 + j_lo) * g.c;
        const int64_t len = (j_hi - j_lo) * g.c;
        for (int64_t e = 0; e < len; ++e) d[e] += s[e];
      }
    }
  }
}

// ---- Small helpers -----------------------------------------------------------------------

template <typename T>
void fill_zero(T* p, int64_t count) {
#pragma omp parallel for schedule(static) if (loops_parallel(count))
  for (int64_t b = 0; b < count; b += 4096) {
    std::fill_n(p + b, std::min<int64_t>(4096, count - b), T(0));
  }
}

// y[p][:] = bias for p in [0, pixels).
template <typename T>
void fill_bias(T* y, const T* bias, int64_t pixels, int64_t co) {
#pragma omp parallel for schedule(static) if (loops_parallel(pixels * co))
  for (int64_t p = 0; p < pixels; ++p) std::memcpy(y + p * co, bias, sizeof(T) * co);
}

// dbias[c] = sum_p dy[p][c]. Rows are split into a number of blocks that depends only on the
// problem size; block sums are combined in block order (deterministic for any thread count).
template <typename T>
void bias_grad(const T* dy, int64_t pixels, int64_t co, T* dbias) {
  constexpr int64_t kRowsPerBlock = 256;
  const int64_t blocks = std::min<int64_t>(64, (pixels + kRowsPerBlock - 1) / kRowsPerBlock);
  if (blocks <= 1) {
    std::fill_n(dbias, co, T(0));
    for (int64_t p = 0; p < pixels; ++p) {
      const T* row = dy + p * co;
      for (int64_t c = 0; c < co; ++c) dbias[c] += row[c];
    }
    return;
  }
  std::vector<T> partial(static_cast<std::size_t>(blocks * co), T(0));
  const int64_t per = (pixels + blocks - 1) / blocks;
#pragma omp parallel for schedule(static) if (loops_parallel(pixels * co))
  for (int64_t b = 0; b < blocks; ++b) {
    T* acc = partial.data() + b * co;
    const int64_t p_end = std::min(pixels, (b + 1) * per);
    for (int64_t p = b * per; p < p_end; ++p) {
      const T* row = dy + p * co;
      for (int64_t c = 0; c < co; ++c) acc[c] += row[c];
    }
  }
  std::fill_n(dbias, co, T(0));
  for (int64_t b = 0; b < blocks; ++b) {
    const T* acc = partial.data() + b * co;
    for (int64_t c = 0; c < co; ++c) dbias[c] += acc[c];
  }
}

}  // namespace

// ---- Entry points ------------------------------------------------------------------------

template <typename T>
void conv2d_forward(const Conv2dShape& s, const T* x, const T* w, const T* bias, T* y) {
  const Geo g = make_geo(s);
  if (g.empty) return;
  const int64_t chunk = rows_per_chunk<T>(g);
  T* col = g.pointwise ? nullptr : scratch<T>(static_cast<std::size_t>(chunk * g.ow * g.k));
  for (int64_t r0 = 0; r0 < g.rows; r0 += chunk) {
    const int64_t r1 = std::min(g.rows, r0 + chunk);
    const int64_t pixels = (r1 - r0) * g.ow;
    const T* a = g.pointwise ? x + r0 * g.ow * g.c : col;
    if (!g.pointwise) im2col(g, x, r0, r1, col);
    T* yc = y + r0 * g.ow * g.co;
    if (bias) fill_bias(yc, bias, pixels, g.co);
    rows_times_wt(pixels, g.k, g.co, a, w, bias != nullptr, yc);
  }
}

template <typename T>
void conv2d_backward_data(const Conv2dShape& s, const T* dy, const T* w, T* dx) {
  const Geo g = make_geo(s);
  const int64_t dx_count = g.n * g.h * g.w * g.c;
  if (g.empty) {
    if (dx_count > 0) fill_zero(dx, dx_count);
    return;
  }
  const int64_t chunk = rows_per_chunk<T>(g);
  if (g.pointwise) {
    // dx[M, c] = dy[M, co] * W[co, c], written directly (no column buffer).
    for (int64_t r0 = 0; r0 < g.rows; r0 += chunk) {
      const int64_t r1 = std::min(g.rows, r0 + chunk);
      const int64_t pixels = (r1 - r0) * g.ow;
      rows_times_w(pixels, g.co, g.c, dy + r0 * g.ow * g.co, w, dx + r0 * g.ow * g.c);
    }
    return;
  }
  fill_zero(dx, dx_count);
  T* dcol = scratch<T>(static_cast<std::size_t>(chunk * g.ow * g.k));
  for (int64_t r0 = 0; r0 < g.rows; r0 += chunk) {
    const int64_t r1 = std::min(g.rows, r0 + chunk);
    const int64_t pixels = (r1 - r0) * g.ow;
    rows_times_w(pixels, g.co, g.k, dy + r0 * g.ow * g.co, w, dcol);
    col2im_add(g, dcol, r0, r1, dx);
  }
}

template <typename T>
void conv2d_backward_weight(const Conv2dShape& s, const T* x, const T* dy, T* dw, T* dbias) {
  const Geo g = make_geo(s);
  if (g.empty) {
    if (g.co > 0 && g.k > 0) fill_zero(dw, g.co * g.k);
    if (dbias && g.co > 0) std::fill_n(dbias, g.co, T(0));
    return;
  }
  const int64_t chunk = rows_per_chunk<T>(g);
  T* col = g.pointwise ? nullptr : scratch<T>(static_cast<std::size_t>(chunk * g.ow * g.k));
  for (int64_t r0 = 0; r0 < g.rows; r0 += chunk) {
    const int64_t r1 = std::min(g.rows, r0 + chunk);
    const int64_t pixels = (r1 - r0) * g.ow;
    const T* b = g.pointwise ? x + r0 * g.ow * g.c : col;
    if (!g.pointwise) im2col(g, x, r0, r1, col);
    // dw[co, K] (+)= dy_chunk[pixels, co]^T * col[pixels, K]; the first chunk overwrites.
    gemm_blocks(CblasTrans, CblasNoTrans, g.co, g.k, pixels, T(1), dy + r0 * g.ow * g.co, g.co, b,
                g.k, r0 == 0 ? T(0) : T(1), dw, g.k);
  }
  if (dbias) bias_grad(dy, g.m, g.co, dbias);
}

#define RG_INSTANTIATE_CONV(T)                                                               \
  template void conv2d_forward<T>(const Conv2dShape&, const T*, const T*, const T*, T*);     \
  template void conv2d_backward_data<T>(const Conv2dShape&, const T*, const T*, T*);         \
  template void conv2d_backward_weight<T>(const Conv2dShape&, const T*, const T*, T*, T*);

RG_INSTANTIATE_CONV(float)
RG_INSTANTIATE_CONV(double)

#undef RG_INSTANTIATE_CONV

}  // namespace rg::kernels::cpu
