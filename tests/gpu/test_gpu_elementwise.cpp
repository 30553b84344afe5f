// CUDA elementwise kernels (kernels/cuda/elementwise.h) against the CPU reference instantiated
// for double, on the inputs the GPU sees (rounded to T). Float and bf16; sizes that are not a
// multiple of the vector width; pointers one element past 16-byte alignment for the vector
// paths; broadcasts along every dimension and the NHWC x [C] pattern.
// cuda_runtime.h before gpu_test_util.h: DeviceBuffer calls cudaMalloc(T**), the typed overload
// declared there (cuda_runtime_api.h only has the void** one).
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "kernels/cuda/elementwise.h"
#include "kernels/elementwise.h"
#include "tests/gpu/gpu_test_util.h"

namespace {

using namespace rg::gpu_test;
namespace k = rg::kernels;
namespace kcuda = rg::kernels::cuda;
using bf16 = __nv_bfloat16;

template <typename T>
double tolerance() {
  return std::is_same_v<T, float> ? kTolFp32 : kTolBf16;
}

template <typename T>
std::string type_name() {
  return std::is_same_v<T, float> ? "f32" : "bf16";
}

// The values as the GPU sees them (rounded to T), widened to double for the CPU reference.
template <typename T>
std::vector<double> seen_as(const std::vector<float>& v) {
  std::vector<double> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = to_float(from_float<T>(v[i]));
  return out;
}

// Host values placed `offset` elements into the device buffer (the padding is zero).
template <typename T>
std::vector<T> padded(const std::vector<float>& v, int offset) {
  std::vector<T> host(v.size() + offset, from_float<T>(0.f));
  for (size_t i = 0; i < v.size(); ++i) host[i + offset] = from_float<T>(v[i]);
  return host;
}

template <typename T>
std::vector<float> download_from(const DeviceBuffer<T>& buf, int offset) {
  const std::vector<T> host = buf.download();
  return to_floats(std::vector<T>(host.begin() + offset, host.end()));
}

::testing::AssertionResult synced() {
  const cudaError_t err = cudaDeviceSynchronize();
  if (err != cudaSuccess) return ::testing::AssertionFailure() << cudaGetErrorString(err);
  const cudaError_t last = cudaGetLastError();
  if (last != cudaSuccess) return ::testing::AssertionFailure() << cudaGetErrorString(last);
  return ::testing::AssertionSuccess();
}

// ---------------------------------------------------------------- binary ops

// Contiguous strides of an operand whose shape is `full` with the dimensions in `broadcast`
// set to 1; those dimensions get stride 0.
void operand_strides(const int64_t full[5], const bool broadcast[5], int64_t strides[5]) {
  int64_t s = 1;
  for (int d = 4; d >= 0; --d) {
    if (broadcast[d] || full[d] == 1) {
      strides[d] = 0;
    } else {
      strides[d] = s;
      s *= full[d];
    }
  }
}

// Elements an operand read through `strides` spans.
int64_t extent(const int64_t shape[5], const int64_t strides[5]) {
  int64_t last = 0;
  for (int d = 0; d < 5; ++d) last += (shape[d] - 1) * strides[d];
  return last + 1;
}

k::BroadcastShape make_broadcast(std::vector<int64_t> shape, std::vector<bool> a_broadcast,
                                 std::vector<bool> b_broadcast) {
  k::BroadcastShape s;
  bool ab[5], bb[5];
  for (int d = 0; d < 5; ++d) {
    s.shape[d] = shape[d];
    ab[d] = a_broadcast[d];
    bb[d] = b_broadcast[d];
  }
  operand_strides(s.shape, ab, s.a_strides);
  operand_strides(s.shape, bb, s.b_strides);
  return s;
}

// Runs every BinaryOp on shape `s` with operand/output pointers offset by the given number of
// elements, against cpu::binary_forward<double>. `alias_a` writes the output over a.
template <typename T>
void check_binary(const k::BroadcastShape& s, int a_off, int b_off, int out_off,
                  const std::string& what, bool alias_a = false) {
  const int64_t total = s.numel();
  const int64_t a_n = extent(s.shape, s.a_strides), b_n = extent(s.shape, s.b_strides);
  const std::vector<float> a = random_floats(a_n, 11 + static_cast<uint32_t>(total), -1.f, 1.f);
  // b away from 0 so Div stays well conditioned.
  const std::vector<float> b = random_floats(b_n, 29 + static_cast<uint32_t>(total), 0.5f, 2.f);
  const std::vector<double> a_ref = seen_as<T>(a), b_ref = seen_as<T>(b);
  for (k::BinaryOp op : {k::BinaryOp::Add, k::BinaryOp::Sub, k::BinaryOp::Mul, k::BinaryOp::Div}) {
    const std::string label =
        what + " " + type_name<T>() + " op " + std::to_string(static_cast<int>(op));
    std::vector<double> want(total);
    k::cpu::binary_forward<double>(op, s, a_ref.data(), b_ref.data(), want.data());
    DeviceBuffer<T> da(padded<T>(a, a_off)), db(padded<T>(b, b_off));
    DeviceBuffer<T> dout(static_cast<size_t>(total) + out_off);
    T* out = alias_a ? da.get() + a_off : dout.get() + out_off;
    kcuda::binary_forward<T>(op, s, da.get() + a_off, db.get() + b_off, out, nullptr);
    ASSERT_TRUE(synced()) << label;
    const std::vector<float> got =
        alias_a ? download_from(da, a_off) : download_from(dout, out_off);
    EXPECT_TRUE(all_close(got, want, tolerance<T>(), label));
  }
}

template <typename T>
class GpuElementwise : public ::testing::Test {};
using ElementTypes = ::testing::Types<float, bf16>;
TYPED_TEST_SUITE(GpuElementwise, ElementTypes);

TYPED_TEST(GpuElementwise, BinarySameShapeContiguous) {
  RG_SKIP_WITHOUT_GPU();
  using T = TypeParam;
  for (int64_t n : {int64_t{1}, int64_t{7}, int64_t{1000003}}) {
    const auto s = make_broadcast({1, 1, 1, 1, n}, {0, 0, 0, 0, 0}, {0, 0, 0, 0, 0});
    check_binary<T>(s, 0, 0, 0, "flat n=" + std::to_string(n));
    check_binary<T>(s, 1, 1, 1, "flat misaligned n=" + std::to_string(n));
    check_binary<T>(s, 0, 1, 0, "flat b misaligned n=" + std::to_string(n));
  }
  // A 4-D contiguous shape merges into the flat path too.
  check_binary<T>(make_broadcast({1, 3, 17, 19, 40}, {0, 0, 0, 0, 0}, {0, 0, 0, 0, 0}), 0, 0, 0,
                  "4-d contiguous");
  // In place: out == a.
  check_binary<T>(make_broadcast({1, 1, 1, 1, 100003}, {0, 0, 0, 0, 0}, {0, 0, 0, 0, 0}), 0, 0, 0,
                  "in place", /*alias_a=*/true);
}

TYPED_TEST(GpuElementwise, BinaryChannelVector) {
  RG_SKIP_WITHOUT_GPU();
  using T = TypeParam;
  for (int64_t c : {int64_t{1}, int64_t{3}, int64_t{8}, int64_t{64}, int64_t{67}}) {
    const std::string cs = " C=" + std::to_string(c);
    // NHWC activation with a [C] vector on either side.
    const auto b_vec = make_broadcast({1, 2, 9, 11, c}, {0, 0, 0, 0, 0}, {1, 1, 1, 1, 0});
    check_binary<T>(b_vec, 0, 0, 0, "nhwc x [C]" + cs);
    check_binary<T>(b_vec, 1, 0, 1, "nhwc x [C] misaligned" + cs);
    check_binary<T>(b_vec, 0, 1, 0, "nhwc x [C] vector misaligned" + cs);
    const auto a_vec = make_broadcast({1, 2, 9, 11, c}, {1, 1, 1, 1, 0}, {0, 0, 0, 0, 0});
    check_binary<T>(a_vec, 0, 0, 0, "[C] x nhwc" + cs);
    check_binary<T>(a_vec, 0, 1, 1, "[C] x nhwc misaligned" + cs);
  }
  // Large enough that the grid-stride loops run more than once per thread.
  const auto big = make_broadcast({1, 8, 128, 128, 64}, {0, 0, 0, 0, 0}, {1, 1, 1, 1, 0});
  check_binary<T>(big, 0, 0, 0, "large nhwc x [C]");
}

TYPED_TEST(GpuElementwise, BinaryBroadcastEachDimension) {
  RG_SKIP_WITHOUT_GPU();
  using T = TypeParam;
  const std::vector<int64_t> shape = {3, 4, 5, 6, 8};
  for (int d = 0; d < 5; ++d) {
    std::vector<bool> one(5, false);
    one[d] = true;
    const std::string ds = " dim " + std::to_string(d);
    check_binary<T>(make_broadcast(shape, {0, 0, 0, 0, 0}, one), 0, 0, 0, "b broadcast" + ds);
    check_binary<T>(make_broadcast(shape, one, {0, 0, 0, 0, 0}), 0, 0, 0, "a broadcast" + ds);
    check_binary<T>(make_broadcast(shape, {0, 0, 0, 0, 0}, one), 1, 1, 1,
                    "b broadcast misaligned" + ds);
    // b broadcast everywhere except d.
    std::vector<bool> all_but(5, true);
    all_but[d] = false;
    check_binary<T>(make_broadcast(shape, {0, 0, 0, 0, 0}, all_but), 0, 0, 0, "b only along" + ds);
  }
  // Scalar, per-sample factor, and an outer-product-like pattern (both operands broadcast).
  check_binary<T>(make_broadcast(shape, {0, 0, 0, 0, 0}, {1, 1, 1, 1, 1}), 0, 0, 0, "scalar b");
  check_binary<T>(make_broadcast(shape, {1, 1, 1, 1, 1}, {0, 0, 0, 0, 0}), 0, 1, 1, "scalar a");
  check_binary<T>(make_broadcast({1, 4, 16, 16, 8}, {0, 0, 0, 0, 0}, {0, 0, 1, 1, 1}), 0, 0, 0,
                  "per-sample b");
  check_binary<T>(make_broadcast({1, 4, 16, 16, 8}, {0, 0, 1, 1, 0}, {0, 1, 0, 0, 1}), 0, 0, 0,
                  "[N,1,1,C] x [1,H,W,1]");
  check_binary<T>(make_broadcast({1, 1, 1, 1, 1}, {0, 0, 0, 0, 0}, {0, 0, 0, 0, 0}), 0, 0, 0,
                  "one element");
}

TYPED_TEST(GpuElementwise, BinaryStridedOperand) {
  RG_SKIP_WITHOUT_GPU();
  using T = TypeParam;
  // a is a transposed view: stored [W][H], read as [H][W].
  k::BroadcastShape s = make_broadcast({1, 2, 1, 37, 45}, {0, 0, 0, 0, 0}, {0, 0, 0, 0, 0});
  s.a_strides[1] = 37 * 45;
  s.a_strides[3] = 1;
  s.a_strides[4] = 37;
  check_binary<T>(s, 0, 0, 0, "transposed a");
  // Every other element of a (a step-2 slice), with b a [C] vector.
  k::BroadcastShape t = make_broadcast({1, 1, 1, 300, 16}, {0, 0, 0, 0, 0}, {1, 1, 1, 1, 0});
  t.a_strides[3] = 32;
  t.a_strides[4] = 2;
  check_binary<T>(t, 1, 0, 0, "step-2 a");
}

// ---------------------------------------------------------------- unary ops and activations

TYPED_TEST(GpuElementwise, Unary) {
  RG_SKIP_WITHOUT_GPU();
  using T = TypeParam;
  const double scalar = 0.75;
  for (int64_t n : {int64_t{1}, int64_t{7}, int64_t{1000003}}) {
    // Positive inputs keep Log and Sqrt finite.
    const std::vector<float> x = random_floats(n, 5 + static_cast<uint32_t>(n), 0.1f, 2.f);
    const std::vector<double> x_ref = seen_as<T>(x);
    for (k::UnaryOp op : {k::UnaryOp::Neg, k::UnaryOp::Exp, k::UnaryOp::Log, k::UnaryOp::Sqrt,
                          k::UnaryOp::Square, k::UnaryOp::AddScalar, k::UnaryOp::MulScalar}) {
      std::vector<double> want(n);
      k::cpu::unary_forward<double>(op, scalar, n, x_ref.data(), want.data());
      for (int off : {0, 1}) {
        const std::string label = type_name<T>() + " unary op " +
                                  std::to_string(static_cast<int>(op)) + " n=" + std::to_string(n) +
                                  " offset " + std::to_string(off);
        DeviceBuffer<T> dx(padded<T>(x, off));
        DeviceBuffer<T> dy(static_cast<size_t>(n) + off);
        kcuda::unary_forward<T>(op, static_cast<float>(scalar), n, dx.get() + off, dy.get() + off,
                                nullptr);
        ASSERT_TRUE(synced()) << label;
        EXPECT_TRUE(all_close(download_from(dy, off), want, tolerance<T>(), label));
      }
    }
  }
}

TYPED_TEST(GpuElementwise, ActivationForwardBackward) {
  RG_SKIP_WITHOUT_GPU();
  using T = TypeParam;
  const double slope = 0.2;
  for (int64_t n : {int64_t{1}, int64_t{7}, int64_t{1000003}}) {
    const std::vector<float> x = random_floats(n, 41 + static_cast<uint32_t>(n), -6.f, 6.f);
    const std::vector<float> y = random_floats(n, 43 + static_cast<uint32_t>(n), -1.f, 1.f);
    const std::vector<float> dy = random_floats(n, 47 + static_cast<uint32_t>(n), -2.f, 2.f);
    const std::vector<double> x_ref = seen_as<T>(x), y_ref = seen_as<T>(y), dy_ref = seen_as<T>(dy);
    for (k::Activation act : {k::Activation::ReLU, k::Activation::LeakyReLU, k::Activation::Sigmoid,
                              k::Activation::Tanh}) {
      std::vector<double> want_y(n), want_dx(n);
      k::cpu::activation_forward<double>(act, slope, n, x_ref.data(), want_y.data());
      k::cpu::activation_backward<double>(act, slope, n, y_ref.data(), dy_ref.data(),
                                          want_dx.data());
      for (int off : {0, 1}) {
        const std::string label = type_name<T>() + " activation " +
                                  std::to_string(static_cast<int>(act)) +
                                  " n=" + std::to_string(n) + " offset " + std::to_string(off);
        DeviceBuffer<T> dx_in(padded<T>(x, off)), dy_in(padded<T>(y, off)), ddy(padded<T>(dy, off));
        DeviceBuffer<T> dout(static_cast<size_t>(n) + off), dgrad(static_cast<size_t>(n) + off);
        kcuda::activation_forward<T>(act, static_cast<float>(slope), n, dx_in.get() + off,
                                     dout.get() + off, nullptr);
        kcuda::activation_backward<T>(act, static_cast<float>(slope), n, dy_in.get() + off,
                                      ddy.get() + off, dgrad.get() + off, nullptr);
        ASSERT_TRUE(synced()) << label;
        EXPECT_TRUE(all_close(download_from(dout, off), want_y, tolerance<T>(), label + " fwd"));
        EXPECT_TRUE(all_close(download_from(dgrad, off), want_dx, tolerance<T>(), label + " bwd"));
      }
    }
  }
}

// ---------------------------------------------------------------- reductions

// fp32 accumulation against the double reference: relative to the magnitude of the sums.
TYPED_TEST(GpuElementwise, SumRows) {
  RG_SKIP_WITHOUT_GPU();
  using T = TypeParam;
  // Group sizes 1..16, a warp per row (17..256 columns, or longer with many rows), and a block
  // per row (long rows, or few rows of a few hundred).
  const std::vector<std::pair<int64_t, int64_t>> shapes = {
      {1, 1},    {7, 1},      {1, 7},       {5, 2},      {33, 3},    {100, 5},
      {9, 16},   {1000, 17},  {50, 100},    {2000, 300}, {13, 1000}, {7, 4096},
      {3, 4097}, {5, 200003}, {1000003, 3}, {2, 1000003}};
  for (const auto& [rows, cols] : shapes) {
    const std::string label =
        type_name<T>() + " sum_rows " + std::to_string(rows) + "x" + std::to_string(cols);
    const std::vector<float> x =
        random_floats(rows * cols, 61 + static_cast<uint32_t>(rows * 7 + cols), -1.f, 1.f);
    const std::vector<double> x_ref = seen_as<T>(x);
    std::vector<double> want(rows);
    k::cpu::sum_rows<double>(rows, cols, x_ref.data(), want.data());
    DeviceBuffer<T> dx(padded<T>(x, 1));
    DeviceBuffer<float> dout(rows);
    kcuda::sum_rows<T>(rows, cols, dx.get() + 1, dout.get(), nullptr);
    ASSERT_TRUE(synced()) << label;
    EXPECT_TRUE(all_close(dout.download(), want, kTolFp32, label));
  }
}

TYPED_TEST(GpuElementwise, SumColumns) {
  RG_SKIP_WITHOUT_GPU();
  using T = TypeParam;
  const std::vector<std::pair<int64_t, int64_t>> shapes = {
      {1, 1},       {7, 1},     {1, 7},       {7, 7},      {1000003, 1},
      {1000003, 3}, {4096, 64}, {65536, 64},  {300, 255},  {300, 256},
      {513, 257},   {513, 300}, {20000, 520}, {3, 100003}, {100, 7}};
  for (const auto& [rows, cols] : shapes) {
    const std::string label =
        type_name<T>() + " sum_columns " + std::to_string(rows) + "x" + std::to_string(cols);
    // Positive values: the sums grow with the row count, the hard case for fp32 accumulation.
    const std::vector<float> x =
        random_floats(rows * cols, 71 + static_cast<uint32_t>(rows * 3 + cols), 0.f, 1.f);
    const std::vector<double> x_ref = seen_as<T>(x);
    std::vector<double> want(cols);
    k::cpu::sum_columns<double>(rows, cols, x_ref.data(), want.data());
    DeviceBuffer<T> dx(padded<T>(x, 0));
    DeviceBuffer<float> dout(cols);
    kcuda::sum_columns<T>(rows, cols, dx.get(), dout.get(), nullptr);
    ASSERT_TRUE(synced()) << label;
    EXPECT_TRUE(all_close(dout.download(), want, kTolFp32, label));
  }
}

TYPED_TEST(GpuElementwise, SumColumnsOnAStream) {
  RG_SKIP_WITHOUT_GPU();
  using T = TypeParam;
  // The multi-pass path with its stream-ordered scratch, on a non-default stream, twice in a
  // row: same bits both times (deterministic).
  const int64_t rows = 200000, cols = 48;
  const std::vector<float> x = random_floats(rows * cols, 83, -1.f, 1.f);
  const std::vector<double> x_ref = seen_as<T>(x);
  std::vector<double> want(cols);
  k::cpu::sum_columns<double>(rows, cols, x_ref.data(), want.data());
  cudaStream_t stream = nullptr;
  RG_TEST_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  DeviceBuffer<T> dx(padded<T>(x, 0));
  DeviceBuffer<float> first(cols), second(cols);
  kcuda::sum_columns<T>(rows, cols, dx.get(), first.get(), stream);
  kcuda::sum_columns<T>(rows, cols, dx.get(), second.get(), stream);
  RG_TEST_CUDA(cudaStreamSynchronize(stream));
  RG_TEST_CUDA(cudaStreamDestroy(stream));
  ASSERT_TRUE(synced());
  const std::vector<float> a = first.download(), b = second.download();
  EXPECT_TRUE(all_close(a, want, kTolFp32, "sum_columns on a stream"));
  EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float)));
}

TYPED_TEST(GpuElementwise, SumEmpty) {
  RG_SKIP_WITHOUT_GPU();
  using T = TypeParam;
  DeviceBuffer<T> dx(1);
  DeviceBuffer<float> rows_out(5), cols_out(6);
  kcuda::sum_rows<T>(5, 0, dx.get(), rows_out.get(), nullptr);
  kcuda::sum_columns<T>(0, 6, dx.get(), cols_out.get(), nullptr);
  ASSERT_TRUE(synced());
  EXPECT_TRUE(all_close(rows_out.download(), std::vector<double>(5, 0.0), 0.0, "empty rows"));
  EXPECT_TRUE(all_close(cols_out.download(), std::vector<double>(6, 0.0), 0.0, "empty cols"));
}

TYPED_TEST(GpuElementwise, Accumulate) {
  RG_SKIP_WITHOUT_GPU();
  using T = TypeParam;
  for (int64_t n : {int64_t{1}, int64_t{7}, int64_t{1000003}}) {
    const std::vector<float> src = random_floats(n, 91 + static_cast<uint32_t>(n), -1.f, 1.f);
    const std::vector<float> dst = random_floats(n, 97 + static_cast<uint32_t>(n), -1.f, 1.f);
    const std::vector<double> src_ref = seen_as<T>(src);
    std::vector<double> want = seen_as<T>(dst);
    k::cpu::accumulate<double>(n, src_ref.data(), want.data());
    for (const auto& [src_off, dst_off] : {std::pair{0, 0}, std::pair{1, 1}, std::pair{1, 0}}) {
      const std::string label = type_name<T>() + " accumulate n=" + std::to_string(n) +
                                " offsets " + std::to_string(src_off) + "," +
                                std::to_string(dst_off);
      DeviceBuffer<T> dsrc(padded<T>(src, src_off)), ddst(padded<T>(dst, dst_off));
      kcuda::accumulate<T>(n, dsrc.get() + src_off, ddst.get() + dst_off, nullptr);
      ASSERT_TRUE(synced()) << label;
      EXPECT_TRUE(all_close(download_from(ddst, dst_off), want, tolerance<T>(), label));
    }
  }
}

}  // namespace
