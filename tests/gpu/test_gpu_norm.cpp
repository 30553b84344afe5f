// The CUDA normalization kernels (kernels/cuda/norm.h) against the CPU reference instantiated
// for double, in float and bf16: the U-Net's seg256 shapes (down to one value per channel),
// awkward ones (1, 3, 7 channels, odd spatial sizes, one image), with and without gamma/beta
// and for each fused activation. Inputs are rounded to T first and the reference sees the
// rounded values, so the comparison measures only the kernels' arithmetic.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "kernels/cuda/norm.h"
#include "kernels/norm.h"
#include "tests/gpu/gpu_test_util.h"

namespace {

using rg::gpu_test::all_close;
using rg::gpu_test::convert;
using rg::gpu_test::DeviceBuffer;
using rg::gpu_test::kTolBf16;
using rg::gpu_test::kTolFp32;
using rg::gpu_test::random_floats;
using rg::gpu_test::to_floats;
using rg::kernels::NormShape;
using rg::kernels::cuda::bf16;
using rg::kernels::cuda::NormActivation;
using rg::kernels::cuda::NormFusion;
namespace kc = rg::kernels::cpu;
namespace kg = rg::kernels::cuda;

constexpr float kEps = 1e-5f;

template <typename T>
constexpr double output_tol() {
  return std::is_same_v<T, float> ? kTolFp32 : kTolBf16;
}

struct Case {
  NormShape s;
  NormFusion fusion;
  bool affine = true;
  float offset = 0.f;  // added to x: statistics must stay accurate when mean >> std
};

std::string describe(const Case& k) {
  const char* act = k.fusion.act == NormActivation::None   ? "none"
                    : k.fusion.act == NormActivation::ReLU ? "relu"
                                                           : "leaky_relu";
  return "[n=" + std::to_string(k.s.n) + " hw=" + std::to_string(k.s.hw) +
         " c=" + std::to_string(k.s.c) + " act=" + act + (k.affine ? " affine" : " no-affine") +
         (k.offset != 0.f ? " offset=" + std::to_string(k.offset) : "") + "]";
}

NormFusion fusion_of(int i) {
  NormFusion f;
  f.act = i == 0 ? NormActivation::None : i == 1 ? NormActivation::ReLU : NormActivation::LeakyReLU;
  f.negative_slope = 0.2f;
  return f;
}

// The seg256 U-Net's norm layers: 64..512 channels at 64x64 down to 1x1, batch 1 and 16; each
// with one (activation, affine) variant, cycling so that every variant appears.
std::vector<Case> seg256_cases() {
  const NormShape shapes[] = {{1, 1, 512},    {16, 1, 512},   {1, 4, 512},       {16, 4, 256},
                              {1, 16, 512},   {16, 16, 128},  {1, 4096, 64},     {1, 4096, 128},
                              {16, 4096, 64}, {16, 256, 128}, {1, 64 * 64, 256}, {16, 64, 512}};
  std::vector<Case> cases;
  int i = 0;
  for (const NormShape& s : shapes) {
    cases.push_back({s, fusion_of(i % 3), (i / 3) % 2 == 0});
    ++i;
  }
  return cases;
}

// Awkward shapes, each with every (activation, affine) variant.
std::vector<Case> awkward_cases() {
  const NormShape shapes[] = {{1, 1, 1},        {2, 9 * 11, 1},  {3, 9 * 11, 3}, {1, 1, 7},
                              {5, 1, 7},        {1, 2, 3},       {2, 9 * 11, 7}, {4, 5, 65},
                              {2, 9 * 11, 130}, {3, 37 * 41, 7}, {1, 9 * 11, 36}};
  std::vector<Case> cases;
  for (const NormShape& s : shapes)
    for (int act = 0; act < 3; ++act)
      for (bool affine : {true, false}) cases.push_back({s, fusion_of(act), affine});
  return cases;
}

// Post-ReLU-like statistics: mean 10 with a spread of about 0.3.
std::vector<Case> offset_cases() {
  return {{{4, 1024, 64}, fusion_of(1), true, 10.f},
          {{1, 16, 512}, fusion_of(0), true, 10.f},
          {{2, 9 * 11, 7}, fusion_of(2), false, 10.f}};
}

std::vector<Case> all_cases() {
  std::vector<Case> cases = seg256_cases();
  for (const Case& k : awkward_cases()) cases.push_back(k);
  for (const Case& k : offset_cases()) cases.push_back(k);
  return cases;
}

double act_ref(double v, const NormFusion& f) {
  switch (f.act) {
    case NormActivation::ReLU:
      return v > 0.0 ? v : 0.0;
    case NormActivation::LeakyReLU:
      return v > 0.0 ? v : v * static_cast<double>(f.negative_slope);
    default:
      return v;
  }
}

double act_grad_ref(double dy, double y, const NormFusion& f) {
  switch (f.act) {
    case NormActivation::ReLU:
      return y > 0.0 ? dy : 0.0;
    case NormActivation::LeakyReLU:
      return y > 0.0 ? dy : dy * static_cast<double>(f.negative_slope);
    default:
      return dy;
  }
}

std::vector<double> to_doubles(const std::vector<float>& v) {
  return std::vector<double>(v.begin(), v.end());
}

int64_t numel(const NormShape& s) {
  return s.n * s.hw * s.c;
}

// Input values of T (returned as the float values of the rounded T) with a different mean and
// spread per channel, so a channel mix-up shows.
template <typename T>
std::vector<float> make_input(const Case& k, uint32_t seed) {
  std::vector<float> x = random_floats(static_cast<size_t>(numel(k.s)), seed);
  const float spread = k.offset != 0.f ? 0.3f : 1.f;
  for (size_t i = 0; i < x.size(); ++i) {
    const int64_t ch = static_cast<int64_t>(i) % k.s.c;
    x[i] = k.offset + spread * ((1.f + 0.5f * static_cast<float>(ch % 3)) * x[i] +
                                0.3f * static_cast<float>(ch % 5));
  }
  return to_floats(convert<T>(x));
}

template <typename T>
std::vector<float> rounded(const std::vector<float>& v) {
  return to_floats(convert<T>(v));
}

// Everything a test of one case needs on both sides.
template <typename T>
struct NormData {
  Case k;
  std::vector<float> x, gamma, beta;  // x already rounded to T

  NormData(const Case& kase, uint32_t seed) : k(kase) {
    x = make_input<T>(k, seed);
    gamma = random_floats(static_cast<size_t>(k.s.c), seed + 1, 0.5f, 1.5f);
    beta = random_floats(static_cast<size_t>(k.s.c), seed + 2, -0.5f, 0.5f);
  }
  std::vector<double> gamma_d() const { return to_doubles(gamma); }
  std::vector<double> beta_d() const { return to_doubles(beta); }
};

template <typename T>
std::vector<float> download_floats(const DeviceBuffer<T>& b) {
  return to_floats(b.download());
}

template <typename T>
class GpuNorm : public ::testing::Test {
 protected:
  void SetUp() override {
    if (rg::gpu_test::have_gpu()) {
      ASSERT_EQ(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), cudaSuccess);
    }
  }
  void TearDown() override {
    if (stream_) cudaStreamDestroy(stream_);
  }
  cudaStream_t stream_ = nullptr;
};

using NormTypes = ::testing::Types<float, bf16>;
TYPED_TEST_SUITE(GpuNorm, NormTypes);

// all_close (gpu_test_util.h) with a floor on the scale: every element finite and
// |got - want| <= tol * max(min_scale, max |want|).
::testing::AssertionResult close_at_scale(const std::vector<float>& got,
                                          const std::vector<double>& want, double tol,
                                          double min_scale, const std::string& what) {
  if (got.size() != want.size()) {
    return ::testing::AssertionFailure()
           << what << ": " << got.size() << " values, expected " << want.size();
  }
  double scale = min_scale;
  for (double w : want) scale = std::max(scale, std::abs(w));
  if (scale == 0.0) scale = 1.0;
  size_t bad = 0, first = 0;
  double worst = 0.0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double err = std::abs(static_cast<double>(got[i]) - want[i]);
    if (!std::isfinite(got[i]) || err > tol * scale) {
      if (bad++ == 0) first = i;
    } else {
      worst = std::max(worst, err / scale);
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << what << ": " << bad << " of " << got.size() << " elements off (first at " << first
         << ": got " << got[first] << ", want " << want[first] << "), worst passing error " << worst
         << " of scale " << scale << ", tolerance " << tol;
}

double max_abs(const std::vector<float>& v) {
  double m = 0.0;
  for (float e : v) m = std::max(m, std::abs(static_cast<double>(e)));
  return m;
}

// Floors for comparing dgamma = sum(dy' * xhat) and dbeta = sum(dy') per channel: fp32 sums
// are accurate relative to the sums of the terms' magnitudes, and a channel whose sum cancels
// to near zero would otherwise set a scale no summation order can meet. mean/invstd are indexed
// [group * c + channel] (group 0 for batch norm).
struct ParamGradFloors {
  double dgamma = 0.0, dbeta = 0.0;
};

ParamGradFloors param_grad_floors(const NormShape& s, bool instance, const std::vector<float>& x,
                                  const std::vector<double>& dy_eff,
                                  const std::vector<double>& mean,
                                  const std::vector<double>& invstd) {
  std::vector<double> l1_dgamma(static_cast<size_t>(s.c), 0.0), l1_dbeta(l1_dgamma.size(), 0.0);
  for (size_t i = 0; i < x.size(); ++i) {
    const size_t ch = static_cast<size_t>(static_cast<int64_t>(i) % s.c);
    const size_t stat =
        instance ? static_cast<size_t>(static_cast<int64_t>(i) / (s.hw * s.c) * s.c) + ch : ch;
    l1_dbeta[ch] += std::abs(dy_eff[i]);
    l1_dgamma[ch] += std::abs(dy_eff[i] * (x[i] - mean[stat]) * invstd[stat]);
  }
  ParamGradFloors f;
  for (size_t ch = 0; ch < l1_dbeta.size(); ++ch) {
    f.dgamma = std::max(f.dgamma, l1_dgamma[ch]);
    f.dbeta = std::max(f.dbeta, l1_dbeta[ch]);
  }
  return f;
}

// Reference training-mode forward (batch or instance norm) with the activation, in double.
template <typename T>
void reference_forward(const NormData<T>& d, bool instance, std::vector<double>& y,
                       std::vector<double>& mean, std::vector<double>& invstd) {
  const NormShape& s = d.k.s;
  const std::vector<double> x = to_doubles(d.x), g = d.gamma_d(), b = d.beta_d();
  const double* gp = d.k.affine ? g.data() : nullptr;
  const double* bp = d.k.affine ? b.data() : nullptr;
  const size_t stats = static_cast<size_t>(instance ? s.n * s.c : s.c);
  y.assign(static_cast<size_t>(numel(s)), 0.0);
  mean.assign(stats, 0.0);
  invstd.assign(stats, 0.0);
  if (instance) {
    kc::instance_norm_forward<double>(s, x.data(), gp, bp, kEps, y.data(), mean.data(),
                                      invstd.data());
  } else {
    kc::batch_norm_forward_train<double>(s, x.data(), gp, bp, kEps, y.data(), mean.data(),
                                         invstd.data());
  }
  for (double& v : y) v = act_ref(v, d.k.fusion);
}

template <typename T>
void check_forward_train(bool instance, cudaStream_t stream) {
  uint32_t seed = instance ? 7000 : 1000;
  for (const Case& k : all_cases()) {
    SCOPED_TRACE(describe(k));
    const NormData<T> d(k, seed += 10);
    std::vector<double> y_ref, mean_ref, invstd_ref;
    reference_forward(d, instance, y_ref, mean_ref, invstd_ref);

    const NormShape& s = k.s;
    DeviceBuffer<T> x(convert<T>(d.x));
    DeviceBuffer<float> gamma(d.gamma), beta(d.beta);
    DeviceBuffer<T> y(static_cast<size_t>(numel(s)));
    DeviceBuffer<float> mean(mean_ref.size()), invstd(mean_ref.size());
    const float* gp = k.affine ? gamma.get() : nullptr;
    const float* bp = k.affine ? beta.get() : nullptr;
    if (instance) {
      kg::instance_norm_forward<T>(s, x.get(), gp, bp, kEps, k.fusion, y.get(), mean.get(),
                                   invstd.get(), stream);
    } else {
      kg::batch_norm_forward_train<T>(s, x.get(), gp, bp, kEps, k.fusion, y.get(), mean.get(),
                                      invstd.get(), stream);
    }
    EXPECT_TRUE(all_close(download_floats(y), y_ref, output_tol<T>(), "y"));
    EXPECT_TRUE(close_at_scale(mean.download(), mean_ref, kTolFp32, max_abs(d.x), "save_mean"));
    EXPECT_TRUE(all_close(invstd.download(), invstd_ref, kTolFp32, "save_invstd"));
  }
}

TYPED_TEST(GpuNorm, BatchNormForwardTrain) {
  RG_SKIP_WITHOUT_GPU();
  check_forward_train<TypeParam>(false, this->stream_);
}

TYPED_TEST(GpuNorm, InstanceNormForward) {
  RG_SKIP_WITHOUT_GPU();
  check_forward_train<TypeParam>(true, this->stream_);
}

TYPED_TEST(GpuNorm, BatchNormForwardEval) {
  RG_SKIP_WITHOUT_GPU();
  using T = TypeParam;
  uint32_t seed = 2000;
  for (const Case& k : all_cases()) {
    SCOPED_TRACE(describe(k));
    const NormData<T> d(k, seed += 10);
    const NormShape& s = k.s;
    std::vector<float> rmean = random_floats(static_cast<size_t>(s.c), seed + 3, -0.5f, 0.5f);
    std::vector<float> rvar = random_floats(static_cast<size_t>(s.c), seed + 4, 0.5f, 1.5f);
    for (float& m : rmean) m += k.offset;

    const std::vector<double> x = to_doubles(d.x), g = d.gamma_d(), b = d.beta_d();
    const std::vector<double> md = to_doubles(rmean), vd = to_doubles(rvar);
    std::vector<double> y_ref(static_cast<size_t>(numel(s)));
    kc::batch_norm_forward_eval<double>(s, x.data(), k.affine ? g.data() : nullptr,
                                        k.affine ? b.data() : nullptr, md.data(), vd.data(), kEps,
                                        y_ref.data());
    for (double& v : y_ref) v = act_ref(v, k.fusion);

    DeviceBuffer<T> xb(convert<T>(d.x));
    DeviceBuffer<float> gamma(d.gamma), beta(d.beta), mean(rmean), var(rvar);
    DeviceBuffer<T> y(static_cast<size_t>(numel(s)));
    kg::batch_norm_forward_eval<T>(s, xb.get(), k.affine ? gamma.get() : nullptr,
                                   k.affine ? beta.get() : nullptr, mean.get(), var.get(), kEps,
                                   k.fusion, y.get(), this->stream_);
    EXPECT_TRUE(all_close(download_floats(y), y_ref, output_tol<T>(), "y"));
  }
}

// Inputs of a training-mode backward: saved statistics and forward output y as the GPU would
// have them (the reference forward rounded to float / T), dy random; the reference sees dy
// multiplied by act'(y) from the same rounded y.
template <typename T>
struct BackwardData {
  std::vector<float> mean, invstd, y, dy;
  std::vector<double> dy_eff;

  BackwardData(const NormData<T>& d, bool instance, uint32_t seed) {
    std::vector<double> y_ref, mean_ref, invstd_ref;
    reference_forward(d, instance, y_ref, mean_ref, invstd_ref);
    mean.assign(mean_ref.begin(), mean_ref.end());
    invstd.assign(invstd_ref.begin(), invstd_ref.end());
    y = rounded<T>(std::vector<float>(y_ref.begin(), y_ref.end()));
    dy = rounded<T>(random_floats(d.x.size(), seed));
    dy_eff.resize(dy.size());
    for (size_t i = 0; i < dy.size(); ++i) dy_eff[i] = act_grad_ref(dy[i], y[i], d.k.fusion);
  }
};

// The magnitude of the terms a training-mode backward sums into dx: gamma * invstd * dy'. They
// cancel (exactly, with two rows per group), so dx can lie far below their fp32 rounding; dx is
// measured against this scale (or max |dx| when larger) rather than against max |dx| alone.
double dx_term_scale(const NormShape& s, bool instance, const std::vector<double>& dy_eff,
                     const std::vector<float>* gamma, const std::vector<float>& invstd) {
  double scale = 0.0;
  for (size_t i = 0; i < dy_eff.size(); ++i) {
    const int64_t ch = static_cast<int64_t>(i) % s.c;
    const int64_t group = instance ? static_cast<int64_t>(i) / (s.hw * s.c) : 0;
    const double g = gamma ? (*gamma)[static_cast<size_t>(ch)] : 1.0;
    scale =
        std::max(scale, std::abs(g * invstd[static_cast<size_t>(group * s.c + ch)] * dy_eff[i]));
  }
  return scale;
}

template <typename T>
void check_backward_train(bool instance, cudaStream_t stream) {
  uint32_t seed = instance ? 8000 : 3000;
  for (const Case& k : all_cases()) {
    SCOPED_TRACE(describe(k));
    const NormData<T> d(k, seed += 10);
    const BackwardData<T> bd(d, instance, seed + 5);
    const NormShape& s = k.s;

    const std::vector<double> x = to_doubles(d.x), g = d.gamma_d();
    const std::vector<double> md = to_doubles(bd.mean), isd = to_doubles(bd.invstd);
    std::vector<double> dx_ref(x.size()), dgamma_ref(static_cast<size_t>(s.c)),
        dbeta_ref(static_cast<size_t>(s.c));
    const double* gp_ref = k.affine ? g.data() : nullptr;
    if (instance) {
      kc::instance_norm_backward<double>(s, x.data(), bd.dy_eff.data(), gp_ref, md.data(),
                                         isd.data(), dx_ref.data(), dgamma_ref.data(),
                                         dbeta_ref.data());
    } else {
      kc::batch_norm_backward_train<double>(s, x.data(), bd.dy_eff.data(), gp_ref, md.data(),
                                            isd.data(), dx_ref.data(), dgamma_ref.data(),
                                            dbeta_ref.data());
    }

    const double dx_scale =
        dx_term_scale(s, instance, bd.dy_eff, k.affine ? &d.gamma : nullptr, bd.invstd);
    const ParamGradFloors floors = param_grad_floors(s, instance, d.x, bd.dy_eff, md, isd);
    auto dx_close = [&](const std::vector<float>& got, const char* what) {
      return close_at_scale(got, dx_ref, output_tol<T>(), dx_scale, what);
    };

    DeviceBuffer<T> xb(convert<T>(d.x)), yb(convert<T>(bd.y)), dyb(convert<T>(bd.dy));
    DeviceBuffer<float> gamma(d.gamma), mean(bd.mean), invstd(bd.invstd);
    const float* gp = k.affine ? gamma.get() : nullptr;
    // y is only read with a fused activation.
    const T* yp = k.fusion.act == NormActivation::None ? nullptr : yb.get();
    auto run = [&](T* dx, float* dgamma, float* dbeta) {
      if (instance) {
        kg::instance_norm_backward<T>(s, xb.get(), yp, dyb.get(), gp, mean.get(), invstd.get(),
                                      k.fusion, dx, dgamma, dbeta, stream);
      } else {
        kg::batch_norm_backward_train<T>(s, xb.get(), yp, dyb.get(), gp, mean.get(), invstd.get(),
                                         k.fusion, dx, dgamma, dbeta, stream);
      }
    };
    {
      DeviceBuffer<T> dx(x.size());
      DeviceBuffer<float> dgamma(static_cast<size_t>(s.c)), dbeta(static_cast<size_t>(s.c));
      run(dx.get(), dgamma.get(), dbeta.get());
      EXPECT_TRUE(dx_close(download_floats(dx), "dx"));
      EXPECT_TRUE(close_at_scale(dgamma.download(), dgamma_ref, kTolFp32, floors.dgamma, "dgamma"));
      EXPECT_TRUE(close_at_scale(dbeta.download(), dbeta_ref, kTolFp32, floors.dbeta, "dbeta"));
    }
    {  // parameter gradients not wanted
      DeviceBuffer<T> dx(x.size());
      run(dx.get(), nullptr, nullptr);
      EXPECT_TRUE(dx_close(download_floats(dx), "dx without dgamma"));
    }
    {  // only one of them
      DeviceBuffer<T> dx(x.size());
      DeviceBuffer<float> dbeta(static_cast<size_t>(s.c));
      run(dx.get(), nullptr, dbeta.get());
      EXPECT_TRUE(dx_close(download_floats(dx), "dx with dbeta only"));
      EXPECT_TRUE(
          close_at_scale(dbeta.download(), dbeta_ref, kTolFp32, floors.dbeta, "dbeta alone"));
    }
  }
}

TYPED_TEST(GpuNorm, BatchNormBackwardTrain) {
  RG_SKIP_WITHOUT_GPU();
  check_backward_train<TypeParam>(false, this->stream_);
}

TYPED_TEST(GpuNorm, InstanceNormBackward) {
  RG_SKIP_WITHOUT_GPU();
  check_backward_train<TypeParam>(true, this->stream_);
}

TYPED_TEST(GpuNorm, BatchNormBackwardEval) {
  RG_SKIP_WITHOUT_GPU();
  using T = TypeParam;
  uint32_t seed = 4000;
  for (const Case& k : all_cases()) {
    SCOPED_TRACE(describe(k));
    const NormData<T> d(k, seed += 10);
    const NormShape& s = k.s;
    std::vector<float> rmean = random_floats(static_cast<size_t>(s.c), seed + 3, -0.5f, 0.5f);
    std::vector<float> rvar = random_floats(static_cast<size_t>(s.c), seed + 4, 0.5f, 1.5f);
    for (float& m : rmean) m += k.offset;

    // The eval-mode forward output, for the activation mask.
    const std::vector<double> x = to_doubles(d.x), g = d.gamma_d(), b = d.beta_d();
    const std::vector<double> md = to_doubles(rmean), vd = to_doubles(rvar);
    std::vector<double> y_ref(x.size());
    kc::batch_norm_forward_eval<double>(s, x.data(), k.affine ? g.data() : nullptr,
                                        k.affine ? b.data() : nullptr, md.data(), vd.data(), kEps,
                                        y_ref.data());
    std::vector<float> y(x.size());
    for (size_t i = 0; i < y.size(); ++i) y[i] = static_cast<float>(act_ref(y_ref[i], k.fusion));
    y = rounded<T>(y);
    const std::vector<float> dy = rounded<T>(random_floats(x.size(), seed + 5));
    std::vector<double> dy_eff(dy.size());
    for (size_t i = 0; i < dy.size(); ++i) dy_eff[i] = act_grad_ref(dy[i], y[i], k.fusion);

    std::vector<double> dx_ref(x.size()), dgamma_ref(static_cast<size_t>(s.c)),
        dbeta_ref(static_cast<size_t>(s.c));
    kc::batch_norm_backward_eval<double>(s, x.data(), dy_eff.data(), k.affine ? g.data() : nullptr,
                                         md.data(), vd.data(), kEps, dx_ref.data(),
                                         dgamma_ref.data(), dbeta_ref.data());

    std::vector<double> invstd_d(vd.size());
    for (size_t j = 0; j < vd.size(); ++j) invstd_d[j] = 1.0 / std::sqrt(vd[j] + kEps);
    const ParamGradFloors floors = param_grad_floors(s, false, d.x, dy_eff, md, invstd_d);

    DeviceBuffer<T> xb(convert<T>(d.x)), yb(convert<T>(y)), dyb(convert<T>(dy));
    DeviceBuffer<float> gamma(d.gamma), mean(rmean), var(rvar);
    const float* gp = k.affine ? gamma.get() : nullptr;
    const T* yp = k.fusion.act == NormActivation::None ? nullptr : yb.get();
    {
      DeviceBuffer<T> dx(x.size());
      DeviceBuffer<float> dgamma(static_cast<size_t>(s.c)), dbeta(static_cast<size_t>(s.c));
      kg::batch_norm_backward_eval<T>(s, xb.get(), yp, dyb.get(), gp, mean.get(), var.get(), kEps,
                                      k.fusion, dx.get(), dgamma.get(), dbeta.get(), this->stream_);
      EXPECT_TRUE(all_close(download_floats(dx), dx_ref, output_tol<T>(), "dx"));
      EXPECT_TRUE(close_at_scale(dgamma.download(), dgamma_ref, kTolFp32, floors.dgamma, "dgamma"));
      EXPECT_TRUE(close_at_scale(dbeta.download(), dbeta_ref, kTolFp32, floors.dbeta, "dbeta"));
    }
    {  // without parameter gradients x is not needed
      DeviceBuffer<T> dx(x.size());
      kg::batch_norm_backward_eval<T>(s, xb.get(), yp, dyb.get(), gp, mean.get(), var.get(), kEps,
                                      k.fusion, dx.get(), nullptr, nullptr, this->stream_);
      EXPECT_TRUE(all_close(download_floats(dx), dx_ref, output_tol<T>(), "dx without dgamma"));
    }
  }
}

// The op layer's update (engine/ops/norm.cpp), in double.
TEST(GpuNormRunning, UpdateMatchesOpLayer) {
  RG_SKIP_WITHOUT_GPU();
  for (int64_t c : {1, 7, 512}) {
    for (int64_t count : {2, 37, 16 * 64 * 64, 1}) {
      SCOPED_TRACE("c=" + std::to_string(c) + " count=" + std::to_string(count));
      const uint32_t seed = static_cast<uint32_t>(c * 131 + count);
      const std::vector<float> mean = random_floats(static_cast<size_t>(c), seed, -2.f, 2.f);
      const std::vector<float> invstd = random_floats(static_cast<size_t>(c), seed + 1, 0.5f, 3.f);
      const std::vector<float> rm = random_floats(static_cast<size_t>(c), seed + 2, -1.f, 1.f);
      const std::vector<float> rv = random_floats(static_cast<size_t>(c), seed + 3, 0.5f, 2.f);
      const float momentum = 0.1f;
      // count 1: the op layer refuses training; the kernel keeps the biased variance.
      const double unbias = count > 1 ? static_cast<double>(count) / (count - 1) : 1.0;
      std::vector<double> rm_ref(rm.size()), rv_ref(rv.size());
      for (size_t j = 0; j < rm.size(); ++j) {
        const double is = invstd[j];
        const double var = 1.0 / (is * is) - static_cast<double>(kEps);
        rm_ref[j] = (1.0 - momentum) * rm[j] + static_cast<double>(momentum) * mean[j];
        rv_ref[j] = (1.0 - momentum) * rv[j] + static_cast<double>(momentum) * var * unbias;
      }
      DeviceBuffer<float> mb(mean), ib(invstd), rmb(rm), rvb(rv);
      kg::batch_norm_update_running(c, count, momentum, kEps, mb.get(), ib.get(), rmb.get(),
                                    rvb.get(), nullptr);
      EXPECT_TRUE(all_close(rmb.download(), rm_ref, kTolFp32, "running_mean"));
      EXPECT_TRUE(all_close(rvb.download(), rv_ref, kTolFp32, "running_var"));
    }
  }
}

template <typename T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

// No float atomics: the same inputs give the same bits, for the multi-chunk paths too.
TYPED_TEST(GpuNorm, Deterministic) {
  RG_SKIP_WITHOUT_GPU();
  using T = TypeParam;
  for (const NormShape& s : {NormShape{16, 4096, 64}, NormShape{3, 37 * 41, 7}}) {
    for (bool instance : {false, true}) {
      SCOPED_TRACE(describe({s, fusion_of(2), true}) + (instance ? " instance" : " batch"));
      const Case k{s, fusion_of(2), true};
      const NormData<T> d(k, 5000);
      const size_t stats = static_cast<size_t>(instance ? s.n * s.c : s.c);
      DeviceBuffer<T> x(convert<T>(d.x));
      DeviceBuffer<T> dy(convert<T>(random_floats(d.x.size(), 5001)));
      DeviceBuffer<float> gamma(d.gamma), beta(d.beta);
      std::vector<std::vector<T>> ys, dxs;
      std::vector<std::vector<float>> stats_out, param_grads;
      for (int rep = 0; rep < 2; ++rep) {
        DeviceBuffer<T> y(d.x.size()), dx(d.x.size());
        DeviceBuffer<float> mean(stats), invstd(stats), dgamma(static_cast<size_t>(s.c)),
            dbeta(static_cast<size_t>(s.c));
        if (instance) {
          kg::instance_norm_forward<T>(s, x.get(), gamma.get(), beta.get(), kEps, k.fusion, y.get(),
                                       mean.get(), invstd.get(), this->stream_);
          kg::instance_norm_backward<T>(s, x.get(), y.get(), dy.get(), gamma.get(), mean.get(),
                                        invstd.get(), k.fusion, dx.get(), dgamma.get(), dbeta.get(),
                                        this->stream_);
        } else {
          kg::batch_norm_forward_train<T>(s, x.get(), gamma.get(), beta.get(), kEps, k.fusion,
                                          y.get(), mean.get(), invstd.get(), this->stream_);
          kg::batch_norm_backward_train<T>(s, x.get(), y.get(), dy.get(), gamma.get(), mean.get(),
                                           invstd.get(), k.fusion, dx.get(), dgamma.get(),
                                           dbeta.get(), this->stream_);
        }
        ys.push_back(y.download());
        dxs.push_back(dx.download());
        stats_out.push_back(mean.download());
        stats_out.push_back(invstd.download());
        param_grads.push_back(dgamma.download());
        param_grads.push_back(dbeta.download());
      }
      EXPECT_TRUE(same_bits(ys[0], ys[1]));
      EXPECT_TRUE(same_bits(dxs[0], dxs[1]));
      EXPECT_TRUE(same_bits(stats_out[0], stats_out[2]));
      EXPECT_TRUE(same_bits(stats_out[1], stats_out[3]));
      EXPECT_TRUE(same_bits(param_grads[0], param_grads[2]));
      EXPECT_TRUE(same_bits(param_grads[1], param_grads[3]));
    }
  }
}

// Pointers offset by one element defeat the vector loads: the scalar path must give the same
// results.
TYPED_TEST(GpuNorm, MisalignedPointers) {
  RG_SKIP_WITHOUT_GPU();
  using T = TypeParam;
  const Case k{{2, 9 * 11, 64}, fusion_of(1), true};
  const NormData<T> d(k, 6000);
  std::vector<double> y_ref, mean_ref, invstd_ref;
  reference_forward(d, false, y_ref, mean_ref, invstd_ref);
  std::vector<T> x_host(d.x.size() + 1);
  const std::vector<T> xt = convert<T>(d.x);
  std::copy(xt.begin(), xt.end(), x_host.begin() + 1);
  DeviceBuffer<T> x(x_host), y(d.x.size() + 1);
  DeviceBuffer<float> gamma(d.gamma), beta(d.beta), mean(64), invstd(64);
  kg::batch_norm_forward_train<T>(k.s, x.get() + 1, gamma.get(), beta.get(), kEps, k.fusion,
                                  y.get() + 1, mean.get(), invstd.get(), this->stream_);
  std::vector<float> got = download_floats(y);
  got.erase(got.begin());
  EXPECT_TRUE(all_close(got, y_ref, output_tol<T>(), "y"));
  EXPECT_TRUE(close_at_scale(mean.download(), mean_ref, kTolFp32, max_abs(d.x), "save_mean"));
  EXPECT_TRUE(all_close(invstd.download(), invstd_ref, kTolFp32, "save_invstd"));
}

}  // namespace
