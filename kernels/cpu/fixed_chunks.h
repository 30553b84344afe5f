// Reductions whose result does not depend on the thread count.
//
// A range is cut into chunks whose number depends only on the problem size; each chunk is
// reduced on its own (by whichever thread), and the chunk results are combined in chunk order on
// the calling thread. The rounding is then the same for 1, 2 or 64 threads, so a training run
// gives the same numbers whatever OMP_NUM_THREADS is, and the thread count may follow the cores
// that are free (engine/cpu_threads.h) without changing results.
#pragma once

#include <omp.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <vector>

namespace rg::kernels::cpu {

// Below this many elements a reduction is one chunk (and runs on the calling thread).
constexpr int64_t kChunkMinElems = int64_t{1} << 14;
// At most this many chunks: enough to balance any core count this code meets, few enough that
// merging the partials costs nothing.
constexpr int64_t kMaxChunks = 64;

// Chunks for `items` items (rows) of `item_elems` elements each: about one per kChunkMinElems
// elements, at least 1, at most kMaxChunks and at most `items`.
inline int64_t chunk_count(int64_t items, int64_t item_elems) {
  if (items <= 1) return 1;
  const int64_t elems = items * std::max<int64_t>(1, item_elems);
  return std::clamp<int64_t>(elems / kChunkMinElems, 1, std::min(kMaxChunks, items));
}

// Bounds of chunk c when [0, items) is cut into `chunks` near-equal contiguous pieces.
inline void chunk_bounds(int64_t items, int64_t chunks, int64_t c, int64_t& begin, int64_t& end) {
  const int64_t q = items / chunks, r = items % chunks;
  begin = c * q + std::min(c, r);
  end = begin + q + (c < r ? 1 : 0);
}

// Threads worth starting for `chunks` chunks (1 when there is a single chunk).
inline int chunk_threads(int64_t chunks) {
  return static_cast<int>(std::clamp<int64_t>(omp_get_max_threads(), 1, chunks));
}

// K sums over [0, n): fn(begin, end, acc) adds the terms of [begin, end) into acc[0..K).
template <int K, typename Fn>
std::array<double, K> chunked_sums(int64_t n, Fn&& fn) {
  std::array<double, K> out{};
  if (n <= 0) return out;
  const int64_t chunks = chunk_count(n, 1);
  std::vector<std::array<double, K>> partial(static_cast<size_t>(chunks), std::array<double, K>{});
#pragma omp parallel for schedule(static) num_threads(chunk_threads(chunks)) if (chunks > 1)
  for (int64_t c = 0; c < chunks; ++c) {
    int64_t b = 0, e = 0;
    chunk_bounds(n, chunks, c, b, e);
    fn(b, e, partial[static_cast<size_t>(c)].data());
  }
  for (const std::array<double, K>& p : partial) {
    for (int k = 0; k < K; ++k) out[static_cast<size_t>(k)] += p[static_cast<size_t>(k)];
  }
  return out;
}

// out[0, width) = sum over the rows [0, rows) (each row_elems elements of work) of fn(r0, r1,
// acc), where fn adds the contributions of rows [r0, r1) into acc[0, width) (zero-initialized).
template <typename Fn>
void chunked_row_sums(int64_t rows, int64_t row_elems, int64_t width, double* out, Fn&& fn) {
  std::fill(out, out + width, 0.0);
  if (rows <= 0) return;
  const int64_t chunks = chunk_count(rows, row_elems);
  if (chunks == 1) {
    fn(int64_t{0}, rows, out);
    return;
  }
  std::vector<double> partial(static_cast<size_t>(chunks * width), 0.0);
#pragma omp parallel for schedule(static) num_threads(chunk_threads(chunks))
  for (int64_t c = 0; c < chunks; ++c) {
    int64_t r0 = 0, r1 = 0;
    chunk_bounds(rows, chunks, c, r0, r1);
    fn(r0, r1, partial.data() + c * width);
  }
  for (int64_t c = 0; c < chunks; ++c) {
    const double* p = partial.data() + c * width;
    for (int64_t j = 0; j < width; ++j) out[j] += p[j];
  }
}

}  // namespace rg::kernels::cpu
