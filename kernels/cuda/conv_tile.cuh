// What the three implicit-GEMM convolution kernels (conv_forward.cu, conv_backward_data.cu,
// conv_backward_weight.cu) share: tile shapes, math policies, shared-memory tiles, the
// double-buffered main loop, the fp32-FMA and tensor-core (wmma) inner products, the epilogue
// stores and split-K. Private to those files.
//
// Each direction is one GEMM C[m][n] = sum_k A[m][k] * B[k][n] whose operands are gathered
// from the NHWC / OHWI tensors while loading (no im2col buffer). A block computes a BM x BN
// tile of C. Per BK-slice of k, every thread loads its share of both operand tiles into
// registers (masked: rows or columns past the end, padding and invalid taps read as zero),
// then stores them into one of two shared-memory stages while the other stage is multiplied:
// one __syncthreads per slice. A GEMM with few tiles and a long k splits k over blockIdx.z
// and sums fp32 partials in a fixed order (see Split-K below).
//
// Shared-memory layouts. An operand tile is "k-major" ([BK][rows + pad]: for each k its rows
// are contiguous) or "k-contiguous" ([rows][BK + pad]). A direction's loader reads each operand
// in the direction its global layout is contiguous in:
//   - along k (forward A and B, backward-data A): for tensor cores stored k-contiguous (a
//     straight 16-byte copy; the wmma fragment is loaded row- or column-major to match); for
//     the FMA path transposed to k-major, so that the inner loop reads 4 consecutive rows with
//     one 16-byte load (the transposing stores happen once per slice, the loads BK times);
//   - along the rows, i.e. along m or n (backward-data B, both backward-weight operands):
//     stored k-major.
#pragma once

#include <mma.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "kernels/cuda/common.h"
#include "kernels/cuda/conv.h"
#include "kernels/cuda/device_util.cuh"

namespace rg::kernels::cuda::conv_detail {

namespace wmma = nvcuda::wmma;

// ---- Integer helpers ---------------------------------------------------------------------

constexpr int ceil_div(int a, int b) {
  return (a + b - 1) / b;
}
constexpr int round_up(int a, int b) {
  return ceil_div(a, b) * b;
}

// Division by a divisor fixed for a launch, as a multiply-high, an add and a shift
// (Granlund-Montgomery, "round-up" variant): exact for 0 <= n < 2^31 and 1 <= d < 2^31. The
// loaders decompose gathered indices (pixel -> (image, row, column), k -> (tap, channel)) in
// their inner loops, where a hardware-less 32-bit division would cost ~20 instructions each.
struct Divisor {
  uint32_t d = 1, mul = 1, shift = 0;

  Divisor() = default;
  __host__ __device__ explicit Divisor(int divisor) {
    d = divisor < 1 ? 1u : static_cast<uint32_t>(divisor);
    shift = 0;
    while ((uint64_t{1} << shift) < d) ++shift;
    // (2^shift - d) < d <= 2^31, so the product fits 64 bits and the quotient 32 bits.
    mul = static_cast<uint32_t>(((uint64_t{1} << 32) * ((uint64_t{1} << shift) - d)) / d + 1);
  }
  __device__ __forceinline__ int div(int n) const {
    const uint32_t un = static_cast<uint32_t>(n);
    return static_cast<int>((__umulhi(un, mul) + un) >> shift);
  }
  __device__ __forceinline__ int value() const { return static_cast<int>(d); }
};

// Coordinates of a masked-off row: far enough below zero that adding any kernel tap keeps them
// negative, so one bounds check per load covers both the row mask and the padding.
constexpr int kFarAway = INT_MIN / 2;

// ---- Math policies -----------------------------------------------------------------------

enum class Layout { KMajor, KContig };

// Exact fp32 FMA on CUDA cores.
struct MathFp32 {
  using Elem = float;
  static constexpr bool kTensorCores = false;
  static constexpr int kBK = 16;
  static constexpr int kPadKMajor = 4;  // rows stay 16-byte aligned for the float4 reads
  static constexpr int kPadKContig = 4;
};

// TF32 tensor cores: operands rounded to TF32 (10-bit mantissa) in the fragments, fp32 sums.
struct MathTf32 {
  using Elem = float;
  using FragElem = wmma::precision::tf32;
  static constexpr bool kTensorCores = true;
  static constexpr int kBK = 16;
  static constexpr int kKStep = 8;
  // Leading dimensions of 136 / 20 floats make the fragments' 4-byte loads conflict-free.
  static constexpr int kPadKMajor = 8;
  static constexpr int kPadKContig = 4;
};

// BF16 tensor cores with fp32 accumulators.
struct MathBf16 {
  using Elem = bf16;
  using FragElem = bf16;
  static constexpr bool kTensorCores = true;
  static constexpr int kBK = 32;
  static constexpr int kKStep = 16;
  // 16-byte pads: the 8 rows of each ldmatrix phase fall into distinct banks.
  static constexpr int kPadKMajor = 8;
  static constexpr int kPadKContig = 8;
};

// ---- Tile shapes -------------------------------------------------------------------------

template <int BM, int BN, int WARPS_M, int WARPS_N, int MIN_BLOCKS>
struct TileShape {
  static constexpr int kBM = BM, kBN = BN;
  // Blocks per SM the register allocation must allow (__launch_bounds__): 16 warps per SM,
  // i.e. at most 128 registers per thread.
  static constexpr int kMinBlocks = MIN_BLOCKS;
  static constexpr int kWarpsM = WARPS_M, kWarpsN = WARPS_N;
  static constexpr int kWarps = WARPS_M * WARPS_N;
  static constexpr int kThreads = 32 * kWarps;
};

// __launch_bounds__ minimum blocks per SM of a kernel: a kernel reading an operand with scalar
// loads keeps gather state per element it loads (up to 16 per slice) and gets more registers
// rather than spilling (it only runs on layers with 1-3 or odd channel counts).
template <class Tile, bool kVecA, bool kVecB>
constexpr int min_blocks() {
  return kVecA && kVecB ? Tile::kMinBlocks : 2;
}

// 8 warps of 64x32 (tensor cores) or 256 threads of 8x8 (FMA).
using TileBig = TileShape<128, 128, 2, 4, 2>;
// 4 warps of 32x32 or 128 threads of 8x4: for small problems (more blocks) and narrow ones.
using TileSmall = TileShape<64, 64, 2, 2, 4>;

// A problem small enough that 128x128 tiles would leave most SMs idle uses the small tiles.
// A fixed nominal SM count (H100) keeps the choice, and so the results, the same on every GPU.
constexpr int kNominalSms = 132;

inline bool use_big_tiles(int64_t m, int64_t n) {
  if (n <= TileSmall::kBN || m <= TileSmall::kBM) return false;
  const int64_t blocks =
      ((m + TileBig::kBM - 1) / TileBig::kBM) * ((n + TileBig::kBN - 1) / TileBig::kBN);
  return blocks >= kNominalSms;
}

// ---- Shared-memory operand tiles ---------------------------------------------------------

template <typename T, int ROWS, int BK, Layout L, int PAD>
struct SmemTile {
  using Elem = T;
  static constexpr int kRows = ROWS, kBK = BK;
  static constexpr Layout kLayout = L;
  static constexpr int kLd = L == Layout::KMajor ? ROWS + PAD : BK + PAD;
  static constexpr int kElems = L == Layout::KMajor ? BK * kLd : ROWS * kLd;
  static constexpr int kBytes = round_up(kElems * static_cast<int>(sizeof(T)), 128);
  static_assert((kLd * sizeof(T)) % 16 == 0, "rows must stay 16-byte aligned");
  __device__ __forceinline__ static int index(int row, int k) {
    return L == Layout::KMajor ? k * kLd + row : row * kLd + k;
  }
};

// The tile of an operand read along k (global memory contiguous in k).
template <class Math, int ROWS>
using AlongKTile = SmemTile<typename Math::Elem, ROWS, Math::kBK,
                            Math::kTensorCores ? Layout::KContig : Layout::KMajor,
                            Math::kTensorCores ? Math::kPadKContig : Math::kPadKMajor>;
// The tile of an operand read along its rows (global memory contiguous in m or n).
template <class Math, int ROWS>
using AlongRowsTile =
    SmemTile<typename Math::Elem, ROWS, Math::kBK, Layout::KMajor, Math::kPadKMajor>;

// Two stages of (A tile, B tile) in one raw shared-memory array.
template <class TileA, class TileB>
struct Stages {
  using T = typename TileA::Elem;
  static constexpr int kStageBytes = TileA::kBytes + TileB::kBytes;
  static constexpr int kBytes = 2 * kStageBytes;
  __device__ __forceinline__ static T* a(unsigned char* smem, int stage) {
    return reinterpret_cast<T*>(smem + stage * kStageBytes);
  }
  __device__ __forceinline__ static T* b(unsigned char* smem, int stage) {
    return reinterpret_cast<T*>(smem + stage * kStageBytes + TileA::kBytes);
  }
};

// ---- Global -> register chunks -----------------------------------------------------------

// VEC elements read with one load: 16 bytes, or one element on the scalar path.
template <typename T, int VEC>
using Chunk = std::conditional_t<VEC == 1, T, uint4>;

template <typename T>
constexpr int kVec16 = 16 / static_cast<int>(sizeof(T));

template <typename T>
__device__ __forceinline__ T elem_from_float(float v) {
  if constexpr (std::is_same_v<T, float>) {
    return v;
  } else {
    return __float2bfloat16_rn(v);
  }
}
__device__ __forceinline__ float elem_to_float(float v) {
  return v;
}
__device__ __forceinline__ float elem_to_float(bf16 v) {
  return __bfloat162float(v);
}

template <typename T, int VEC>
__device__ __forceinline__ Chunk<T, VEC> load_chunk(const T* p) {
  if constexpr (VEC == 1) {
    return *p;
  } else {
    static_assert(VEC * sizeof(T) == 16);
    return __ldg(reinterpret_cast<const uint4*>(p));
  }
}

template <typename T, int VEC>
__device__ __forceinline__ Chunk<T, VEC> zero_chunk() {
  if constexpr (VEC == 1) {
    return elem_from_float<T>(0.f);
  } else {
    return make_uint4(0u, 0u, 0u, 0u);
  }
}

template <typename T, int VEC>
__device__ __forceinline__ void unpack_chunk(const Chunk<T, VEC>& c, T (&e)[VEC]) {
  if constexpr (VEC == 1) {
    e[0] = c;
  } else {
    memcpy(e, &c, sizeof(c));
  }
}

// Thread -> element assignment of an operand tile read along k: each tile row (m or n) is
// BK / VEC chunks; a thread keeps the same k offset in every pass (so it decomposes k once per
// slice) and moves down the rows.
template <int ROWS, int BK, int THREADS, int VEC>
struct AlongKAssignment {
  static constexpr int kChunksPerRow = BK / VEC;
  static_assert(BK % VEC == 0 && THREADS % kChunksPerRow == 0);
  static constexpr int kRowsPerPass = THREADS / kChunksPerRow;
  static_assert(ROWS % kRowsPerPass == 0);
  static constexpr int kPasses = ROWS / kRowsPerPass;
  __device__ __forceinline__ static int k_offset(int tid) { return (tid % kChunksPerRow) * VEC; }
  __device__ __forceinline__ static int row(int tid, int pass) {
    return tid / kChunksPerRow + pass * kRowsPerPass;
  }
};

// Thread -> element assignment of an operand tile read along its rows: each k of the slice is
// ROWS / VEC chunks; a thread keeps the same rows (so their decomposition is done once) and
// moves along k.
template <int ROWS, int BK, int THREADS, int VEC>
struct AlongRowsAssignment {
  static constexpr int kChunksPerK = ROWS / VEC;
  static_assert(ROWS % VEC == 0 && THREADS % kChunksPerK == 0);
  static constexpr int kKPerPass = THREADS / kChunksPerK;
  static_assert(BK % kKPerPass == 0);
  static constexpr int kPasses = BK / kKPerPass;
  __device__ __forceinline__ static int row_offset(int tid) { return (tid % kChunksPerK) * VEC; }
  __device__ __forceinline__ static int k(int tid, int pass) {
    return tid / kChunksPerK + pass * kKPerPass;
  }
};

// Chunk of elements (row, k .. k + VEC) into the tile.
template <class Tile, int VEC>
__device__ __forceinline__ void put_along_k(typename Tile::Elem* s, int row, int k,
                                            const Chunk<typename Tile::Elem, VEC>& c) {
  using T = typename Tile::Elem;
  if constexpr (Tile::kLayout == Layout::KContig) {
    if constexpr (VEC == 1) {
      s[Tile::index(row, k)] = c;
    } else {
      *reinterpret_cast<uint4*>(s + Tile::index(row, k)) = c;
    }
  } else {
    T e[VEC];
    unpack_chunk<T, VEC>(c, e);
#pragma unroll
    for (int i = 0; i < VEC; ++i) s[Tile::index(row, k + i)] = e[i];
  }
}

// Chunk of elements (row .. row + VEC, k) into a k-major tile.
template <class Tile, int VEC>
__device__ __forceinline__ void put_along_rows(typename Tile::Elem* s, int k, int row,
                                               const Chunk<typename Tile::Elem, VEC>& c) {
  static_assert(Tile::kLayout == Layout::KMajor);
  if constexpr (VEC == 1) {
    s[Tile::index(row, k)] = c;
  } else {
    *reinterpret_cast<uint4*>(s + Tile::index(row, k)) = c;
  }
}

// ---- Inner products ----------------------------------------------------------------------

// fp32 FMA: a 16 x (threads/16) grid of threads, each owning TM x TN outputs in groups of 4
// consecutive rows / columns (rows g*4*TY + ty*4 + i, columns h*4*TX + tx*4 + j), read from the
// k-major tiles with 16-byte loads. Within a warp the B reads cover 256 consecutive bytes and
// the A reads two addresses (broadcast): conflict-free.
template <class Tile>
struct FmaCore {
  static constexpr int kTX = 16;
  static constexpr int kTY = Tile::kThreads / kTX;
  static constexpr int kTM = Tile::kBM / kTY, kTN = Tile::kBN / kTX;
  static_assert(kTM % 4 == 0 && kTN % 4 == 0 && kTM * kTY == Tile::kBM);

  float acc[kTM][kTN];
  int tx, ty;

  __device__ explicit FmaCore(int tid) : tx(tid % kTX), ty(tid / kTX) {
#pragma unroll
    for (int i = 0; i < kTM; ++i)
#pragma unroll
      for (int j = 0; j < kTN; ++j) acc[i][j] = 0.f;
  }

  template <class TileA, class TileB>
  __device__ __forceinline__ void multiply(const float* as, const float* bs) {
    static_assert(TileA::kLayout == Layout::KMajor && TileB::kLayout == Layout::KMajor);
#pragma unroll
    for (int k = 0; k < TileA::kBK; ++k) {
      float a[kTM], b[kTN];
#pragma unroll
      for (int g = 0; g < kTM / 4; ++g) {
        const float4 v =
            *reinterpret_cast<const float4*>(as + TileA::index(g * 4 * kTY + ty * 4, k));
        a[g * 4 + 0] = v.x;
        a[g * 4 + 1] = v.y;
        a[g * 4 + 2] = v.z;
        a[g * 4 + 3] = v.w;
      }
#pragma unroll
      for (int h = 0; h < kTN / 4; ++h) {
        const float4 v =
            *reinterpret_cast<const float4*>(bs + TileB::index(h * 4 * kTX + tx * 4, k));
        b[h * 4 + 0] = v.x;
        b[h * 4 + 1] = v.y;
        b[h * 4 + 2] = v.z;
        b[h * 4 + 3] = v.w;
      }
#pragma unroll
      for (int i = 0; i < kTM; ++i)
#pragma unroll
        for (int j = 0; j < kTN; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
  }

  // Calls emit(row, col, v) for runs v of 4 consecutive columns (tile-local coordinates).
  template <class Emit>
  __device__ __forceinline__ void emit(unsigned char* /*smem*/, Emit&& emit_run) {
#pragma unroll
    for (int i = 0; i < kTM; ++i) {
      const int row = (i / 4) * 4 * kTY + ty * 4 + i % 4;
#pragma unroll
      for (int h = 0; h < kTN / 4; ++h) {
        const float v[4] = {acc[i][h * 4], acc[i][h * 4 + 1], acc[i][h * 4 + 2], acc[i][h * 4 + 3]};
        emit_run(row, h * 4 * kTX + tx * 4, v);
      }
    }
  }
};

// Tensor cores through wmma: each warp owns a (BM/WARPS_M) x (BN/WARPS_N) block of 16x16
// accumulator fragments.
template <class Tile, class Math>
struct WmmaCore {
  using Elem = typename Math::Elem;
  using FragElem = typename Math::FragElem;
  static constexpr int kKStep = Math::kKStep;
  static constexpr int kWTM = Tile::kBM / Tile::kWarpsM, kWTN = Tile::kBN / Tile::kWarpsN;
  static constexpr int kFM = kWTM / 16, kFN = kWTN / 16;
  static_assert(kWTM % 16 == 0 && kWTN % 16 == 0);
  // Per-warp 16x16 fp32 staging area of the epilogue (aliases the operand stages).
  static constexpr int kScratchBytes = Tile::kWarps * 16 * 16 * 4;

  wmma::fragment<wmma::accumulator, 16, 16, kKStep, float> acc[kFM][kFN];
  int warp, lane, warp_m, warp_n;

  __device__ explicit WmmaCore(int tid)
      : warp(tid / 32),
        lane(tid % 32),
        warp_m((warp / Tile::kWarpsN) * kWTM),
        warp_n((warp % Tile::kWarpsN) * kWTN) {
#pragma unroll
    for (int i = 0; i < kFM; ++i)
#pragma unroll
      for (int j = 0; j < kFN; ++j) wmma::fill_fragment(acc[i][j], 0.f);
  }

  template <class Frag>
  __device__ __forceinline__ static void round_operands(Frag& f) {
    if constexpr (std::is_same_v<FragElem, wmma::precision::tf32>) {
#pragma unroll
      for (int t = 0; t < f.num_elements; ++t) f.x[t] = wmma::__float_to_tf32(f.x[t]);
    }
  }

  // A k-major A tile is a column-major 16 x k fragment, a k-contiguous one row-major; for B
  // (k x 16) the other way round.
  template <class TileA, class TileB>
  __device__ __forceinline__ void multiply(const Elem* as, const Elem* bs) {
    using LayoutA =
        std::conditional_t<TileA::kLayout == Layout::KMajor, wmma::col_major, wmma::row_major>;
    using LayoutB =
        std::conditional_t<TileB::kLayout == Layout::KMajor, wmma::row_major, wmma::col_major>;
#pragma unroll
    for (int k = 0; k < TileA::kBK; k += kKStep) {
      // All B fragments of the step stay live, A fragments one at a time (registers: the
      // accumulators already take 64 per thread in the big tile).
      wmma::fragment<wmma::matrix_b, 16, 16, kKStep, FragElem, LayoutB> b[kFN];
#pragma unroll
      for (int j = 0; j < kFN; ++j) {
        wmma::load_matrix_sync(b[j], bs + TileB::index(warp_n + 16 * j, k), TileB::kLd);
        round_operands(b[j]);
      }
#pragma unroll
      for (int i = 0; i < kFM; ++i) {
        wmma::fragment<wmma::matrix_a, 16, 16, kKStep, FragElem, LayoutA> a;
        wmma::load_matrix_sync(a, as + TileA::index(warp_m + 16 * i, k), TileA::kLd);
        round_operands(a);
#pragma unroll
        for (int j = 0; j < kFN; ++j) wmma::mma_sync(acc[i][j], a, b[j], acc[i][j]);
      }
    }
  }

  // Calls emit(row, col, v) for runs v of 8 consecutive columns (tile-local coordinates): each
  // fragment goes through the warp's scratch, a lane takes half a row. The caller makes sure no
  // thread still reads the operand stages (the main loop ends with __syncthreads).
  template <class Emit>
  __device__ __forceinline__ void emit(unsigned char* smem, Emit&& emit_run) {
    float* scratch = reinterpret_cast<float*>(smem) + warp * 16 * 16;
    const int r = lane / 2, c = (lane % 2) * 8;
#pragma unroll
    for (int i = 0; i < kFM; ++i)
#pragma unroll
      for (int j = 0; j < kFN; ++j) {
        wmma::store_matrix_sync(scratch, acc[i][j], 16, wmma::mem_row_major);
        __syncwarp();
        float v[8];
#pragma unroll
        for (int e = 0; e < 8; ++e) v[e] = scratch[r * 16 + c + e];
        __syncwarp();  // the next fragment overwrites the scratch
        emit_run(warp_m + 16 * i + r, warp_n + 16 * j + c, v);
      }
  }
};

template <class Math, class Tile>
using CoreOf = std::conditional_t<Math::kTensorCores, WmmaCore<Tile, Math>, FmaCore<Tile>>;

template <class Math, class Tile>
constexpr int epilogue_bytes() {
  if constexpr (Math::kTensorCores) {
    return WmmaCore<Tile, Math>::kScratchBytes;
  } else {
    return 0;
  }
}

// Shared memory of a kernel: the operand stages, reused by the epilogue (and `extra` bytes of
// other after-loop uses).
template <class Math, class Tile, class TileA, class TileB, int kExtra = 0>
constexpr int smem_bytes() {
  int bytes = Stages<TileA, TileB>::kBytes;
  if (epilogue_bytes<Math, Tile>() > bytes) bytes = epilogue_bytes<Math, Tile>();
  if (kExtra > bytes) bytes = kExtra;
  return bytes;
}

// ---- Main loop ---------------------------------------------------------------------------

struct NoStageVisit {
  template <typename T>
  __device__ __forceinline__ void operator()(const T*) const {}
};

// Multiplies the slices [k_begin, k_end) into the core's accumulators. Loaders provide
// load(k0) (global -> registers, masked) and store(tile) (registers -> shared memory). Stage s^1
// is written while stage s is read; the __syncthreads at the end of each slice both publishes
// the new stage and retires the old one. visit_a(A tile) may read each A slice once more while
// it is in shared memory. Ends with a __syncthreads when it ran at all, so the caller may reuse
// the stages' memory afterwards.
template <class TileA, class TileB, class Core, class LoaderA, class LoaderB,
          class VisitA = NoStageVisit>
__device__ __forceinline__ void main_loop(unsigned char* smem, Core& core, LoaderA& a, LoaderB& b,
                                          int k_begin, int k_end, VisitA&& visit_a = VisitA{}) {
  using S = Stages<TileA, TileB>;
  constexpr int kBK = TileA::kBK;
  static_assert(TileB::kBK == kBK);
  if (k_begin >= k_end) return;
  a.load(k_begin);
  b.load(k_begin);
  a.template store<TileA>(S::a(smem, 0));
  b.template store<TileB>(S::b(smem, 0));
  __syncthreads();
  int stage = 0;
  for (int k0 = k_begin; k0 < k_end; k0 += kBK) {
    const bool more = k0 + kBK < k_end;  // uniform across the block
    if (more) {
      a.load(k0 + kBK);
      b.load(k0 + kBK);
    }
    core.template multiply<TileA, TileB>(S::a(smem, stage), S::b(smem, stage));
    visit_a(S::a(smem, stage));
    if (more) {
      a.template store<TileA>(S::a(smem, stage ^ 1));
      b.template store<TileB>(S::b(smem, stage ^ 1));
    }
    __syncthreads();
    stage ^= 1;
  }
}

// ---- Epilogue stores ---------------------------------------------------------------------

template <typename Out>
__device__ __forceinline__ Out out_from_float(float v) {
  return elem_from_float<Out>(v);
}

// Writes v[0 .. min(L, valid)) to dst[0 ..): one or two 16-byte (or 8-byte) stores when the run
// is whole and dst aligned, element stores otherwise (tail columns, unaligned outputs).
template <typename Out, int L>
__device__ __forceinline__ void store_run(Out* dst, const float (&v)[L], int valid) {
  constexpr int kBytes = L * static_cast<int>(sizeof(Out));
  if (valid >= L) {
    Out packed[L];
#pragma unroll
    for (int i = 0; i < L; ++i) packed[i] = out_from_float<Out>(v[i]);
    const uintptr_t addr = reinterpret_cast<uintptr_t>(dst);
    if constexpr (kBytes % 16 == 0) {
      if (addr % 16 == 0) {
#pragma unroll
        for (int c = 0; c < kBytes / 16; ++c) {
          uint4 u;
          memcpy(&u, reinterpret_cast<const unsigned char*>(packed) + 16 * c, 16);
          reinterpret_cast<uint4*>(dst)[c] = u;
        }
        return;
      }
    }
    if constexpr (kBytes % 8 == 0) {
      if (addr % 8 == 0) {
#pragma unroll
        for (int c = 0; c < kBytes / 8; ++c) {
          uint2 u;
          memcpy(&u, reinterpret_cast<const unsigned char*>(packed) + 8 * c, 8);
          reinterpret_cast<uint2*>(dst)[c] = u;
        }
        return;
      }
    }
#pragma unroll
    for (int i = 0; i < L; ++i) dst[i] = packed[i];
    return;
  }
#pragma unroll
  for (int i = 0; i < L; ++i) {
    if (i < valid) dst[i] = out_from_float<Out>(v[i]);
  }
}

// ---- Split-K ------------------------------------------------------------------------------

// A GEMM with few output tiles and a long reduction (the U-Net's deep layers in every direction,
// the shallow ones in backward-weight) splits the reduction into `splits` ranges of whole
// BK-steps, one per blockIdx (z); each split writes fp32 partials of the whole output to a
// workspace [split][elements], and sum_splits_kernel adds them in split order (deterministic).
// The choice depends on the shape only (nominal SM count), so results are the same on every
// GPU: about two waves of blocks, each split at least kMinStepsPerSplit steps long (the
// partials' traffic stays small next to the products), the workspace bounded.
constexpr int kTargetBlocks = 2 * kNominalSms;
constexpr int kMinStepsPerSplit = 16;
constexpr int64_t kMaxWorkspaceBytes = int64_t{64} << 20;

struct SplitPlan {
  int splits = 1;
  int k_per_split = 0;  // multiple of BK; every split's range is non-empty for the longest K
};

// tiles: blocks per split; k: longest reduction; partial_elems: workspace floats per split.
inline SplitPlan plan_splits(int tiles, int k, int bk, int64_t partial_elems) {
  const int steps = ceil_div(k, bk);
  int splits = kTargetBlocks / (tiles < 1 ? 1 : tiles);
  splits = std::min(splits, steps / kMinStepsPerSplit);
  const int64_t by_memory = kMaxWorkspaceBytes / (std::max<int64_t>(1, partial_elems) * 4);
  splits = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(splits, by_memory)));
  SplitPlan plan;
  const int steps_per_split = ceil_div(std::max(steps, 1), splits);
  plan.splits = std::max(1, ceil_div(steps, steps_per_split));
  plan.k_per_split = steps_per_split * bk;
  return plan;
}

// Workspace from the stream-ordered allocator (capturable in CUDA graphs; whether its memory
// stays cached across synchronizations is the pool's release threshold, the engine's choice),
// freed in stream order when it goes out of scope, i.e. after the kernels launched before.
// Null when the allocation fails: the caller then runs without a split.
class StreamWorkspace {
 public:
  StreamWorkspace(size_t bytes, cudaStream_t stream) : stream_(stream) {
    if (bytes == 0) return;
    if (cudaMallocAsync(reinterpret_cast<void**>(&ptr_), bytes, stream) != cudaSuccess) {
      (void)cudaGetLastError();  // an allocation failure is not sticky: clear it
      ptr_ = nullptr;
    }
  }
  ~StreamWorkspace() {
    if (ptr_ != nullptr) (void)cudaFreeAsync(ptr_, stream_);
  }
  StreamWorkspace(const StreamWorkspace&) = delete;
  StreamWorkspace& operator=(const StreamWorkspace&) = delete;
  float* get() const { return ptr_; }

 private:
  float* ptr_ = nullptr;
  cudaStream_t stream_;
};

namespace {  // one copy per kernel file

// out[i] = sum over splits of partials[split * split_stride + i] (+ bias[i % bias_period]),
// rounded once to Out.
template <typename Out>
__global__ void sum_splits_kernel(const float* __restrict__ partials, int64_t split_stride,
                                  int splits, int64_t count, const float* __restrict__ bias,
                                  int bias_period, Out* __restrict__ out) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += step) {
    float sum = 0.f;
    for (int z = 0; z < splits; ++z) sum += partials[z * split_stride + i];
    if (bias != nullptr) sum += bias[i % bias_period];
    out[i] = out_from_float<Out>(sum);
  }
}

template <typename Out>
void sum_splits(const float* partials, int64_t split_stride, int splits, int64_t count,
                const float* bias, int bias_period, Out* out, cudaStream_t stream) {
  if (count == 0) return;
  constexpr int kThreads = 256;
  const int blocks = static_cast<int>(std::min<int64_t>((count + kThreads - 1) / kThreads, 4096));
  sum_splits_kernel<Out><<<blocks, kThreads, 0, stream>>>(partials, split_stride, splits, count,
                                                          bias, bias_period, out);
  RG_KERNEL_LAUNCH_CHECK("sum_splits_kernel");
}

}  // namespace

// ---- Host-side helpers -------------------------------------------------------------------

// Sizes of a convolution as the kernels index them (32-bit), checked. Output sizes follow the
// CPU reference: a kernel larger than the padded input gives an empty output.
struct ConvSizes {
  int n, h, w, c_in, c_out, kh, kw, sh, sw, ph, pw;
  int oh, ow;
  int k;       // kh * kw * c_in
  int pixels;  // n * oh * ow
};

inline ConvSizes conv_sizes(const Conv2dShape& s, const char* what) {
  auto fail = [&](const std::string& why) {
    throw std::invalid_argument(std::string(what) + ": " + why);
  };
  if (s.n < 0 || s.h < 0 || s.w < 0 || s.c_in < 0 || s.c_out < 0) fail("negative size");
  if (s.kh < 1 || s.kw < 1) fail("kernel size must be positive");
  if (s.stride_h < 1 || s.stride_w < 1) fail("stride must be positive");
  if (s.pad_h < 0 || s.pad_w < 0) fail("padding must be non-negative");
  const int64_t span_h = s.h + 2 * s.pad_h - s.kh, span_w = s.w + 2 * s.pad_w - s.kw;
  const int64_t oh = span_h < 0 ? 0 : span_h / s.stride_h + 1;
  const int64_t ow = span_w < 0 ? 0 : span_w / s.stride_w + 1;
  // Every index the kernels form in 32 bits (pixel counts, GEMM extents, weight rows, taps),
  // with headroom for a slice past the end and for padding offsets.
  constexpr int64_t kLimit = INT_MAX / 4;
  const int64_t checked[] = {s.n * s.h * s.w,       s.n * oh * ow,          s.kh * s.kw * s.c_in,
                             s.kh * s.kw * s.c_out, s.c_out * s.kh * s.kw,  s.h + 2 * s.pad_h,
                             s.w + 2 * s.pad_w,     s.stride_h * s.stride_w};
  for (int64_t v : checked) {
    if (v > kLimit) fail("sizes exceed the 32-bit indexing of the CUDA conv kernels");
  }
  if (s.c_in > kLimit || s.c_out > kLimit || s.stride_h * s.stride_w > 65535) {
    fail("sizes exceed the 32-bit indexing of the CUDA conv kernels");
  }
  ConvSizes z{};
  z.n = static_cast<int>(s.n);
  z.h = static_cast<int>(s.h);
  z.w = static_cast<int>(s.w);
  z.c_in = static_cast<int>(s.c_in);
  z.c_out = static_cast<int>(s.c_out);
  z.kh = static_cast<int>(s.kh);
  z.kw = static_cast<int>(s.kw);
  z.sh = static_cast<int>(s.stride_h);
  z.sw = static_cast<int>(s.stride_w);
  z.ph = static_cast<int>(s.pad_h);
  z.pw = static_cast<int>(s.pad_w);
  z.oh = static_cast<int>(oh);
  z.ow = static_cast<int>(ow);
  z.k = z.kh * z.kw * z.c_in;
  z.pixels = z.n * z.oh * z.ow;
  return z;
}

// Launch grid, checked against the y and z limits (the x extent is bounded by ConvSizes).
inline dim3 grid_of(int x, int y, int z) {
  if (y > 65535 || z > 65535) {
    throw std::invalid_argument("CUDA conv kernels: grid " + std::to_string(x) + "x" +
                                std::to_string(y) + "x" + std::to_string(z) +
                                " exceeds the launch limits (too many channels)");
  }
  return dim3(static_cast<unsigned>(x), static_cast<unsigned>(y), static_cast<unsigned>(z));
}

// Calls fn with the math policy: bf16 always on bf16 tensor cores, float by `math`.
template <typename T, class Fn>
void with_math(ConvMath math, Fn&& fn) {
  if constexpr (std::is_same_v<T, bf16>) {
    (void)math;
    fn(MathBf16{});
  } else {
    static_assert(std::is_same_v<T, float>, "conv kernels take float or bf16");
    if (math == ConvMath::Tf32) {
      fn(MathTf32{});
    } else {
      fn(MathFp32{});
    }
  }
}

// Calls fn(tile, vec_a, vec_b) with the tile shape and whether each operand is read in 16-byte
// chunks. The scalar paths serve the layers with 1-3 (or odd) channels, which are small or
// memory-bound: they only get the small tile (their per-row state does not fit the big tile's
// 128 registers, and it halves the number of kernels).
template <class Fn>
void with_tile_and_vectors(bool big, bool vec_a, bool vec_b, Fn&& fn) {
  using T = std::true_type;
  using F = std::false_type;
  if (vec_a && vec_b) {
    if (big) {
      fn(TileBig{}, T{}, T{});
    } else {
      fn(TileSmall{}, T{}, T{});
    }
  } else if (vec_a) {
    fn(TileSmall{}, T{}, F{});
  } else if (vec_b) {
    fn(TileSmall{}, F{}, T{});
  } else {
    fn(TileSmall{}, F{}, F{});
  }
}

}  // namespace rg::kernels::cuda::conv_detail
