// CPU convolution kernels (im2col + GEMM) against an obviously-correct direct-loop reference.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "kernels/conv.h"

// Test hooks defined in kernels/cpu/conv.cpp (not in a public header).
namespace rg::kernels::cpu::detail {
// Caps the im2col column buffer so that small problems take the chunked paths (0: default).
std::size_t set_conv_col_budget_bytes(std::size_t bytes);
// OpenMP mode of the im2col/col2im/bias loops: 0 auto, 1 serial, 2 parallel whatever the size.
int set_conv_parallel_mode(int mode);
}

namespace {

using rg::kernels::Conv2dShape;
namespace cpu = rg::kernels::cpu;

Conv2dShape make_shape(int64_t n, int64_t h, int64_t w, int64_t c_in, int64_t c_out, int64_t kh,
                       int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw) {
  Conv2dShape s;
  s.n = n; s.h = h; s.w = w; s.c_in = c_in;
  s.c_out = c_out; s.kh = kh; s.kw = kw;
  s.stride_h = sh; s.stride_w = sw; s.pad_h = ph; s.pad_w = pw;
  return s;
}

std::string describe(const Conv2dShape& s) {
  std::ostringstream os;
  os << "n=" << s.n << " h=" << s.h << " w=" << s.w << " c_in=" << s.c_in << " c_out=" << s.c_out
     << " k=" << s.kh << "x" << s.kw << " stride=" << s.stride_h << "," << s.stride_w
     << " pad=" << s.pad_h << "," << s.pad_w << " -> out " << s.out_h() << "x" << s.out_w();
  return os.str();
}

std::vector<Conv2dShape> test_shapes() {
  return {
      make_shape(2, 8, 8, 3, 5, 4, 4, 2, 2, 1, 1),     // pix2pix down-conv
      make_shape(3, 7, 5, 2, 3, 4, 4, 2, 2, 1, 1),     // odd spatial size, batch 3
      make_shape(1, 6, 6, 4, 6, 3, 3, 1, 1, 1, 1),     // 3x3 same
      make_shape(3, 5, 7, 6, 4, 1, 1, 1, 1, 0, 0),     // 1x1 pointwise (no im2col)
      make_shape(2, 7, 5, 3, 2, 1, 1, 2, 2, 0, 0),     // 1x1 stride 2
      make_shape(1, 4, 4, 2, 3, 1, 1, 1, 1, 1, 1),     // 1x1 with padding
      make_shape(2, 11, 9, 3, 4, 5, 5, 3, 3, 2, 2),    // 5x5 stride 3 pad 2
      make_shape(2, 3, 3, 2, 3, 5, 5, 1, 1, 2, 2),     // kernel larger than input
      make_shape(1, 2, 2, 3, 2, 4, 4, 1, 1, 2, 2),     // kernel larger than input, out 3x3
      make_shape(1, 16, 16, 1, 8, 4, 4, 2, 2, 1, 1),   // c_in = 1 (first layer)
      make_shape(3, 7, 5, 4, 1, 3, 3, 1, 1, 1, 1),     // c_out = 1
      make_shape(3, 2, 2, 8, 6, 4, 4, 2, 2, 1, 1),     // output 1x1 (U-Net bottleneck)
      make_shape(1, 2, 2, 5, 7, 4, 4, 2, 2, 1, 1),     // output 1x1, batch 1
      make_shape(2, 5, 5, 3, 4, 5, 5, 1, 1, 0, 0),     // kernel == image, no padding
      make_shape(2, 9, 6, 3, 4, 3, 2, 2, 1, 1, 0),     // asymmetric kernel/stride/pad
      make_shape(1, 4, 5, 2, 3, 3, 3, 2, 2, 3, 3),     // pad >= kernel: all-padding patches
      make_shape(2, 8, 7, 3, 2, 2, 2, 3, 3, 0, 0),     // stride > kernel: skipped pixels
      make_shape(1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0),     // trivial
      make_shape(1, 32, 32, 16, 32, 4, 4, 2, 2, 1, 1), // larger: GEMM blocking, parallel paths
  };
}

// ---- Direct-loop reference (accumulates in double) -----------------------------------------

template <typename T>
std::vector<double> ref_forward(const Conv2dShape& s, const std::vector<T>& x,
                                const std::vector<T>& w, const T* bias) {
  const int64_t OH = s.out_h(), OW = s.out_w();
  std::vector<double> y(s.n * OH * OW * s.c_out, 0.0);
  for (int64_t n = 0; n < s.n; ++n)
    for (int64_t oh = 0; oh < OH; ++oh)
      for (int64_t ow = 0; ow < OW; ++ow)
        for (int64_t co = 0; co < s.c_out; ++co) {
          double acc = bias ? static_cast<double>(bias[co]) : 0.0;
          for (int64_t i = 0; i < s.kh; ++i)
            for (int64_t j = 0; j < s.kw; ++j)
              for (int64_t ci = 0; ci < s.c_in; ++ci) {
                const int64_t ih = oh * s.stride_h - s.pad_h + i;
                const int64_t iw = ow * s.stride_w - s.pad_w + j;
                if (ih < 0 || ih >= s.h || iw < 0 || iw >= s.w) continue;
                acc += static_cast<double>(x[((n * s.h + ih) * s.w + iw) * s.c_in + ci]) *
                       static_cast<double>(w[((co * s.kh + i) * s.kw + j) * s.c_in + ci]);
              }
          y[((n * OH + oh) * OW + ow) * s.c_out + co] = acc;
        }
  return y;
}

template <typename T>
std::vector<double> ref_backward_data(const Conv2dShape& s, const std::vector<T>& dy,
                                      const std::vector<T>& w) {
  const int64_t OH = s.out_h(), OW = s.out_w();
  std::vector<double> dx(s.n * s.h * s.w * s.c_in, 0.0);
  for (int64_t n = 0; n < s.n; ++n)
    for (int64_t oh = 0; oh < OH; ++oh)
      for (int64_t ow = 0; ow < OW; ++ow)
        for (int64_t co = 0; co < s.c_out; ++co)
          for (int64_t i = 0; i < s.kh; ++i)
            for (int64_t j = 0; j < s.kw; ++j)
              for (int64_t ci = 0; ci < s.c_in; ++ci) {
                const int64_t ih = oh * s.stride_h - s.pad_h + i;
                const int64_t iw = ow * s.stride_w - s.pad_w + j;
                if (ih < 0 || ih >= s.h || iw < 0 || iw >= s.w) continue;
                dx[((n * s.h + ih) * s.w + iw) * s.c_in + ci] +=
                    static_cast<double>(dy[((n * OH + oh) * OW + ow) * s.c_out + co]) *
                    static_cast<double>(w[((co * s.kh + i) * s.kw + j) * s.c_in + ci]);
              }
  return dx;
}

template <typename T>
void ref_backward_weight(const Conv2dShape& s, const std::vector<T>& x, const std::vector<T>& dy,
                         std::vector<double>& dw, std::vector<double>& db) {
  const int64_t OH = s.out_h(), OW = s.out_w();
  dw.assign(s.c_out * s.kh * s.kw * s.c_in, 0.0);
  db.assign(s.c_out, 0.0);
  for (int64_t n = 0; n < s.n; ++n)
    for (int64_t oh = 0; oh < OH; ++oh)
      for (int64_t ow = 0; ow < OW; ++ow)
        for (int64_t co = 0; co < s.c_out; ++co) {
          const double g = static_cast<double>(dy[((n * OH + oh) * OW + ow) * s.c_out + co]);
          db[co] += g;
          for (int64_t i = 0; i < s.kh; ++i)
            for (int64_t j = 0; j < s.kw; ++j)
              for (int64_t ci = 0; ci < s.c_in; ++ci) {
                const int64_t ih = oh * s.stride_h - s.pad_h + i;
                const int64_t iw = ow * s.stride_w - s.pad_w + j;
                if (ih < 0 || ih >= s.h || iw < 0 || iw >= s.w) continue;
                dw[((co * s.kh + i) * s.kw + j) * s.c_in + ci] +=
                    g * static_cast<double>(x[((n * s.h + ih) * s.w + iw) * s.c_in + ci]);
              }
        }
}

// ---- Helpers -------------------------------------------------------------------------------

template <typename T>
std::vector<T> random_vec(std::mt19937& rng, int64_t count) {
  std::uniform_real_distribution<double> dist(-1.0, 1.0);
  std::vector<T> v(static_cast<std::size_t>(count));
  for (auto& e : v) e = static_cast<T>(dist(rng));
  return v;
}

template <typename T>
std::vector<T> poisoned(int64_t count) {
  return std::vector<T>(static_cast<std::size_t>(count), std::numeric_limits<T>::quiet_NaN());
}

template <typename T>
double tolerance();
template <>
double tolerance<float>() { return 1e-5; }
template <>
double tolerance<double>() { return 1e-12; }

// Every element finite, and max |got - ref| <= tol * max(1e-30, max |ref|).
template <typename T>
void expect_close(const std::vector<T>& got, const std::vector<double>& ref, const char* what) {
  ASSERT_EQ(got.size(), ref.size()) << what;
  double max_ref = 0.0, max_err = 0.0;
  std::size_t nan_count = 0, worst = 0;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    if (!std::isfinite(static_cast<double>(got[i]))) {
      ++nan_count;
      continue;
    }
    max_ref = std::max(max_ref, std::abs(ref[i]));
    const double err = std::abs(static_cast<double>(got[i]) - ref[i]);
    if (err > max_err) {
      max_err = err;
      worst = i;
    }
  }
  EXPECT_EQ(nan_count, 0u) << what << ": output not fully overwritten (NaN poison left)";
  const double scale = std::max(max_ref, 1e-30);
  EXPECT_LE(max_err / scale, tolerance<T>())
      << what << ": max abs err " << max_err << " at " << worst << " (got "
      << static_cast<double>(got[worst]) << ", ref " << ref[worst] << "), max |ref| " << max_ref;
}

template <typename T>
void check_shape(const Conv2dShape& s, bool with_bias, std::mt19937& rng) {
  SCOPED_TRACE(describe(s) + (with_bias ? " bias" : " no-bias"));
  const int64_t x_count = s.n * s.h * s.w * s.c_in;
  const int64_t w_count = s.c_out * s.kh * s.kw * s.c_in;
  const int64_t y_count = s.n * s.out_h() * s.out_w() * s.c_out;
  const auto x = random_vec<T>(rng, x_count);
  const auto w = random_vec<T>(rng, w_count);
  const auto b = random_vec<T>(rng, s.c_out);
  const auto dy = random_vec<T>(rng, y_count);
  const T* bias = with_bias ? b.data() : nullptr;

  auto y = poisoned<T>(y_count);
  cpu::conv2d_forward<T>(s, x.data(), w.data(), bias, y.data());
  expect_close(y, ref_forward(s, x, w, bias), "forward");

  auto dx = poisoned<T>(x_count);
  cpu::conv2d_backward_data<T>(s, dy.data(), w.data(), dx.data());
  expect_close(dx, ref_backward_data(s, dy, w), "backward_data");

  std::vector<double> dw_ref, db_ref;
  ref_backward_weight(s, x, dy, dw_ref, db_ref);
  auto dw = poisoned<T>(w_count);
  auto db = poisoned<T>(s.c_out);
  cpu::conv2d_backward_weight<T>(s, x.data(), dy.data(), dw.data(), with_bias ? db.data() : nullptr);
  expect_close(dw, dw_ref, "backward_weight");
  if (with_bias) expect_close(db, db_ref, "bias_grad");
}

// Lowers the column-buffer budget for the lifetime of the object.
class ColBudget {
 public:
  explicit ColBudget(std::size_t bytes) { old_ = cpu::detail::set_conv_col_budget_bytes(bytes); }
  ~ColBudget() { cpu::detail::set_conv_col_budget_bytes(old_); }
  ColBudget(const ColBudget&) = delete;
  ColBudget& operator=(const ColBudget&) = delete;

 private:
  std::size_t old_;
};

// Forces the OpenMP loops serial (1) or parallel (2) for the lifetime of the object.
class ParallelMode {
 public:
  explicit ParallelMode(int mode) { old_ = cpu::detail::set_conv_parallel_mode(mode); }
  ~ParallelMode() { cpu::detail::set_conv_parallel_mode(old_); }
  ParallelMode(const ParallelMode&) = delete;
  ParallelMode& operator=(const ParallelMode&) = delete;

 private:
  int old_;
};

constexpr int kSerial = 1, kParallel = 2;

template <typename T>
class CpuConvTest : public ::testing::Test {};
using ConvTypes = ::testing::Types<float, double>;
TYPED_TEST_SUITE(CpuConvTest, ConvTypes);

TYPED_TEST(CpuConvTest, MatchesDirectReference) {
  std::mt19937 rng(20240601);
  for (int mode : {kSerial, kParallel}) {
    ParallelMode pm(mode);
    SCOPED_TRACE(mode == kSerial ? "serial loops" : "parallel loops");
    for (const auto& s : test_shapes()) {
      check_shape<TypeParam>(s, /*with_bias=*/true, rng);
      check_shape<TypeParam>(s, /*with_bias=*/false, rng);
    }
  }
}

TYPED_TEST(CpuConvTest, ChunkedColumnBufferMatchesReference) {
  std::mt19937 rng(777);
  // 1 byte: one output row per chunk. 3000 bytes: a few rows, chunks straddle image borders.
  for (int mode : {kSerial, kParallel}) {
    ParallelMode pm(mode);
    for (std::size_t budget : {std::size_t{1}, std::size_t{3000}}) {
      ColBudget guard(budget);
      SCOPED_TRACE(std::string(mode == kSerial ? "serial" : "parallel") + " loops, col budget " +
                   std::to_string(budget));
      for (const auto& s : test_shapes()) check_shape<TypeParam>(s, /*with_bias=*/true, rng);
    }
  }
}

// Serial and parallel loops (and repeated calls) give bitwise identical results: every
// reduction outside the GEMM has a fixed order.
TYPED_TEST(CpuConvTest, SerialAndParallelAreBitwiseIdentical) {
  using T = TypeParam;
  std::mt19937 rng(99);
  const Conv2dShape s = make_shape(2, 24, 20, 8, 16, 4, 4, 2, 2, 1, 1);
  const auto x = random_vec<T>(rng, s.n * s.h * s.w * s.c_in);
  const auto w = random_vec<T>(rng, s.c_out * s.kh * s.kw * s.c_in);
  const auto b = random_vec<T>(rng, s.c_out);
  const auto dy = random_vec<T>(rng, s.n * s.out_h() * s.out_w() * s.c_out);
  struct Out {
    std::vector<T> y, dx, dw, db;
  };
  auto run = [&](int mode) {
    ParallelMode pm(mode);
    Out o{std::vector<T>(dy.size()), std::vector<T>(x.size()), std::vector<T>(w.size()),
          std::vector<T>(b.size())};
    cpu::conv2d_forward<T>(s, x.data(), w.data(), b.data(), o.y.data());
    cpu::conv2d_backward_data<T>(s, dy.data(), w.data(), o.dx.data());
    cpu::conv2d_backward_weight<T>(s, x.data(), dy.data(), o.dw.data(), o.db.data());
    return o;
  };
  const Out a = run(kSerial), c = run(kParallel), d = run(kParallel);
  for (const Out* o : {&c, &d}) {
    EXPECT_EQ(a.y, o->y);
    EXPECT_EQ(a.dx, o->dx);
    EXPECT_EQ(a.dw, o->dw);
    EXPECT_EQ(a.db, o->db);
  }
}

// <conv(x), dy> == <x, backward_data(dy)> == <w, backward_weight(x, dy)> in double.
TEST(CpuConvAdjoint, InnerProductIdentities) {
  std::mt19937 rng(4242);
  for (const auto& s : test_shapes()) {
    SCOPED_TRACE(describe(s));
    const auto x = random_vec<double>(rng, s.n * s.h * s.w * s.c_in);
    const auto w = random_vec<double>(rng, s.c_out * s.kh * s.kw * s.c_in);
    const auto dy = random_vec<double>(rng, s.n * s.out_h() * s.out_w() * s.c_out);
    std::vector<double> y(dy.size()), dx(x.size()), dw(w.size());
    cpu::conv2d_forward<double>(s, x.data(), w.data(), nullptr, y.data());
    cpu::conv2d_backward_data<double>(s, dy.data(), w.data(), dx.data());
    cpu::conv2d_backward_weight<double>(s, x.data(), dy.data(), dw.data(), nullptr);
    double lhs = 0.0, via_x = 0.0, via_w = 0.0, mag = 0.0;
    for (std::size_t i = 0; i < y.size(); ++i) {
      lhs += y[i] * dy[i];
      mag += std::abs(y[i] * dy[i]);
    }
    for (std::size_t i = 0; i < x.size(); ++i) via_x += x[i] * dx[i];
    for (std::size_t i = 0; i < w.size(); ++i) via_w += w[i] * dw[i];
    const double tol = 1e-12 * std::max(1.0, mag);
    EXPECT_NEAR(lhs, via_x, tol);
    EXPECT_NEAR(lhs, via_w, tol);
  }
}

// A kernel larger than the padded input has no output: forward writes nothing, the gradients
// are zero (and still overwrite their outputs).
TEST(CpuConvEdge, EmptyOutputGivesZeroGradients) {
  const Conv2dShape s = make_shape(1, 2, 2, 3, 4, 5, 5, 1, 1, 1, 1);  // 2 + 2 < 5
  std::vector<double> x(12, 1.0), w(4 * 25 * 3, 1.0), dy(1, 1.0);
  auto dx = poisoned<double>(12);
  auto dw = poisoned<double>(4 * 25 * 3);
  auto db = poisoned<double>(4);
  cpu::conv2d_backward_data<double>(s, dy.data(), w.data(), dx.data());
  cpu::conv2d_backward_weight<double>(s, x.data(), dy.data(), dw.data(), db.data());
  for (double v : dx) EXPECT_EQ(v, 0.0);
  for (double v : dw) EXPECT_EQ(v, 0.0);
  for (double v : db) EXPECT_EQ(v, 0.0);
}

}  // namespace

// The GEMMs are cut into blocks by shape alone and OpenBLAS runs single-threaded in each, so the
// thread count changes nothing: 1, 2 and 3 threads give bitwise identical outputs on shapes
// large enough for several blocks in every direction (kGemmBlockMinMacs, kGemmBlockMinWidth in
// kernels/cpu/conv.cpp), and they still match the reference.
TEST(CpuConvThreads, ResultsDoNotDependOnTheThreadCount) {
  std::mt19937 rng(31337);
  const int saved = omp_get_max_threads();
  for (const Conv2dShape& s : {make_shape(2, 32, 32, 32, 64, 4, 4, 2, 2, 1, 1),    // down-conv
                               make_shape(1, 16, 16, 64, 128, 3, 3, 1, 1, 1, 1),   // 3x3 same
                               make_shape(2, 64, 64, 64, 64, 1, 1, 1, 1, 0, 0)}) {  // pointwise
    SCOPED_TRACE(describe(s));
    const auto x = random_vec<float>(rng, s.n * s.h * s.w * s.c_in);
    const auto w = random_vec<float>(rng, s.c_out * s.kh * s.kw * s.c_in);
    const auto b = random_vec<float>(rng, s.c_out);
    const auto dy = random_vec<float>(rng, s.n * s.out_h() * s.out_w() * s.c_out);
    struct Out {
      std::vector<float> y, dx, dw, db;
    };
    auto run = [&](int threads) {
      omp_set_num_threads(threads);
      Out o{std::vector<float>(dy.size()), std::vector<float>(x.size()), std::vector<float>(w.size()),
            std::vector<float>(b.size())};
      cpu::conv2d_forward<float>(s, x.data(), w.data(), b.data(), o.y.data());
      cpu::conv2d_backward_data<float>(s, dy.data(), w.data(), o.dx.data());
      cpu::conv2d_backward_weight<float>(s, x.data(), dy.data(), o.dw.data(), o.db.data());
      // The blocks' single-threaded BLAS calls must not leave the caller's setting changed.
      EXPECT_EQ(omp_get_max_threads(), threads);
      return o;
    };
    const Out one = run(1), two = run(2), three = run(3);
    omp_set_num_threads(saved);
    for (const Out* o : {&two, &three}) {
      EXPECT_EQ(one.y, o->y);
      EXPECT_EQ(one.dx, o->dx);
      EXPECT_EQ(one.dw, o->dw);
      EXPECT_EQ(one.db, o->db);
    }
    expect_close(one.y, ref_forward(s, x, w, b.data()), "forward");
    expect_close(one.dx, ref_backward_data(s, dy, w), "backward_data");
    std::vector<double> dw_ref, db_ref;
    ref_backward_weight(s, x, dy, dw_ref, db_ref);
    expect_close(one.dw, dw_ref, "backward_weight");
  }
}
