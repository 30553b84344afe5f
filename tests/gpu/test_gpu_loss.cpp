// CUDA loss kernels (kernels/cuda/loss.h) against the CPU reference instantiated for double, on
// the inputs the GPU sees (rounded to T). Sums are fp32 reductions on the GPU and double sums on
// the CPU: they must agree to 1e-5 of the sum's magnitude. Sizes cover the one-block path and
// the two-level path with its stream-ordered partials.
// cuda_runtime.h before gpu_test_util.h: DeviceBuffer calls cudaMalloc(T**), the typed overload
// declared there (cuda_runtime_api.h only has the void** one).
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "kernels/cuda/loss.h"
#include "kernels/loss.h"
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

template <typename T>
std::vector<double> seen_as(const std::vector<float>& v) {
  std::vector<double> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = to_float(from_float<T>(v[i]));
  return out;
}

::testing::AssertionResult synced() {
  const cudaError_t err = cudaDeviceSynchronize();
  if (err != cudaSuccess) return ::testing::AssertionFailure() << cudaGetErrorString(err);
  const cudaError_t last = cudaGetLastError();
  if (last != cudaSuccess) return ::testing::AssertionFailure() << cudaGetErrorString(last);
  return ::testing::AssertionSuccess();
}

// all_close relative to the largest |want| itself (gradients scaled by 1/n are far below 1,
// where all_close's max(1, .) scale would accept anything).
::testing::AssertionResult close_to_scale(const std::vector<float>& got,
                                          const std::vector<double>& want, double tol,
                                          const std::string& what) {
  double scale = 0.0;
  for (double w : want) scale = std::max(scale, std::abs(w));
  if (scale == 0.0) scale = 1.0;
  std::vector<float> g(got.size());
  std::vector<double> w(want.size());
  for (size_t i = 0; i < got.size(); ++i) g[i] = static_cast<float>(got[i] / scale);
  for (size_t i = 0; i < want.size(); ++i) w[i] = want[i] / scale;
  return all_close(g, w, tol, what + " (scaled by 1/" + std::to_string(scale) + ")");
}

template <typename T>
class GpuLoss : public ::testing::Test {};
using LossTypes = ::testing::Types<float, bf16>;
TYPED_TEST_SUITE(GpuLoss, LossTypes);

const k::PointwiseLoss kLosses[] = {k::PointwiseLoss::BceWithLogits, k::PointwiseLoss::L1,
                                    k::PointwiseLoss::Mse};

// Logits in [-8, 8] for BCE (targets in [0, 1]); predictions and targets in [-1, 1] otherwise.
std::vector<float> loss_inputs(k::PointwiseLoss loss, int64_t n, uint32_t seed) {
  return loss == k::PointwiseLoss::BceWithLogits ? random_floats(n, seed, -8.f, 8.f)
                                                 : random_floats(n, seed, -1.f, 1.f);
}
std::vector<float> loss_targets(k::PointwiseLoss loss, int64_t n, uint32_t seed) {
  return loss == k::PointwiseLoss::BceWithLogits ? random_floats(n, seed, 0.f, 1.f)
                                                 : random_floats(n, seed, -1.f, 1.f);
}

TYPED_TEST(GpuLoss, PointwiseForward) {
  RG_SKIP_WITHOUT_GPU();
  using T = TypeParam;
  for (k::PointwiseLoss loss : kLosses) {
    for (int64_t n : {int64_t{1}, int64_t{7}, int64_t{4096}, int64_t{4097}, int64_t{100000},
                      int64_t{1000003}, int64_t{5000000}}) {
      const std::string what = type_name<T>() + " loss " + std::to_string(static_cast<int>(loss)) +
                               " n=" + std::to_string(n);
      const std::vector<float> x = loss_inputs(loss, n, 3 + static_cast<uint32_t>(n));
      const std::vector<float> t = loss_targets(loss, n, 5 + static_cast<uint32_t>(n));
      const std::vector<double> x_ref = seen_as<T>(x), t_ref = seen_as<T>(t);
      const double want =
          k::cpu::pointwise_loss_forward<double>(loss, n, x_ref.data(), t_ref.data());
      DeviceBuffer<T> dx(convert<T>(x)), dt(convert<T>(t));
      DeviceBuffer<float> sum(1);
      kcuda::pointwise_loss_forward<T>(loss, n, dx.get(), dt.get(), sum.get(), nullptr);
      ASSERT_TRUE(synced()) << what;
      // Inputs are exact in both; only the fp32 reduction differs from the double sum.
      EXPECT_TRUE(all_close(sum.download(), std::vector<double>{want}, kTolFp32, what));
    }
  }
}

TYPED_TEST(GpuLoss, PointwiseForwardEmptyAndDeterministic) {
  RG_SKIP_WITHOUT_GPU();
  using T = TypeParam;
  DeviceBuffer<T> none(1);
  DeviceBuffer<float> sum(1);
  kcuda::pointwise_loss_forward<T>(k::PointwiseLoss::Mse, 0, none.get(), none.get(), sum.get(),
                                   nullptr);
  ASSERT_TRUE(synced());
  EXPECT_EQ(sum.download(), std::vector<float>{0.f});
  // Two runs on a non-default stream give the same bits.
  const int64_t n = 3000017;
  const std::vector<float> x = random_floats(n, 7, -8.f, 8.f), t = random_floats(n, 9, 0.f, 1.f);
  DeviceBuffer<T> dx(convert<T>(x)), dt(convert<T>(t));
  DeviceBuffer<float> first(1), second(1);
  cudaStream_t stream = nullptr;
  RG_TEST_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  kcuda::pointwise_loss_forward<T>(k::PointwiseLoss::BceWithLogits, n, dx.get(), dt.get(),
                                   first.get(), stream);
  kcuda::pointwise_loss_forward<T>(k::PointwiseLoss::BceWithLogits, n, dx.get(), dt.get(),
                                   second.get(), stream);
  RG_TEST_CUDA(cudaStreamSynchronize(stream));
  RG_TEST_CUDA(cudaStreamDestroy(stream));
  const float a = first.download()[0], b = second.download()[0];
  EXPECT_TRUE(std::isfinite(a));
  EXPECT_EQ(0, std::memcmp(&a, &b, sizeof(float)));
}

TYPED_TEST(GpuLoss, PointwiseBackward) {
  RG_SKIP_WITHOUT_GPU();
  using T = TypeParam;
  const float upstream = 0.7f;
  for (k::PointwiseLoss loss : kLosses) {
    for (int64_t n : {int64_t{1}, int64_t{7}, int64_t{1000003}}) {
      const std::string what = type_name<T>() + " loss backward " +
                               std::to_string(static_cast<int>(loss)) + " n=" + std::to_string(n);
      const std::vector<float> x = loss_inputs(loss, n, 13 + static_cast<uint32_t>(n));
      const std::vector<float> t = loss_targets(loss, n, 17 + static_cast<uint32_t>(n));
      const std::vector<double> x_ref = seen_as<T>(x), t_ref = seen_as<T>(t);
      const float scale = 1.f / static_cast<float>(n);  // a mean
      std::vector<double> want_dx(n), want_dt(n);
      k::cpu::pointwise_loss_backward<double>(loss, n, x_ref.data(), t_ref.data(),
                                              double{upstream} * double{scale}, want_dx.data(),
                                              want_dt.data());
      DeviceBuffer<T> dx(convert<T>(x)), dt(convert<T>(t));
      DeviceBuffer<float> grad(std::vector<float>{upstream});
      DeviceBuffer<T> gx(n), gt(n), gx_only(n);
      kcuda::pointwise_loss_backward<T>(loss, n, dx.get(), dt.get(), grad.get(), scale, gx.get(),
                                        gt.get(), nullptr);
      kcuda::pointwise_loss_backward<T>(loss, n, dx.get(), dt.get(), grad.get(), scale,
                                        gx_only.get(), nullptr, nullptr);
      ASSERT_TRUE(synced()) << what;
      EXPECT_TRUE(close_to_scale(to_floats(gx.download()), want_dx, tolerance<T>(), what + " dx"));
      EXPECT_TRUE(close_to_scale(to_floats(gt.download()), want_dt, tolerance<T>(), what + " dt"));
      EXPECT_TRUE(close_to_scale(to_floats(gx_only.download()), want_dx, tolerance<T>(),
                                 what + " dx only"));
    }
  }
}

// CPU sums in the [3*b + k] layout of the CUDA kernel.
std::vector<double> cpu_dice_sums(int64_t batch, int64_t per, const std::vector<double>& p,
                                  const std::vector<double>& t) {
  std::vector<double> inter(batch), ps(batch), ts(batch), out(3 * batch);
  k::cpu::dice_sums<double>(batch, per, p.data(), t.data(), inter.data(), ps.data(), ts.data());
  for (int64_t b = 0; b < batch; ++b) {
    out[3 * b] = inter[b];
    out[3 * b + 1] = ps[b];
    out[3 * b + 2] = ts[b];
  }
  return out;
}

TYPED_TEST(GpuLoss, DiceSumsLossAndBackward) {
  RG_SKIP_WITHOUT_GPU();
  using T = TypeParam;
  const float smooth = 1.f, upstream = 0.7f;
  const std::vector<std::pair<int64_t, int64_t>> shapes = {
      {1, 1},     {1, 7},      {3, 5000},   {2, 4096}, {2, 4097},
      {1, 65536}, {16, 65536}, {64, 65536}, {64, 7},   {5, 100003}};
  for (const auto& [batch, per] : shapes) {
    const std::string what = type_name<T>() + " dice batch " + std::to_string(batch) +
                             " per sample " + std::to_string(per);
    const int64_t n = batch * per;
    const std::vector<float> p = random_floats(n, 19 + static_cast<uint32_t>(n), 0.f, 1.f);
    std::vector<float> t = random_floats(n, 23 + static_cast<uint32_t>(n), 0.f, 1.f);
    for (auto& v : t) v = v < 0.3f ? 1.f : 0.f;  // a binary mask
    const std::vector<double> p_ref = seen_as<T>(p), t_ref = seen_as<T>(t);
    DeviceBuffer<T> dp(convert<T>(p)), dt(convert<T>(t));

    // Sums.
    DeviceBuffer<float> sums(3 * batch);
    kcuda::dice_sums<T>(batch, per, dp.get(), dt.get(), sums.get(), nullptr);
    ASSERT_TRUE(synced()) << what;
    const std::vector<float> got_sums = sums.download();
    const std::vector<double> want_sums = cpu_dice_sums(batch, per, p_ref, t_ref);
    EXPECT_TRUE(all_close(got_sums, want_sums, kTolFp32, what + " sums"));

    // Loss from the GPU's own sums (the reduction error is tested above).
    DeviceBuffer<float> loss(1);
    kcuda::dice_loss_from_sums(batch, sums.get(), smooth, loss.get(), nullptr);
    ASSERT_TRUE(synced()) << what;
    double want_loss = 0.0;
    for (int64_t b = 0; b < batch; ++b) {
      const double i = got_sums[3 * b], ps = got_sums[3 * b + 1], ts = got_sums[3 * b + 2];
      want_loss += 1.0 - (2.0 * i + smooth) / (ps + ts + smooth);
    }
    want_loss /= static_cast<double>(batch);
    EXPECT_TRUE(
        all_close(loss.download(), std::vector<double>{want_loss}, kTolFp32, what + " loss"));

    // Backward from the same sums.
    std::vector<double> inter(batch), ps(batch), ts(batch);
    for (int64_t b = 0; b < batch; ++b) {
      inter[b] = got_sums[3 * b];
      ps[b] = got_sums[3 * b + 1];
      ts[b] = got_sums[3 * b + 2];
    }
    std::vector<double> want_dp(n), want_dt(n);
    k::cpu::dice_backward<double>(batch, per, p_ref.data(), t_ref.data(), inter.data(), ps.data(),
                                  ts.data(), smooth, upstream, want_dp.data(), want_dt.data());
    DeviceBuffer<float> grad(std::vector<float>{upstream});
    DeviceBuffer<T> gp(n), gt(n), gp_only(n);
    kcuda::dice_backward<T>(batch, per, dp.get(), dt.get(), sums.get(), smooth, grad.get(),
                            gp.get(), gt.get(), nullptr);
    kcuda::dice_backward<T>(batch, per, dp.get(), dt.get(), sums.get(), smooth, grad.get(),
                            gp_only.get(), nullptr, nullptr);
    ASSERT_TRUE(synced()) << what;
    // Per sample: the gradient scale differs between samples by their D^2.
    const std::vector<float> got_dp = to_floats(gp.download()), got_dt = to_floats(gt.download()),
                             got_dp_only = to_floats(gp_only.download());
    for (int64_t b = 0; b < batch; ++b) {
      auto slice_f = [&](const std::vector<float>& v) {
        return std::vector<float>(v.begin() + b * per, v.begin() + (b + 1) * per);
      };
      auto slice_d = [&](const std::vector<double>& v) {
        return std::vector<double>(v.begin() + b * per, v.begin() + (b + 1) * per);
      };
      const std::string sample = what + " sample " + std::to_string(b);
      EXPECT_TRUE(
          close_to_scale(slice_f(got_dp), slice_d(want_dp), tolerance<T>(), sample + " dp"));
      EXPECT_TRUE(
          close_to_scale(slice_f(got_dt), slice_d(want_dt), tolerance<T>(), sample + " dt"));
      EXPECT_TRUE(close_to_scale(slice_f(got_dp_only), slice_d(want_dp), tolerance<T>(),
                                 sample + " dp only"));
    }
  }
}

TEST(GpuLossScalar, DiceLossEmptyBatch) {
  RG_SKIP_WITHOUT_GPU();
  DeviceBuffer<float> sums(1), loss(1);
  kcuda::dice_loss_from_sums(0, sums.get(), 1.f, loss.get(), nullptr);
  ASSERT_TRUE(synced());
  EXPECT_EQ(loss.download(), std::vector<float>{0.f});
}

}  // namespace
