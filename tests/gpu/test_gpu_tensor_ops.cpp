// CUDA tensor kernels (kernels/cuda/tensor_ops.h): fills and strided copies compared bit for bit
// with the CPU engine's conversions (engine/dispatch.h from_double(to_double(v)), the rule of
// Tensor::copy_), and the Philox fills compared with CPU tensors filled by rg::uniform_,
// rg::normal_ and rg::bernoulli_ from the same generator state.
// cuda_runtime.h before gpu_test_util.h: DeviceBuffer calls cudaMalloc(T**), the typed overload
// declared there (cuda_runtime_api.h only has the void** one).
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "engine/dispatch.h"
#include "engine/dtype.h"
#include "engine/rng.h"
#include "engine/tensor.h"
#include "kernels/cuda/tensor_ops.h"
#include "tests/gpu/gpu_test_util.h"

namespace {

using namespace rg::gpu_test;
namespace kcuda = rg::kernels::cuda;
using kcuda::ElemType;
using kcuda::StridedLayout;
using bf16 = __nv_bfloat16;

const ElemType kAllTypes[] = {ElemType::F32, ElemType::F64, ElemType::BF16,
                              ElemType::F16, ElemType::I32, ElemType::U8};

rg::DType dtype_of(ElemType e) {
  return static_cast<rg::DType>(static_cast<int>(e));
}
size_t elem_size(ElemType e) {
  return rg::dtype_size(dtype_of(e));
}
std::string name_of(ElemType e) {
  return rg::dtype_name(dtype_of(e));
}

::testing::AssertionResult synced() {
  const cudaError_t err = cudaDeviceSynchronize();
  if (err != cudaSuccess) return ::testing::AssertionFailure() << cudaGetErrorString(err);
  const cudaError_t last = cudaGetLastError();
  if (last != cudaSuccess) return ::testing::AssertionFailure() << cudaGetErrorString(last);
  return ::testing::AssertionSuccess();
}

// First differing element of two byte images of `type` elements, or success.
::testing::AssertionResult same_bytes(const std::vector<uint8_t>& got,
                                      const std::vector<uint8_t>& want, ElemType type,
                                      const std::string& what) {
  if (got.size() != want.size()) {
    return ::testing::AssertionFailure()
           << what << ": sizes " << got.size() << " vs " << want.size();
  }
  const size_t es = elem_size(type);
  size_t bad = 0, first = 0;
  for (size_t i = 0; i < got.size() / es; ++i) {
    if (std::memcmp(got.data() + i * es, want.data() + i * es, es) != 0 && bad++ == 0) first = i;
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  auto show = [&](const std::vector<uint8_t>& bytes) {
    return rg::dispatch_dtype(dtype_of(type), [&](auto tag) {
      using T = decltype(tag);
      T v;
      std::memcpy(&v, bytes.data() + first * es, es);
      return std::to_string(rg::to_double(v));
    });
  };
  return ::testing::AssertionFailure()
         << what << ": " << bad << " of " << got.size() / es << " elements differ; first at "
         << first << ": got " << show(got) << ", want " << show(want);
}

// `count` values of `type`, from doubles in [0, 250) (integers for I32/U8), so that every
// conversion between the six types is in range.
std::vector<uint8_t> sample_values(ElemType type, size_t count, uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> dist(0.0, 250.0);
  std::vector<uint8_t> bytes(count * elem_size(type));
  rg::dispatch_dtype(dtype_of(type), [&](auto tag) {
    using T = decltype(tag);
    for (size_t i = 0; i < count; ++i) {
      double v = dist(gen);
      if constexpr (std::is_integral_v<T>) v = std::floor(v);
      const T t = rg::from_double<T>(v);
      std::memcpy(bytes.data() + i * sizeof(T), &t, sizeof(T));
    }
  });
  return bytes;
}

StridedLayout contiguous_layout(const std::vector<int64_t>& shape) {
  StridedLayout l;
  l.ndim = static_cast<int>(shape.size());
  int64_t s = 1;
  for (int d = l.ndim - 1; d >= 0; --d) {
    l.shape[d] = shape[d];
    l.strides[d] = s;
    s *= shape[d];
  }
  return l;
}

// The CPU rule: same type copies bits, otherwise from_double<D>(to_double(s)).
void host_copy(ElemType dst_type, const StridedLayout& dl, std::vector<uint8_t>& dst,
               int64_t dst_offset, ElemType src_type, const StridedLayout& sl,
               const std::vector<uint8_t>& src, int64_t src_offset) {
  int64_t total = 1;
  for (int d = 0; d < dl.ndim; ++d) total *= dl.shape[d];
  rg::dispatch_dtype(dtype_of(dst_type), [&](auto dtag) {
    using D = decltype(dtag);
    rg::dispatch_dtype(dtype_of(src_type), [&](auto stag) {
      using S = decltype(stag);
      for (int64_t i = 0; i < total; ++i) {
        int64_t rem = i, a = dst_offset, b = src_offset;
        for (int d = dl.ndim - 1; d >= 0; --d) {
          const int64_t coord = rem % dl.shape[d];
          rem /= dl.shape[d];
          a += coord * dl.strides[d];
          b += coord * sl.strides[d];
        }
        S s;
        std::memcpy(&s, src.data() + b * sizeof(S), sizeof(S));
        D out;
        if constexpr (std::is_same_v<D, S>) {
          out = s;
        } else {
          out = rg::from_double<D>(rg::to_double(s));
        }
        std::memcpy(dst.data() + a * sizeof(D), &out, sizeof(D));
      }
    });
  });
}

// Copies src (buffer `src_elems` elements, layout at element offset src_offset) into a dst
// buffer holding `dst_init` with the layout at dst_offset, on the GPU and on the host, and
// compares the whole destination buffers (untouched elements must keep their values).
void check_copy(ElemType dst_type, const StridedLayout& dl, int64_t dst_offset,
                const std::vector<uint8_t>& dst_init, ElemType src_type, const StridedLayout& sl,
                int64_t src_offset, const std::vector<uint8_t>& src, const std::string& what) {
  DeviceBuffer<uint8_t> dsrc(src), ddst(dst_init);
  kcuda::strided_copy(dst_type, dl, ddst.get() + dst_offset * elem_size(dst_type), src_type, sl,
                      dsrc.get() + src_offset * elem_size(src_type), nullptr);
  ASSERT_TRUE(synced()) << what;
  std::vector<uint8_t> want = dst_init;
  host_copy(dst_type, dl, want, dst_offset, src_type, sl, src, src_offset);
  EXPECT_TRUE(same_bytes(ddst.download(), want, dst_type, what));
}

std::string pair_name(ElemType d, ElemType s) {
  return name_of(s) + "->" + name_of(d);
}

// ---------------------------------------------------------------- fill

TEST(GpuTensorOps, FillEveryType) {
  RG_SKIP_WITHOUT_GPU();
  for (ElemType type : kAllTypes) {
    const bool integral = type == ElemType::I32 || type == ElemType::U8;
    const std::vector<double> values =
        integral ? std::vector<double>{0.0, 200.7, 7.0, 1.0}
                 : std::vector<double>{0.0, 1.5, -2.75, 3.14159265358979, 1e-7, -0.0};
    for (double value : values) {
      for (int64_t n : {int64_t{1}, int64_t{7}, int64_t{1000003}}) {
        for (int64_t offset : {int64_t{0}, int64_t{1}}) {
          const std::string what = "fill " + name_of(type) + " value " + std::to_string(value) +
                                   " n=" + std::to_string(n) + " offset " + std::to_string(offset);
          const size_t es = elem_size(type);
          // One spare element after the fill as well: it must stay poisoned.
          DeviceBuffer<uint8_t> dst((static_cast<size_t>(n) + offset + 1) * es);
          kcuda::fill(type, n, value, dst.get() + offset * es, nullptr);
          ASSERT_TRUE(synced()) << what;
          std::vector<uint8_t> want(dst.size(), 0xFF);
          rg::dispatch_dtype(dtype_of(type), [&](auto tag) {
            using T = decltype(tag);
            const T v = rg::from_double<T>(value);
            for (int64_t i = 0; i < n; ++i) std::memcpy(&want[(offset + i) * es], &v, es);
          });
          EXPECT_TRUE(same_bytes(dst.download(), want, type, what));
        }
      }
    }
  }
  // Truncation toward zero of a negative value into i32.
  DeviceBuffer<int32_t> ints(3);
  kcuda::fill(ElemType::I32, 3, -3.7, ints.get(), nullptr);
  ASSERT_TRUE(synced());
  EXPECT_EQ(ints.download(), std::vector<int32_t>(3, -3));
}

// ---------------------------------------------------------------- strided copy

TEST(GpuTensorOps, ContiguousCopyEveryTypePair) {
  RG_SKIP_WITHOUT_GPU();
  for (ElemType d : kAllTypes) {
    for (ElemType s : kAllTypes) {
      for (int64_t n : {int64_t{1}, int64_t{7}, int64_t{100003}}) {
        const StridedLayout layout = contiguous_layout({n});
        const auto src = sample_values(s, n, 3 + static_cast<uint32_t>(n));
        const std::vector<uint8_t> init(n * elem_size(d), 0xAB);
        check_copy(d, layout, 0, init, s, layout, 0, src,
                   "contiguous " + pair_name(d, s) + " n=" + std::to_string(n));
      }
    }
  }
}

TEST(GpuTensorOps, CopyScalarAndEmpty) {
  RG_SKIP_WITHOUT_GPU();
  StridedLayout scalar;  // ndim 0: one element
  const auto src = sample_values(ElemType::F32, 1, 5);
  check_copy(ElemType::BF16, scalar, 0, std::vector<uint8_t>(2, 0xAB), ElemType::F32, scalar, 0,
             src, "scalar f32->bf16");
  check_copy(ElemType::F32, scalar, 0, std::vector<uint8_t>(4, 0xAB), ElemType::F32, scalar, 0, src,
             "scalar f32->f32");
  const StridedLayout empty = contiguous_layout({3, 0, 4});
  check_copy(ElemType::F32, empty, 0, std::vector<uint8_t>(8, 0xAB), ElemType::F32, empty, 0,
             std::vector<uint8_t>(4, 0), "empty");
}

// Conversions of values at the edges of the 16-bit formats: ties, subnormals, overflow,
// infinities, NaN, signed zero; and the double -> float -> bf16 double rounding of the CPU.
TEST(GpuTensorOps, ConversionEdgeValues) {
  RG_SKIP_WITHOUT_GPU();
  auto bits = [](uint32_t u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  };
  const std::vector<float> floats = {0.f,
                                     -0.f,
                                     1.f,
                                     -1.f,
                                     65504.f,
                                     65519.99f,
                                     65520.f,
                                     70000.f,
                                     -70000.f,
                                     std::numeric_limits<float>::infinity(),
                                     -std::numeric_limits<float>::infinity(),
                                     std::numeric_limits<float>::quiet_NaN(),
                                     bits(0x7fa00001u) /* signalling NaN */,
                                     std::numeric_limits<float>::max(),
                                     std::numeric_limits<float>::denorm_min(),
                                     5.9604645e-8f /* 2^-24, the smallest f16 subnormal */,
                                     2.9802322e-8f /* its half: tie */,
                                     4.4703484e-8f /* 1.5 * 2^-24: tie to even */,
                                     6.1035156e-5f /* smallest f16 normal */,
                                     6.0975552e-5f /* largest f16 subnormal */,
                                     bits(0x3f808000u) /* bf16 tie, even below */,
                                     bits(0x3f818000u) /* bf16 tie, odd below */,
                                     bits(0x3f808001u),
                                     bits(0x3f807fffu),
                                     bits(0x7f7f8000u) /* rounds to bf16 inf */,
                                     1.00048828125f /* f16 tie */,
                                     1.00146484375f /* f16 tie, odd */,
                                     -3.7f,
                                     0.33333334f};
  std::vector<uint8_t> src(floats.size() * 4);
  std::memcpy(src.data(), floats.data(), src.size());
  const StridedLayout layout = contiguous_layout({static_cast<int64_t>(floats.size())});
  for (ElemType d : {ElemType::BF16, ElemType::F16, ElemType::F32}) {
    check_copy(d, layout, 0, std::vector<uint8_t>(floats.size() * elem_size(d), 0xAB),
               ElemType::F32, layout, 0, src, "edge values " + pair_name(d, ElemType::F32));
  }
  // Back from every f16 and bf16 bit pattern except NaNs (exact widening; the CPU's trip
  // through double would quiet a signalling NaN that the GPU's bit shift keeps).
  std::vector<uint8_t> halves;
  for (uint32_t h = 0; h < 65536; ++h) {
    if ((h & 0x7c00u) == 0x7c00u && (h & 0x3ffu) != 0) continue;  // f16 NaN
    if ((h & 0x7f80u) == 0x7f80u && (h & 0x7fu) != 0) continue;   // bf16 NaN
    halves.push_back(static_cast<uint8_t>(h));
    halves.push_back(static_cast<uint8_t>(h >> 8));
  }
  const StridedLayout half_layout = contiguous_layout({static_cast<int64_t>(halves.size() / 2)});
  for (ElemType s : {ElemType::F16, ElemType::BF16}) {
    check_copy(ElemType::F32, half_layout, 0, std::vector<uint8_t>(halves.size() * 2, 0xAB), s,
               half_layout, 0, halves, "all patterns " + pair_name(ElemType::F32, s));
  }
  // Doubles: rounded to float first, then to bf16/f16, as the CPU does.
  const std::vector<double> doubles = {1.0 + 1.0 / 256 + std::ldexp(1.0, -30),
                                       1.0 + 1.0 / 1024 + std::ldexp(1.0, -40),
                                       1e-300,
                                       -1e300,
                                       0.1,
                                       123456.789,
                                       -2.5};
  std::vector<uint8_t> dsrc(doubles.size() * 8);
  std::memcpy(dsrc.data(), doubles.data(), dsrc.size());
  const StridedLayout dlayout = contiguous_layout({static_cast<int64_t>(doubles.size())});
  for (ElemType d : {ElemType::BF16, ElemType::F16, ElemType::F32}) {
    check_copy(d, dlayout, 0, std::vector<uint8_t>(doubles.size() * elem_size(d), 0xAB),
               ElemType::F64, dlayout, 0, dsrc, "doubles " + pair_name(d, ElemType::F64));
  }
}

// x is NHWC [n, h, w, c]; copy its NCHW permutation into a contiguous NCHW buffer and back.
void check_nhwc_nchw(ElemType d, ElemType s, int64_t n, int64_t h, int64_t w, int64_t c) {
  const std::string dims = " [" + std::to_string(n) + "," + std::to_string(h) + "," +
                           std::to_string(w) + "," + std::to_string(c) + "]";
  const int64_t total = n * h * w * c;
  const auto src = sample_values(s, total, 17 + static_cast<uint32_t>(total));
  const std::vector<uint8_t> init(total * elem_size(d), 0xAB);
  // NHWC -> NCHW: iterate in NCHW order; the source strides are NHWC's, permuted.
  StridedLayout to_nchw_src;
  to_nchw_src.ndim = 4;
  const int64_t nchw_shape[4] = {n, c, h, w};
  const int64_t nhwc_strides_permuted[4] = {h * w * c, 1, w * c, c};
  for (int i = 0; i < 4; ++i) {
    to_nchw_src.shape[i] = nchw_shape[i];
    to_nchw_src.strides[i] = nhwc_strides_permuted[i];
  }
  check_copy(d, contiguous_layout({n, c, h, w}), 0, init, s, to_nchw_src, 0, src,
             "nhwc->nchw " + pair_name(d, s) + dims);
  // NCHW -> NHWC: the source (same sampled values read as NCHW) iterated in NHWC order.
  StridedLayout to_nhwc_src;
  to_nhwc_src.ndim = 4;
  const int64_t nhwc_shape[4] = {n, h, w, c};
  const int64_t nchw_strides_permuted[4] = {c * h * w, w, 1, h * w};
  for (int i = 0; i < 4; ++i) {
    to_nhwc_src.shape[i] = nhwc_shape[i];
    to_nhwc_src.strides[i] = nchw_strides_permuted[i];
  }
  check_copy(d, contiguous_layout({n, h, w, c}), 0, init, s, to_nhwc_src, 0, src,
             "nchw->nhwc " + pair_name(d, s) + dims);
}

TEST(GpuTensorOps, PermuteNhwcNchw) {
  RG_SKIP_WITHOUT_GPU();
  const std::pair<ElemType, ElemType> pairs[] = {
      {ElemType::F32, ElemType::F32},  {ElemType::BF16, ElemType::F32},
      {ElemType::F32, ElemType::BF16}, {ElemType::BF16, ElemType::BF16},
      {ElemType::F16, ElemType::F64},  {ElemType::F32, ElemType::U8},
      {ElemType::F64, ElemType::I32},  {ElemType::U8, ElemType::U8}};
  for (const auto& [d, s] : pairs) {
    check_nhwc_nchw(d, s, 2, 33, 35, 64);  // tiled transpose, partial tiles
    check_nhwc_nchw(d, s, 1, 16, 16, 16);  // exactly one tile per plane
    check_nhwc_nchw(d, s, 2, 5, 7, 3);     // few channels: the general kernel
    check_nhwc_nchw(d, s, 1, 1, 1, 1);
  }
  // More batch elements than a grid's y dimension covers in one pass is impractical to test;
  // several batch dims are: a 5-D NDHWC -> NCDHW permutation.
  const int64_t n = 2, dd = 3, h = 17, w = 18, c = 20;
  const int64_t total = n * dd * h * w * c;
  const auto src = sample_values(ElemType::F32, total, 23);
  StridedLayout sl;
  sl.ndim = 5;
  const int64_t shape[5] = {n, c, dd, h, w};
  const int64_t strides[5] = {dd * h * w * c, 1, h * w * c, w * c, c};
  for (int i = 0; i < 5; ++i) {
    sl.shape[i] = shape[i];
    sl.strides[i] = strides[i];
  }
  check_copy(ElemType::F32, contiguous_layout({n, c, dd, h, w}), 0,
             std::vector<uint8_t>(total * 4, 0xAB), ElemType::F32, sl, 0, src, "ndhwc->ncdhw f32");
}

TEST(GpuTensorOps, SlicesOnEitherSide) {
  RG_SKIP_WITHOUT_GPU();
  for (const auto& [d, s] :
       {std::pair{ElemType::F32, ElemType::F32}, std::pair{ElemType::BF16, ElemType::F32},
        std::pair{ElemType::I32, ElemType::F16}}) {
    // Source slice x[2:7, 3:11, 1:6] of a contiguous [10, 12, 8] into a contiguous [5, 8, 5].
    const auto src = sample_values(s, 10 * 12 * 8, 31);
    StridedLayout sl;
    sl.ndim = 3;
    sl.shape[0] = 5, sl.shape[1] = 8, sl.shape[2] = 5;
    sl.strides[0] = 96, sl.strides[1] = 8, sl.strides[2] = 1;
    check_copy(d, contiguous_layout({5, 8, 5}), 0, std::vector<uint8_t>(200 * elem_size(d), 0xAB),
               s, sl, 2 * 96 + 3 * 8 + 1, src, "source slice " + pair_name(d, s));
    // Destination slice (concat along channels): y[:, :, 3:7] of a [4, 6, 10] = a [4, 6, 4].
    const auto part = sample_values(s, 4 * 6 * 4, 37);
    StridedLayout dl;
    dl.ndim = 3;
    dl.shape[0] = 4, dl.shape[1] = 6, dl.shape[2] = 4;
    dl.strides[0] = 60, dl.strides[1] = 10, dl.strides[2] = 1;
    check_copy(d, dl, 3, sample_values(d, 240, 41), s, contiguous_layout({4, 6, 4}), 0, part,
               "destination slice " + pair_name(d, s));
    // Step-2 slice on both sides.
    StridedLayout every_other = contiguous_layout({50});
    every_other.strides[0] = 2;
    check_copy(d, every_other, 1, sample_values(d, 101, 43), s, every_other, 0,
               sample_values(s, 100, 47), "step-2 slices " + pair_name(d, s));
  }
  // A 5-D permutation of a source slice into a destination slice, with conversion.
  const int64_t full[5] = {3, 4, 5, 6, 7};
  const auto src = sample_values(ElemType::F64, 3 * 4 * 5 * 6 * 7, 53);
  const int64_t src_strides[5] = {4 * 5 * 6 * 7, 5 * 6 * 7, 6 * 7, 7, 1};
  const int perm[5] = {4, 2, 0, 3, 1};
  StridedLayout sl;
  sl.ndim = 5;
  for (int i = 0; i < 5; ++i) {
    sl.shape[i] = full[perm[i]] - 1;  // x[:-1, :-1, ...] permuted
    sl.strides[i] = src_strides[perm[i]];
  }
  StridedLayout dl =
      contiguous_layout({sl.shape[0], sl.shape[1], sl.shape[2], sl.shape[3], sl.shape[4] + 2});
  dl.shape[4] = sl.shape[4];  // the first shape[4] of each padded innermost row
  int64_t dst_elems = 1;
  for (int i = 0; i < 4; ++i) dst_elems *= dl.shape[i];
  dst_elems *= sl.shape[4] + 2;
  check_copy(ElemType::F32, dl, 0, std::vector<uint8_t>(dst_elems * 4, 0xAB), ElemType::F64, sl, 0,
             src, "5-d permuted slices f64->f32");
}

// ---------------------------------------------------------------- Philox fills

template <typename T>
class GpuRandomFill : public ::testing::Test {};
using FillTypes = ::testing::Types<float, bf16>;
TYPED_TEST_SUITE(GpuRandomFill, FillTypes);

template <typename T>
rg::DType engine_dtype() {
  return std::is_same_v<T, float> ? rg::DType::F32 : rg::DType::BF16;
}

// The CPU tensor's elements as floats.
std::vector<float> cpu_values(const rg::Tensor& t) {
  return t.to_vector<float>();
}

constexpr uint64_t kSeed = 0x123456789abcdef1ull;      // both key words non-zero
constexpr uint64_t kOffset = (uint64_t{1} << 32) + 5;  // both counter words non-zero

template <typename T>
std::vector<float> gpu_values(const DeviceBuffer<T>& buf) {
  return to_floats(buf.download());
}

::testing::AssertionResult bit_equal(const std::vector<float>& got, const std::vector<float>& want,
                                     const std::string& what) {
  if (got.size() != want.size()) return ::testing::AssertionFailure() << what << ": sizes";
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::memcmp(&got[i], &want[i], 4) != 0) {
      return ::testing::AssertionFailure()
             << what << ": element " << i << " got " << got[i] << " want " << want[i];
    }
  }
  return ::testing::AssertionSuccess();
}

TYPED_TEST(GpuRandomFill, UniformMatchesCpuBitForBit) {
  RG_SKIP_WITHOUT_GPU();
  using T = TypeParam;
  const double bound = 1.0 / std::sqrt(27.0);  // a Kaiming-uniform bound: symmetric, not a float
  for (const auto& [low, high] :
       {std::pair{-0.5, 2.0}, std::pair{0.0, 1.0}, std::pair{-bound, bound}}) {
    for (int64_t n : {int64_t{1}, int64_t{7}, int64_t{1000003}}) {
      const std::string what = "uniform(" + std::to_string(low) + ", " + std::to_string(high) +
                               ") n=" + std::to_string(n);
      rg::Generator gen;
      gen.set_state(kSeed, kOffset);
      rg::Tensor cpu = rg::Tensor::empty({n}, engine_dtype<T>());
      rg::uniform_(cpu, low, high, gen);
      DeviceBuffer<T> out(n + 1);
      kcuda::uniform_fill<T>(n, static_cast<float>(low), static_cast<float>(high), kSeed, kOffset,
                             out.get() + 1, nullptr);
      ASSERT_TRUE(synced()) << what;
      std::vector<float> got = gpu_values(out);
      EXPECT_TRUE(std::isnan(got[0])) << what << ": wrote before the start";
      got.erase(got.begin());
      EXPECT_TRUE(bit_equal(got, cpu_values(cpu), what));
    }
  }
}

TYPED_TEST(GpuRandomFill, BernoulliMatchesCpuBitForBit) {
  RG_SKIP_WITHOUT_GPU();
  using T = TypeParam;
  for (double p : {0.3, 0.0, 1.0}) {
    for (int64_t n : {int64_t{1}, int64_t{7}, int64_t{1000003}}) {
      const std::string what = "bernoulli(" + std::to_string(p) + ") n=" + std::to_string(n);
      rg::Generator gen;
      gen.set_state(kSeed, kOffset);
      rg::Tensor cpu = rg::Tensor::empty({n}, engine_dtype<T>());
      rg::bernoulli_(cpu, p, gen);
      DeviceBuffer<T> out(n);
      kcuda::bernoulli_fill<T>(n, static_cast<float>(p), kSeed, kOffset, out.get(), nullptr);
      ASSERT_TRUE(synced()) << what;
      EXPECT_TRUE(bit_equal(gpu_values(out), cpu_values(cpu), what));
    }
  }
}

TYPED_TEST(GpuRandomFill, NormalMatchesCpu) {
  RG_SKIP_WITHOUT_GPU();
  using T = TypeParam;
  // logf/cosf on the GPU and glibc's differ in the last bits (tensor_ops.cu): 1e-6 relative
  // for float; for bf16 such a difference can move a value across a rounding boundary (one
  // bf16 step, 2^-8 relative).
  const double tol = std::is_same_v<T, float> ? 1e-6 : 1.0 / 128;
  for (const auto& [mean, stddev] : {std::pair{0.0, 1.0}, std::pair{0.5, 2.0}}) {
    for (int64_t n : {int64_t{1}, int64_t{7}, int64_t{1000003}}) {
      const std::string what = "normal(" + std::to_string(mean) + ", " + std::to_string(stddev) +
                               ") n=" + std::to_string(n);
      rg::Generator gen;
      gen.set_state(kSeed, kOffset);
      rg::Tensor cpu = rg::Tensor::empty({n}, engine_dtype<T>());
      rg::normal_(cpu, mean, stddev, gen);
      DeviceBuffer<T> out(n);
      kcuda::normal_fill<T>(n, static_cast<float>(mean), static_cast<float>(stddev), kSeed, kOffset,
                            out.get(), nullptr);
      ASSERT_TRUE(synced()) << what;
      const std::vector<float> got = gpu_values(out), want = cpu_values(cpu);
      size_t bad = 0, exact = 0;
      for (size_t i = 0; i < got.size(); ++i) {
        const double err = std::abs(static_cast<double>(got[i]) - want[i]);
        if (!std::isfinite(got[i]) || err > tol * std::max(1.0, std::abs(double{want[i]}))) {
          if (bad++ == 0) {
            ADD_FAILURE() << what << ": element " << i << " got " << got[i] << " want " << want[i];
          }
        }
        exact += got[i] == want[i];
      }
      EXPECT_EQ(bad, 0u) << what;
      // Most values agree exactly (a formula or word-order mistake would match almost none);
      // checked where there are enough values for a fraction to mean something.
      if (n >= 1000) {
        EXPECT_GE(exact * 2, got.size()) << what << ": only " << exact << " exact";
      }
    }
  }
}

}  // namespace
