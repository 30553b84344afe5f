// CPU emulation of CUDA: nvcuda::wmma (mma.h), the warp-level tensor-core API.
//
// A fragment is warp-wide: its rows * cols elements are spread over the 32 lanes, each lane
// holding num_elements = rows * cols / 32 of them in x[] (as on the GPU, where the mapping is
// unspecified; here element e of the row-major matrix is x[e / 32] of lane e % 32). The _sync
// operations are warp collectives: the last lane to arrive checks the hardware's rules, gathers
// the operands from all lanes, does the work once for the warp and scatters the result. Code
// that treats the x[] of every lane alike (fill, scale, round) therefore behaves as on the GPU,
// at 1/32 of the work per lane. The rules checked (a kernel that breaks them is wrong on the
// GPU, whatever it computes here):
//   - all 32 lanes take part, with the same pointer, leading dimension and layout;
//   - the pointer is 256-bit (32-byte) aligned;
//   - ldm is a multiple of 16 bytes: 8 elements of a 16-bit type, 4 of a 32-bit one.
// mma_sync reads its operands as the tensor cores do: tf32 keeps the top 10 mantissa bits
// (truncation; __float_to_tf32 is the rounding the kernel may apply first), bf16 is exact, and
// products are summed in fp32.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>

#include "tests/emu/emu_bf16.h"
#include "tests/emu/emu_device.h"

namespace nvcuda::wmma {

struct row_major {};
struct col_major {};
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
namespace precision {
struct tf32 {};
}  // namespace precision
enum layout_t { mem_row_major, mem_col_major };

namespace detail {

template <typename T>
struct Storage {
  using type = T;
};
template <>
struct Storage<precision::tf32> {
  using type = float;
};

template <typename Use, int M, int N, int K>
struct Dims;
template <int M, int N, int K>
struct Dims<matrix_a, M, N, K> {
  static constexpr int rows = M, cols = K;
};
template <int M, int N, int K>
struct Dims<matrix_b, M, N, K> {
  static constexpr int rows = K, cols = N;
};
template <int M, int N, int K>
struct Dims<accumulator, M, N, K> {
  static constexpr int rows = M, cols = N;
};

template <typename T, int M, int N, int K>
constexpr bool supported_shape() {
  if constexpr (std::is_same_v<T, precision::tf32>) {
    return M == 16 && N == 16 && K == 8;
  } else if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    return (M == 16 && N == 16 && K == 16) || (M == 32 && N == 8 && K == 16) ||
           (M == 8 && N == 32 && K == 16);
  } else {
    return std::is_same_v<T, float>;  // accumulators
  }
}

}  // namespace detail

template <typename Use, int M, int N, int K, typename T, typename Layout = void>
struct fragment {
  static_assert(detail::supported_shape<T, M, N, K>(),
                "wmma: no tensor-core shape m" "x" "n" "x" "k for this element type");
  using element_type = T;
  using storage_element_type = typename detail::Storage<T>::type;
  using use = Use;
  using layout = Layout;
  static constexpr int rows = detail::Dims<Use, M, N, K>::rows;
  static constexpr int cols = detail::Dims<Use, M, N, K>::cols;
  static_assert(rows * cols % 32 == 0);
  static constexpr int num_elements = rows * cols / 32;  // this lane's share
  storage_element_type x[num_elements];
};

inline float __float_to_tf32(float v) {
  uint32_t u;
  std::memcpy(&u, &v, 4);
  if ((u & 0x7f800000u) != 0x7f800000u) {  // finite: round the low 13 bits, ties away from zero
    u += 0x1000u;
    u &= ~0x1fffu;
  }
  std::memcpy(&v, &u, 4);
  return v;
}

namespace detail {

struct MemArgs {
  const void* ptr;
  unsigned ldm;
  bool row_major;
};

inline void check_uniform(const char* op, rg_emu::WarpRecord* r, size_t elem_bytes) {
  const auto* a0 = static_cast<const MemArgs*>(r[0].args);
  for (int lane = 1; lane < 32; ++lane) {
    const auto* a = static_cast<const MemArgs*>(r[lane].args);
    if (a->ptr != a0->ptr || a->ldm != a0->ldm || a->row_major != a0->row_major) {
      rg_emu::fail((std::string(op) + ": lane " + std::to_string(lane) +
                    " passes another pointer, ldm or layout than lane 0 (they must be "
                    "warp-uniform)").c_str());
    }
  }
  if (reinterpret_cast<uintptr_t>(a0->ptr) % 32 != 0) {
    rg_emu::fail((std::string(op) + ": pointer not 256-bit aligned (offset " +
                  std::to_string(reinterpret_cast<uintptr_t>(a0->ptr) % 32) + " bytes)")
                     .c_str());
  }
  if ((a0->ldm * elem_bytes) % 16 != 0) {
    rg_emu::fail((std::string(op) + ": ldm " + std::to_string(a0->ldm) +
                  " is not a multiple of 16 bytes (" + std::to_string(16 / elem_bytes) +
                  " elements)").c_str());
  }
}

// Element e (row-major) of the warp's fragment: lane e % 32, slot e / 32.
template <typename Frag>
typename Frag::storage_element_type& element(rg_emu::WarpRecord* r, int e) {
  return static_cast<Frag*>(r[e % 32].result)->x[e / 32];
}

template <typename Frag, typename Mem>
void load_complete(rg_emu::WarpRecord* r, unsigned, const void*) {
  check_uniform("wmma::load_matrix_sync", r, sizeof(Mem));
  const auto* a = static_cast<const MemArgs*>(r[0].args);
  const Mem* p = static_cast<const Mem*>(a->ptr);
  for (int i = 0; i < Frag::rows; ++i) {
    for (int j = 0; j < Frag::cols; ++j) {
      const Mem v = a->row_major ? p[static_cast<size_t>(i) * a->ldm + j]
                                 : p[static_cast<size_t>(j) * a->ldm + i];
      element<Frag>(r, i * Frag::cols + j) = static_cast<typename Frag::storage_element_type>(v);
    }
  }
}

template <typename Frag>
void store_complete(rg_emu::WarpRecord* r, unsigned, const void*) {
  check_uniform("wmma::store_matrix_sync", r, sizeof(float));
  const auto* a = static_cast<const MemArgs*>(r[0].args);
  auto* p = static_cast<float*>(const_cast<void*>(a->ptr));
  for (int i = 0; i < Frag::rows; ++i) {
    for (int j = 0; j < Frag::cols; ++j) {
      float& dst = a->row_major ? p[static_cast<size_t>(i) * a->ldm + j]
                                : p[static_cast<size_t>(j) * a->ldm + i];
      dst = element<Frag>(r, i * Frag::cols + j);
    }
  }
}

// The value a tensor core multiplies.
inline float operand(float v) {  // tf32: the low 13 mantissa bits are ignored
  uint32_t u;
  std::memcpy(&u, &v, 4);
  u &= ~0x1fffu;
  std::memcpy(&v, &u, 4);
  return v;
}
inline float operand(__nv_bfloat16 v) { return static_cast<float>(v); }

struct MmaArgs {
  const void* a;
  const void* b;
  const void* c;
};

template <typename FA, typename FB, typename FC, typename FD>
void mma_complete(rg_emu::WarpRecord* r, unsigned, const void*) {
  constexpr int M = FA::rows, K = FA::cols, N = FB::cols;
  float av[M * K], bv[K * N], d[M * N];
  for (int lane = 0; lane < 32; ++lane) {
    const auto* m = static_cast<const MmaArgs*>(r[lane].args);
    const auto& a = *static_cast<const FA*>(m->a);
    const auto& b = *static_cast<const FB*>(m->b);
    const auto& c = *static_cast<const FC*>(m->c);
    for (int s = 0; s < FA::num_elements; ++s) av[s * 32 + lane] = operand(a.x[s]);
    for (int s = 0; s < FB::num_elements; ++s) bv[s * 32 + lane] = operand(b.x[s]);
    for (int s = 0; s < FC::num_elements; ++s) d[s * 32 + lane] = c.x[s];
  }
  // d[i][j] = c[i][j] + a[i][0] b[0][j] + a[i][1] b[1][j] + ..., in that order for every
  // element (the j loop is the vectorizable one).
  for (int i = 0; i < M; ++i) {
    float* row = d + i * N;
    for (int k = 0; k < K; ++k) {
      const float aik = av[i * K + k];
      for (int j = 0; j < N; ++j) row[j] += aik * bv[k * N + j];
    }
  }
  for (int lane = 0; lane < 32; ++lane) {
    auto& out = *static_cast<FD*>(r[lane].result);
    for (int s = 0; s < FD::num_elements; ++s) out.x[s] = d[s * 32 + lane];
  }
}

template <typename Layout>
constexpr bool is_row_major() {
  static_assert(std::is_same_v<Layout, row_major> || std::is_same_v<Layout, col_major>,
                "wmma: matrix_a / matrix_b fragments need a row_major or col_major layout");
  return std::is_same_v<Layout, row_major>;
}

}  // namespace detail

template <typename Use, int M, int N, int K, typename T, typename Layout, typename Mem>
void load_matrix_sync(fragment<Use, M, N, K, T, Layout>& f, const Mem* p, unsigned ldm) {
  using Frag = fragment<Use, M, N, K, T, Layout>;
  static_assert(!std::is_same_v<Use, accumulator>, "accumulator loads take a layout_t");
  static_assert(sizeof(Mem) == sizeof(typename Frag::storage_element_type),
                "wmma::load_matrix_sync: memory element type does not match the fragment");
  const detail::MemArgs args{p, ldm, detail::is_row_major<Layout>()};
  rg_emu::warp_collective("wmma::load_matrix_sync", 0xffffffffu, rg_emu::WarpRecord{&args, &f},
                          &detail::load_complete<Frag, Mem>, nullptr);
}

template <int M, int N, int K>
void load_matrix_sync(fragment<accumulator, M, N, K, float>& f, const float* p, unsigned ldm,
                      layout_t layout) {
  using Frag = fragment<accumulator, M, N, K, float>;
  const detail::MemArgs args{p, ldm, layout == mem_row_major};
  rg_emu::warp_collective("wmma::load_matrix_sync", 0xffffffffu, rg_emu::WarpRecord{&args, &f},
                          &detail::load_complete<Frag, float>, nullptr);
}

template <int M, int N, int K>
void store_matrix_sync(float* p, const fragment<accumulator, M, N, K, float>& f, unsigned ldm,
                       layout_t layout) {
  using Frag = fragment<accumulator, M, N, K, float>;
  const detail::MemArgs args{p, ldm, layout == mem_row_major};
  rg_emu::warp_collective("wmma::store_matrix_sync", 0xffffffffu,
                          rg_emu::WarpRecord{&args, const_cast<Frag*>(&f)},
                          &detail::store_complete<Frag>, nullptr);
}

template <typename Use, int M, int N, int K, typename T, typename Layout, typename V>
void fill_fragment(fragment<Use, M, N, K, T, Layout>& f, const V& v) {
  using S = typename fragment<Use, M, N, K, T, Layout>::storage_element_type;
  for (auto& e : f.x) e = static_cast<S>(v);
}

template <int M, int N, int K, typename T, typename LA, typename LB>
void mma_sync(fragment<accumulator, M, N, K, float>& d,
              const fragment<matrix_a, M, N, K, T, LA>& a,
              const fragment<matrix_b, M, N, K, T, LB>& b,
              const fragment<accumulator, M, N, K, float>& c) {
  using FA = fragment<matrix_a, M, N, K, T, LA>;
  using FB = fragment<matrix_b, M, N, K, T, LB>;
  using FC = fragment<accumulator, M, N, K, float>;
  const detail::MmaArgs args{&a, &b, &c};
  rg_emu::warp_collective("wmma::mma_sync", 0xffffffffu, rg_emu::WarpRecord{&args, &d},
                          &detail::mma_complete<FA, FB, FC, FC>, nullptr);
}

}  // namespace nvcuda::wmma
