// CPU normalization kernels over NHWC data (channel innermost).
//
// All statistics and reductions are accumulated in double for both float and double inputs;
// these kernels are the reference other backends are tested against. Variances are never taken
// as E[x^2] - E[x]^2: rows are processed in L1-sized blocks, each block gets an exact two-pass
// mean / sum of squared deviations, and blocks (then threads) are merged with the pairwise
// update of Chan et al. This is as stable as a global two-pass computation but reads x from
// memory only once for the statistics.
//
// Batch norm views the input as a [n*hw, c] matrix and parallelizes over its rows: the rows are
// cut into chunks whose number depends only on the shape (kernels/cpu/fixed_chunks.h), each chunk
// is reduced into its own per-channel partials (inner loops run over the contiguous channel axis
// so they vectorize), and the partials are combined in chunk order, so the results are the same
// for every thread count. Instance norm parallelizes over (image, channel block) work items;
// a channel's arithmetic does not depend on the blocking.
#include "kernels/norm.h"

#include "kernels/cpu/fixed_chunks.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

namespace rg::kernels::cpu {
namespace {

// Below this many elements a kernel runs on the calling thread (thread start-up would dominate).
constexpr int64_t kParallelMinElems = int64_t{1} << 15;

// Number of threads to use for `elems` elements of work split into at most `max_items` pieces.
int threads_for(int64_t elems, int64_t max_items) {
  if (elems < kParallelMinElems || max_items < 2) return 1;
  const int64_t t = std::min<int64_t>(omp_get_max_threads(), max_items);
  return static_cast<int>(std::max<int64_t>(1, t));
}

// Bounds of piece `t` when [0, total) is split into `parts` near-equal contiguous pieces.
void split(int64_t total, int parts, int t, int64_t& begin, int64_t& end) {
  const int64_t q = total / parts, r = total % parts;
  begin = t * q + std::min<int64_t>(t, r);
  end = begin + q + (t < r ? 1 : 0);
}

// Calls fn(r0, r1) on contiguous row blocks covering [0, rows), one block per thread.
template <typename Fn>
void for_rows(int64_t rows, int nt, Fn&& fn) {
  if (nt <= 1) {
    fn(int64_t{0}, rows);
    return;
  }
#pragma omp parallel num_threads(nt)
  {
    int64_t r0 = 0, r1 = 0;
    split(rows, omp_get_num_threads(), omp_get_thread_num(), r0, r1);
    if (r1 > r0) fn(r0, r1);
  }
}

template <typename T>
double at_or(const T* p, int64_t i, double fallback) {
  return p ? static_cast<double>(p[i]) : fallback;
}

// y[r][j] = (x[r][j] - m[j]) * sc[j] + sh[j] over rows [r0, r1) of width w and stride ld.
template <typename T>
void affine_rows(int64_t r0, int64_t r1, int64_t ld, int64_t w, const T* __restrict x,
                 const double* __restrict m, const double* __restrict sc,
                 const double* __restrict sh, T* __restrict y) {
  for (int64_t r = r0; r < r1; ++r) {
    const T* __restrict xr = x + r * ld;
    T* __restrict yr = y + r * ld;
    for (int64_t j = 0; j < w; ++j)
      yr[j] = static_cast<T>((static_cast<double>(xr[j]) - m[j]) * sc[j] + sh[j]);
  }
}

// acc[j] += sum over rows of x[r][j].
template <typename T>
void sum_rows(int64_t r0, int64_t r1, int64_t ld, int64_t w, const T* __restrict x,
              double* __restrict acc) {
  for (int64_t r = r0; r < r1; ++r) {
    const T* __restrict xr = x + r * ld;
    for (int64_t j = 0; j < w; ++j) acc[j] += static_cast<double>(xr[j]);
  }
}

// acc[j] += sum over rows of (x[r][j] - m[j])^2.
template <typename T>
void sqdev_rows(int64_t r0, int64_t r1, int64_t ld, int64_t w, const T* __restrict x,
                const double* __restrict m, double* __restrict acc) {
  for (int64_t r = r0; r < r1; ++r) {
    const T* __restrict xr = x + r * ld;
    for (int64_t j = 0; j < w; ++j) {
      const double d = static_cast<double>(xr[j]) - m[j];
      acc[j] += d * d;
    }
  }
}

// Merges the moments (count nb, mean mb, sum of squared deviations qb) of a set of values into
// the running moments (count na, mean ma, qa) of a disjoint set, per column (Chan et al.).
void merge_moments(int64_t na, double* __restrict ma, double* __restrict qa, int64_t nb,
                   const double* __restrict mb, const double* __restrict qb, int64_t w) {
  if (nb == 0) return;
  const double n = static_cast<double>(na + nb);
  const double fb = static_cast<double>(nb) / n;
  const double fab = static_cast<double>(na) * static_cast<double>(nb) / n;
  for (int64_t j = 0; j < w; ++j) {
    const double delta = mb[j] - ma[j];
    ma[j] += delta * fb;
    qa[j] += qb[j] + delta * delta * fab;
  }
}

// Per-column mean and sum of squared deviations of rows [r0, r1) (width w, stride ld), in one
// pass over memory: the rows are taken in blocks small enough to stay in L1, each block gets an
// exact two-pass mean / squared-deviation computation, and the blocks are merged with
// merge_moments. scratch holds 2*w doubles. Returns the row count.
template <typename T>
int64_t moments_rows(int64_t r0, int64_t r1, int64_t ld, int64_t w, const T* x, double* mean,
                     double* m2, double* scratch) {
  std::fill(mean, mean + w, 0.0);
  std::fill(m2, m2 + w, 0.0);
  // The block length depends on the row stride, not on w, so a channel's moments come out the
  // same however instance norm blocks the channels.
  const int64_t block =
      std::max<int64_t>(4, (16 * 1024) / std::max<int64_t>(1, ld * static_cast<int64_t>(sizeof(T))));
  double* bmean = scratch;
  double* bm2 = scratch + w;
  int64_t count = 0;
  for (int64_t b0 = r0; b0 < r1; b0 += block) {
    const int64_t b1 = std::min(b0 + block, r1), nb = b1 - b0;
    std::fill(bmean, bmean + w, 0.0);
    sum_rows(b0, b1, ld, w, x, bmean);
    const double inv = 1.0 / static_cast<double>(nb);
    for (int64_t j = 0; j < w; ++j) bmean[j] *= inv;
    std::fill(bm2, bm2 + w, 0.0);
    sqdev_rows(b0, b1, ld, w, x, bmean, bm2);
    merge_moments(count, mean, m2, nb, bmean, bm2, w);
    count += nb;
  }
  return count;
}

// sdy[j] += sum dy[r][j]; sdyx[j] += sum dy[r][j] * (x[r][j] - m[j]).
template <typename T>
void grad_sums_rows(int64_t r0, int64_t r1, int64_t ld, int64_t w, const T* __restrict x,
                    const T* __restrict dy, const double* __restrict m, double* __restrict sdy,
                    double* __restrict sdyx) {
  for (int64_t r = r0; r < r1; ++r) {
    const T* __restrict xr = x + r * ld;
    const T* __restrict dr = dy + r * ld;
    for (int64_t j = 0; j < w; ++j) {
      const double d = static_cast<double>(dr[j]);
      sdy[j] += d;
      sdyx[j] += d * (static_cast<double>(xr[j]) - m[j]);
    }
  }
}

// dx[r][j] = a[j] * dy[r][j] - b[j] - k[j] * (x[r][j] - m[j]).
template <typename T>
void grad_rows(int64_t r0, int64_t r1, int64_t ld, int64_t w, const T* __restrict x,
               const T* __restrict dy, const double* __restrict m, const double* __restrict a,
               const double* __restrict b, const double* __restrict k, T* __restrict dx) {
  for (int64_t r = r0; r < r1; ++r) {
    const T* __restrict xr = x + r * ld;
    const T* __restrict dr = dy + r * ld;
    T* __restrict dxr = dx + r * ld;
    for (int64_t j = 0; j < w; ++j) {
      dxr[j] = static_cast<T>(a[j] * static_cast<double>(dr[j]) - b[j] -
                              k[j] * (static_cast<double>(xr[j]) - m[j]));
    }
  }
}

}  // namespace

template <typename T>
void batch_norm_forward_train(const NormShape& s, const T* x, const T* gamma, const T* beta,
                              double eps, T* y, T* save_mean, T* save_invstd) {
  const int64_t C = s.c, M = s.n * s.hw;
  if (C <= 0) return;
  std::vector<double> mean(C, 0.0), m2(C, 0.0), scale(C), shift(C);
  // Statistics from the moments accumulated so far (count rows).
  auto finish_stats = [&](int64_t count) {
    for (int64_t j = 0; j < C; ++j) {
      const double var = count > 0 ? m2[j] / static_cast<double>(count) : 0.0;
      const double invstd = 1.0 / std::sqrt(var + eps);
      scale[j] = invstd * at_or(gamma, j, 1.0);
      shift[j] = at_or(beta, j, 0.0);
      save_mean[j] = static_cast<T>(mean[j]);
      save_invstd[j] = static_cast<T>(invstd);
    }
  };
  if (M <= 0) {
    finish_stats(0);
    return;
  }
  // One parallel region: the moments of each chunk of rows, merged in chunk order by one
  // thread, then every thread normalizes its chunks.
  const int64_t chunks = chunk_count(M, C);
  const int nt = chunks > 1 ? threads_for(M * C, chunks) : 1;
  std::vector<double> part_mean(static_cast<size_t>(chunks * C)), part_m2(part_mean.size());
  std::vector<int64_t> part_count(static_cast<size_t>(chunks), 0);
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    std::vector<double> scratch(static_cast<size_t>(2 * C));
#pragma omp for schedule(static)
    for (int64_t c = 0; c < chunks; ++c) {
      int64_t r0 = 0, r1 = 0;
      chunk_bounds(M, chunks, c, r0, r1);
      part_count[c] = moments_rows(r0, r1, C, C, x, part_mean.data() + c * C,
                                   part_m2.data() + c * C, scratch.data());
    }
#pragma omp single
    {
      int64_t count = 0;
      for (int64_t c = 0; c < chunks; ++c) {
        merge_moments(count, mean.data(), m2.data(), part_count[c], part_mean.data() + c * C,
                      part_m2.data() + c * C, C);
        count += part_count[c];
      }
      finish_stats(count);
    }
#pragma omp for schedule(static)
    for (int64_t c = 0; c < chunks; ++c) {
      int64_t r0 = 0, r1 = 0;
      chunk_bounds(M, chunks, c, r0, r1);
      affine_rows(r0, r1, C, C, x, mean.data(), scale.data(), shift.data(), y);
    }
  }
}

template <typename T>
void batch_norm_forward_eval(const NormShape& s, const T* x, const T* gamma, const T* beta,
                             const T* mean, const T* var, double eps, T* y) {
  const int64_t C = s.c, M = s.n * s.hw;
  if (C <= 0 || M <= 0) return;
  std::vector<double> m(C), scale(C), shift(C);
  for (int64_t j = 0; j < C; ++j) {
    m[j] = static_cast<double>(mean[j]);
    scale[j] = at_or(gamma, j, 1.0) / std::sqrt(static_cast<double>(var[j]) + eps);
    shift[j] = at_or(beta, j, 0.0);
  }
  for_rows(M, threads_for(M * C, M), [&](int64_t r0, int64_t r1) {
    affine_rows(r0, r1, C, C, x, m.data(), scale.data(), shift.data(), y);
  });
}

template <typename T>
void batch_norm_backward_train(const NormShape& s, const T* x, const T* dy, const T* gamma,
                               const T* save_mean, const T* save_invstd, T* dx, T* dgamma,
                               T* dbeta) {
  const int64_t C = s.c, M = s.n * s.hw;
  if (C <= 0) return;
  std::vector<double> m(C), a(C), b(C), k(C);
  for (int64_t j = 0; j < C; ++j) m[j] = static_cast<double>(save_mean[j]);
  // From the per-channel sum(dy) and sum(dy * (x - mean)):
  // dx = gamma*invstd/M * (M*dy - sum(dy) - xhat*sum(dy*xhat)), xhat = (x - mean)*invstd,
  // written as dx = a*dy - b - k*(x - mean).
  auto finish = [&](const double* sdy, const double* sdyxmu) {
    const double inv_m = M > 0 ? 1.0 / static_cast<double>(M) : 0.0;
    for (int64_t j = 0; j < C; ++j) {
      const double is = static_cast<double>(save_invstd[j]);
      const double sdyxhat = sdyxmu[j] * is;
      a[j] = at_or(gamma, j, 1.0) * is;
      b[j] = a[j] * sdy[j] * inv_m;
      k[j] = a[j] * is * sdyxhat * inv_m;
      if (dgamma) dgamma[j] = static_cast<T>(sdyxhat);
      if (dbeta) dbeta[j] = static_cast<T>(sdy[j]);
    }
  };
  if (M <= 0) {
    const std::vector<double> zero(C, 0.0);
    finish(zero.data(), zero.data());
    return;
  }
  // As the forward: per-chunk sums merged in chunk order, then dx chunk by chunk.
  const int64_t chunks = chunk_count(M, C);
  const int nt = chunks > 1 ? threads_for(M * C, chunks) : 1;
  std::vector<double> part(static_cast<size_t>(chunks * 2 * C), 0.0);
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
#pragma omp for schedule(static)
    for (int64_t c = 0; c < chunks; ++c) {
      int64_t r0 = 0, r1 = 0;
      chunk_bounds(M, chunks, c, r0, r1);
      double* acc = part.data() + c * 2 * C;
      grad_sums_rows(r0, r1, C, C, x, dy, m.data(), acc, acc + C);
    }
#pragma omp single
    {
      std::vector<double> sums(static_cast<size_t>(2 * C), 0.0);
      for (int64_t c = 0; c < chunks; ++c)
        for (int64_t j = 0; j < 2 * C; ++j) sums[j] += part[c * 2 * C + j];
      finish(sums.data(), sums.data() + C);
    }
#pragma omp for schedule(static)
    for (int64_t c = 0; c < chunks; ++c) {
      int64_t r0 = 0, r1 = 0;
      chunk_bounds(M, chunks, c, r0, r1);
      grad_rows(r0, r1, C, C, x, dy, m.data(), a.data(), b.data(), k.data(), dx);
    }
  }
}

template <typename T>
void batch_norm_backward_eval(const NormShape& s, const T* x, const T* dy, const T* gamma,
                              const T* mean, const T* var, double eps, T* dx, T* dgamma,
                              T* dbeta) {
  const int64_t C = s.c, M = s.n * s.hw;
  if (C <= 0) return;
  std::vector<double> m(C), invstd(C), a(C);
  for (int64_t j = 0; j < C; ++j) {
    m[j] = static_cast<double>(mean[j]);
    invstd[j] = 1.0 / std::sqrt(static_cast<double>(var[j]) + eps);
    a[j] = at_or(gamma, j, 1.0) * invstd[j];
  }
  const int nt = threads_for(M * C, M);
  // dx = dy * gamma * invstd.
  auto scale_rows = [&](int64_t r0, int64_t r1) {
    const double* __restrict ap = a.data();
    for (int64_t r = r0; r < r1; ++r) {
      const T* __restrict dr = dy + r * C;
      T* __restrict dxr = dx + r * C;
      for (int64_t j = 0; j < C; ++j) dxr[j] = static_cast<T>(ap[j] * static_cast<double>(dr[j]));
    }
  };
  if (!dgamma && !dbeta) {  // x is not read
    if (M > 0) for_rows(M, nt, scale_rows);
    return;
  }
  // One pass over x and dy computes dx and the sums for dgamma = sum(dy*xhat), dbeta = sum(dy).
  std::vector<double> sums(static_cast<size_t>(2 * C), 0.0);
  if (M > 0) {
    chunked_row_sums(M, C, 2 * C, sums.data(), [&](int64_t r0, int64_t r1, double* acc) {
      grad_sums_rows(r0, r1, C, C, x, dy, m.data(), acc, acc + C);
      scale_rows(r0, r1);
    });
  }
  for (int64_t j = 0; j < C; ++j) {
    if (dgamma) dgamma[j] = static_cast<T>(sums[C + j] * invstd[j]);
    if (dbeta) dbeta[j] = static_cast<T>(sums[j]);
  }
}

namespace {

// Instance-norm work decomposition: items are (image, channel block). With few images the
// channels are split into blocks (multiples of 8, at least 16 wide) so that every thread has work.
struct InstanceBlocks {
  int64_t cb = 1;  // channels per block
  int64_t nb = 1;  // blocks per image
};

InstanceBlocks instance_blocks(const NormShape& s) {
  InstanceBlocks b;
  b.cb = s.c;
  const int64_t want_items = 2 * static_cast<int64_t>(omp_get_max_threads());
  if (s.n < want_items && s.c > 16 && s.n * s.hw * s.c >= kParallelMinElems) {
    const int64_t want_blocks = (want_items + s.n - 1) / s.n;
    int64_t cb = (s.c + want_blocks - 1) / want_blocks;
    cb = std::max<int64_t>(16, (cb + 7) / 8 * 8);
    b.cb = std::min(cb, s.c);
  }
  b.nb = (s.c + b.cb - 1) / b.cb;
  return b;
}

}  // namespace

template <typename T>
void instance_norm_forward(const NormShape& s, const T* x, const T* gamma, const T* beta,
                           double eps, T* y, T* save_mean, T* save_invstd) {
  const int64_t C = s.c, HW = s.hw, N = s.n;
  if (C <= 0 || N <= 0) return;
  const InstanceBlocks blk = instance_blocks(s);
  const int64_t items = N * blk.nb;
  const int nt = threads_for(N * HW * C, items);
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    std::vector<double> mean(blk.cb), m2(blk.cb), scale(blk.cb), shift(blk.cb),
        scratch(2 * blk.cb);
#pragma omp for schedule(static)
    for (int64_t it = 0; it < items; ++it) {
      const int64_t i = it / blk.nb, c0 = (it % blk.nb) * blk.cb;
      const int64_t w = std::min(blk.cb, C - c0);
      const int64_t off = i * HW * C + c0;
      const int64_t count = moments_rows(0, HW, C, w, x + off, mean.data(), m2.data(), scratch.data());
      for (int64_t j = 0; j < w; ++j) {
        // hw == 1 gives variance 0: invstd = 1/sqrt(eps) stays finite and y = beta.
        const double var = count > 0 ? m2[j] / static_cast<double>(count) : 0.0;
        const double invstd = 1.0 / std::sqrt(var + eps);
        scale[j] = invstd * at_or(gamma, c0 + j, 1.0);
        shift[j] = at_or(beta, c0 + j, 0.0);
        save_mean[i * C + c0 + j] = static_cast<T>(mean[j]);
        save_invstd[i * C + c0 + j] = static_cast<T>(invstd);
      }
      affine_rows(0, HW, C, w, x + off, mean.data(), scale.data(), shift.data(), y + off);
    }
  }
}

template <typename T>
void instance_norm_backward(const NormShape& s, const T* x, const T* dy, const T* gamma,
                            const T* save_mean, const T* save_invstd, T* dx, T* dgamma,
                            T* dbeta) {
  const int64_t C = s.c, HW = s.hw, N = s.n;
  if (C <= 0) return;
  // Per (image, channel) sum(dy) and sum(dy * xhat), kept for dgamma/dbeta (summed over images
  // in image order afterwards, so the result does not depend on the thread count).
  std::vector<double> sdy(static_cast<size_t>(std::max<int64_t>(N, 0) * C), 0.0);
  std::vector<double> sdyxhat(sdy.size(), 0.0);
  if (N > 0) {
    const InstanceBlocks blk = instance_blocks(s);
    const int64_t items = N * blk.nb;
    const int nt = threads_for(N * HW * C, items);
    const double inv_m = HW > 0 ? 1.0 / static_cast<double>(HW) : 0.0;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
      std::vector<double> m(blk.cb), a(blk.cb), b(blk.cb), k(blk.cb), s1(blk.cb), s2(blk.cb);
#pragma omp for schedule(static)
      for (int64_t it = 0; it < items; ++it) {
        const int64_t i = it / blk.nb, c0 = (it % blk.nb) * blk.cb;
        const int64_t w = std::min(blk.cb, C - c0);
        const int64_t off = i * HW * C + c0;
        for (int64_t j = 0; j < w; ++j) m[j] = static_cast<double>(save_mean[i * C + c0 + j]);
        std::fill(s1.begin(), s1.begin() + w, 0.0);
        std::fill(s2.begin(), s2.begin() + w, 0.0);
        grad_sums_rows(0, HW, C, w, x + off, dy + off, m.data(), s1.data(), s2.data());
        for (int64_t j = 0; j < w; ++j) {
          const double is = static_cast<double>(save_invstd[i * C + c0 + j]);
          const double sx = s2[j] * is;  // sum(dy * xhat)
          a[j] = at_or(gamma, c0 + j, 1.0) * is;
          b[j] = a[j] * s1[j] * inv_m;
          k[j] = a[j] * is * sx * inv_m;
          sdy[i * C + c0 + j] = s1[j];
          sdyxhat[i * C + c0 + j] = sx;
        }
        grad_rows(0, HW, C, w, x + off, dy + off, m.data(), a.data(), b.data(), k.data(),
                  dx + off);
      }
    }
  }
  for (int64_t j = 0; j < C; ++j) {
    double g = 0.0, bt = 0.0;
    for (int64_t i = 0; i < N; ++i) {
      g += sdyxhat[i * C + j];
      bt += sdy[i * C + j];
    }
    if (dgamma) dgamma[j] = static_cast<T>(g);
    if (dbeta) dbeta[j] = static_cast<T>(bt);
  }
}

#define RG_INSTANTIATE_NORM(T)                                                                 \
  template void batch_norm_forward_train<T>(const NormShape&, const T*, const T*, const T*,    \
                                            double, T*, T*, T*);                               \
  template void batch_norm_forward_eval<T>(const NormShape&, const T*, const T*, const T*,     \
                                           const T*, const T*, double, T*);                    \
  template void batch_norm_backward_train<T>(const NormShape&, const T*, const T*, const T*,   \
                                             const T*, const T*, T*, T*, T*);                  \
  template void batch_norm_backward_eval<T>(const NormShape&, const T*, const T*, const T*,    \
                                            const T*, const T*, double, T*, T*, T*);           \
  template void instance_norm_forward<T>(const NormShape&, const T*, const T*, const T*,       \
                                         double, T*, T*, T*);                                  \
  template void instance_norm_backward<T>(const NormShape&, const T*, const T*, const T*,      \
                                          const T*, const T*, T*, T*, T*);

RG_INSTANTIATE_NORM(float)
RG_INSTANTIATE_NORM(double)

#undef RG_INSTANTIATE_NORM

}  // namespace rg::kernels::cpu
