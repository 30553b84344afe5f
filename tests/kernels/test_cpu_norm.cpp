// Tests of the CPU normalization kernels (kernels/norm.h): hand-computed values, a naive
// double-precision reference on random inputs, and finite-difference gradient checks.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kernels/norm.h"

namespace {

using rg::kernels::NormShape;
namespace kc = rg::kernels::cpu;

constexpr double kEps = 1e-5;

std::string shape_str(const NormShape& s) {
  return "[n=" + std::to_string(s.n) + " hw=" + std::to_string(s.hw) + " c=" + std::to_string(s.c) +
         "]";
}

template <typename T>
std::vector<T> poisoned(int64_t size) {
  return std::vector<T>(static_cast<size_t>(size), std::numeric_limits<T>::quiet_NaN());
}

template <typename T>
void expect_finite(const std::vector<T>& v, const char* what) {
  const auto bad = std::count_if(v.begin(), v.end(), [](T a) { return !std::isfinite(a); });
  EXPECT_EQ(bad, 0) << what << " has " << bad << " non-finite values";
}

template <typename T>
std::vector<T> random_vec(std::mt19937_64& rng, int64_t size, double mean, double stddev) {
  std::normal_distribution<double> d(mean, stddev);
  std::vector<T> v(static_cast<size_t>(size));
  for (auto& e : v) e = static_cast<T>(d(rng));
  return v;
}

// x with a different mean and spread per channel (so that a channel mix-up shows).
template <typename T>
std::vector<T> random_input(std::mt19937_64& rng, const NormShape& s) {
  std::normal_distribution<double> d(0.0, 1.0);
  std::vector<T> x(static_cast<size_t>(s.n * s.hw * s.c));
  for (int64_t r = 0; r < s.n * s.hw; ++r)
    for (int64_t j = 0; j < s.c; ++j)
      x[r * s.c + j] = static_cast<T>(0.5 * static_cast<double>(j % 5) - 1.0 +
                                      (1.0 + 0.3 * static_cast<double>(j % 3)) * d(rng));
  return x;
}

// ---------------------------------------------------------------------------------------------
// Naive reference, all in double. Statistics are per group; a group is either a channel (batch
// norm: all n*hw rows) or an (image, channel) pair (instance norm: hw rows of one image).

struct RefStats {
  std::vector<double> mean, invstd;  // [groups][c]
};

template <typename T>
RefStats ref_stats(const NormShape& s, const std::vector<T>& x, bool instance, double eps) {
  const int64_t groups = instance ? s.n : 1, rows = instance ? s.hw : s.n * s.hw;
  RefStats st;
  st.mean.assign(groups * s.c, 0.0);
  st.invstd.assign(groups * s.c, 0.0);
  for (int64_t g = 0; g < groups; ++g) {
    for (int64_t j = 0; j < s.c; ++j) {
      double sum = 0;
      for (int64_t r = 0; r < rows; ++r) sum += static_cast<double>(x[(g * rows + r) * s.c + j]);
      const double mean = sum / static_cast<double>(rows);
      double sq = 0;
      for (int64_t r = 0; r < rows; ++r) {
        const double d = static_cast<double>(x[(g * rows + r) * s.c + j]) - mean;
        sq += d * d;
      }
      st.mean[g * s.c + j] = mean;
      st.invstd[g * s.c + j] = 1.0 / std::sqrt(sq / static_cast<double>(rows) + eps);
    }
  }
  return st;
}

template <typename T>
double gam(const T* gamma, int64_t j) {
  return gamma ? static_cast<double>(gamma[j]) : 1.0;
}
template <typename T>
double bet(const T* beta, int64_t j) {
  return beta ? static_cast<double>(beta[j]) : 0.0;
}

// y given per-group statistics.
template <typename T>
std::vector<double> ref_forward(const NormShape& s, const std::vector<T>& x, const RefStats& st,
                                bool instance, const T* gamma, const T* beta) {
  const int64_t groups = instance ? s.n : 1, rows = instance ? s.hw : s.n * s.hw;
  std::vector<double> y(x.size());
  for (int64_t g = 0; g < groups; ++g)
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = 0; j < s.c; ++j) {
        const int64_t idx = (g * rows + r) * s.c + j;
        const double xhat = (static_cast<double>(x[idx]) - st.mean[g * s.c + j]) * st.invstd[g * s.c + j];
        y[idx] = xhat * gam(gamma, j) + bet(beta, j);
      }
  return y;
}

struct RefGrads {
  std::vector<double> dx, dgamma, dbeta;
};

// Gradients of the training-mode forward (statistics depend on x), written out term by term.
template <typename T>
RefGrads ref_backward_train(const NormShape& s, const std::vector<T>& x, const std::vector<T>& dy,
                            const RefStats& st, bool instance, const T* gamma) {
  const int64_t groups = instance ? s.n : 1, rows = instance ? s.hw : s.n * s.hw;
  const double m = static_cast<double>(rows);
  RefGrads g;
  g.dx.assign(x.size(), 0.0);
  g.dgamma.assign(s.c, 0.0);
  g.dbeta.assign(s.c, 0.0);
  for (int64_t gr = 0; gr < groups; ++gr)
    for (int64_t j = 0; j < s.c; ++j) {
      const double mean = st.mean[gr * s.c + j], is = st.invstd[gr * s.c + j];
      double sdy = 0, sdyxhat = 0;
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t idx = (gr * rows + r) * s.c + j;
        sdy += static_cast<double>(dy[idx]);
        sdyxhat += static_cast<double>(dy[idx]) * (static_cast<double>(x[idx]) - mean) * is;
      }
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t idx = (gr * rows + r) * s.c + j;
        const double xhat = (static_cast<double>(x[idx]) - mean) * is;
        g.dx[idx] = gam(gamma, j) * is / m * (m * static_cast<double>(dy[idx]) - sdy - xhat * sdyxhat);
      }
      g.dgamma[j] += sdyxhat;
      g.dbeta[j] += sdy;
    }
  return g;
}

// Largest |a - b| / (1 + |b|).
template <typename T>
double max_rel_err(const std::vector<T>& a, const std::vector<double>& b) {
  double e = 0;
  for (size_t i = 0; i < a.size(); ++i)
    e = std::max(e, std::abs(static_cast<double>(a[i]) - b[i]) / (1.0 + std::abs(b[i])));
  return e;
}

template <typename T>
double max_rel_err(const T* a, const std::vector<double>& b) {
  return max_rel_err(std::vector<T>(a, a + b.size()), b);
}

// ---------------------------------------------------------------------------------------------
// Hand-computed case: one channel holding 1, 2, 3, 4 (mean 2.5, biased variance 1.25).

TEST(CpuNorm, BatchNormHandComputed) {
  const NormShape s{1, 4, 1};
  const std::vector<double> x{1, 2, 3, 4};
  const double is = 1.0 / std::sqrt(1.25 + kEps);
  auto y = poisoned<double>(4), mean = poisoned<double>(1), invstd = poisoned<double>(1);
  kc::batch_norm_forward_train<double>(s, x.data(), nullptr, nullptr, kEps, y.data(), mean.data(),
                                       invstd.data());
  EXPECT_DOUBLE_EQ(mean[0], 2.5);
  EXPECT_NEAR(invstd[0], is, 1e-14);
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(y[i], (x[i] - 2.5) * is, 1e-14);

  const std::vector<double> gamma{2.0}, beta{-1.0};
  kc::batch_norm_forward_train<double>(s, x.data(), gamma.data(), beta.data(), kEps, y.data(),
                                       mean.data(), invstd.data());
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(y[i], 2.0 * (x[i] - 2.5) * is - 1.0, 1e-14);

  // The same numbers as float: with 1, 2, 3, 4 every step is exact or nearly so.
  const std::vector<float> xf{1, 2, 3, 4};
  auto yf = poisoned<float>(4), mf = poisoned<float>(1), isf = poisoned<float>(1);
  kc::batch_norm_forward_train<float>(s, xf.data(), nullptr, nullptr, kEps, yf.data(), mf.data(),
                                      isf.data());
  EXPECT_FLOAT_EQ(mf[0], 2.5f);
  EXPECT_FLOAT_EQ(isf[0], static_cast<float>(is));
  for (int i = 0; i < 4; ++i) EXPECT_FLOAT_EQ(yf[i], static_cast<float>((x[i] - 2.5) * is));
}

TEST(CpuNorm, InstanceNormHandComputed) {
  // Two images, two channels: image 0 channel 0 is 1,2,3,4; channel 1 is 10 * that; image 1 is
  // image 0 shifted by 100 (so statistics must be per image).
  const NormShape s{2, 4, 2};
  std::vector<double> x(16);
  for (int i = 0; i < 2; ++i)
    for (int r = 0; r < 4; ++r) {
      x[(i * 4 + r) * 2 + 0] = (r + 1) + 100.0 * i;
      x[(i * 4 + r) * 2 + 1] = 10.0 * (r + 1) + 100.0 * i;
    }
  auto y = poisoned<double>(16), mean = poisoned<double>(4), invstd = poisoned<double>(4);
  kc::instance_norm_forward<double>(s, x.data(), nullptr, nullptr, kEps, y.data(), mean.data(),
                                    invstd.data());
  EXPECT_DOUBLE_EQ(mean[0], 2.5);
  EXPECT_DOUBLE_EQ(mean[1], 25.0);
  EXPECT_DOUBLE_EQ(mean[2], 102.5);
  EXPECT_DOUBLE_EQ(mean[3], 125.0);
  EXPECT_NEAR(invstd[0], 1.0 / std::sqrt(1.25 + kEps), 1e-14);
  EXPECT_NEAR(invstd[1], 1.0 / std::sqrt(125.0 + kEps), 1e-14);
  EXPECT_NEAR(invstd[2], invstd[0], 1e-14);
  for (int i = 0; i < 2; ++i)
    for (int r = 0; r < 4; ++r) {
      EXPECT_NEAR(y[(i * 4 + r) * 2 + 0], (r + 1 - 2.5) * invstd[0], 1e-12);
      EXPECT_NEAR(y[(i * 4 + r) * 2 + 1], 10.0 * (r + 1 - 2.5) * invstd[1], 1e-12);
    }
}

// hw == 1: every instance has variance 0, so the output is beta and nothing may be NaN.
TEST(CpuNorm, InstanceNormSinglePixelGivesBeta) {
  const NormShape s{3, 1, 4};
  std::mt19937_64 rng(7);
  const auto x = random_vec<float>(rng, 12, 0.0, 3.0);
  const std::vector<float> gamma{1.5f, -2.0f, 0.5f, 3.0f}, beta{0.25f, -1.0f, 2.0f, 0.0f};
  auto y = poisoned<float>(12), mean = poisoned<float>(12), invstd = poisoned<float>(12);
  kc::instance_norm_forward<float>(s, x.data(), gamma.data(), beta.data(), kEps, y.data(),
                                   mean.data(), invstd.data());
  expect_finite(y, "y");
  expect_finite(invstd, "invstd");
  for (int64_t i = 0; i < 12; ++i) {
    EXPECT_EQ(y[i], beta[i % 4]);
    EXPECT_EQ(mean[i], x[i]);
  }
  const auto dy = random_vec<float>(rng, 12, 0.0, 1.0);
  auto dx = poisoned<float>(12), dgamma = poisoned<float>(4), dbeta = poisoned<float>(4);
  kc::instance_norm_backward<float>(s, x.data(), dy.data(), gamma.data(), mean.data(),
                                    invstd.data(), dx.data(), dgamma.data(), dbeta.data());
  for (int64_t i = 0; i < 12; ++i) EXPECT_EQ(dx[i], 0.0f);
  for (int64_t j = 0; j < 4; ++j) {
    EXPECT_EQ(dgamma[j], 0.0f);
    EXPECT_NEAR(dbeta[j], dy[j] + dy[4 + j] + dy[8 + j], 1e-6);
  }
}

// ---------------------------------------------------------------------------------------------
// Against the naive reference on random data.

std::vector<NormShape> reference_shapes() {
  return {
      {2, 5, 1},     // one channel
      {3, 7, 3},     // three channels
      {2, 9, 64},    // many channels
      {4, 1, 8},     // hw == 1
      {1, 16, 5},    // n == 1
      {1, 1, 512},   // n == 1 and hw == 1 (batch norm: variance 0)
      {2, 256, 64},  // big enough for the multi-threaded paths
      {1, 1024, 72}, // instance norm splits the channels into blocks (72 = 4 * 16 + 8)
      {3, 4096, 3},  // long, narrow
  };
}

template <typename T>
void check_against_reference(double tol) {
  std::mt19937_64 rng(1234);
  for (const NormShape& s : reference_shapes()) {
    for (bool affine : {false, true}) {
      SCOPED_TRACE(shape_str(s) + (affine ? " affine" : " no affine"));
      const int64_t size = s.n * s.hw * s.c;
      const auto x = random_input<T>(rng, s);
      const auto dy = random_vec<T>(rng, size, 0.1, 1.0);
      const auto gv = random_vec<T>(rng, s.c, 1.0, 0.3), bv = random_vec<T>(rng, s.c, 0.0, 0.5);
      const T* gamma = affine ? gv.data() : nullptr;
      const T* beta = affine ? bv.data() : nullptr;

      // ---- batch norm, training mode
      {
        const RefStats st = ref_stats(s, x, false, kEps);
        auto y = poisoned<T>(size), mean = poisoned<T>(s.c), invstd = poisoned<T>(s.c);
        kc::batch_norm_forward_train<T>(s, x.data(), gamma, beta, kEps, y.data(), mean.data(),
                                        invstd.data());
        expect_finite(y, "bn y");
        expect_finite(mean, "bn mean");
        expect_finite(invstd, "bn invstd");
        EXPECT_LT(max_rel_err(y, ref_forward(s, x, st, false, gamma, beta)), tol);
        EXPECT_LT(max_rel_err(mean, st.mean), tol);
        // invstd can be as large as 1/sqrt(eps) (variance 0): compare relatively.
        for (int64_t j = 0; j < s.c; ++j)
          EXPECT_NEAR(invstd[j] / st.invstd[j], 1.0, tol) << "channel " << j;

        auto dx = poisoned<T>(size), dgamma = poisoned<T>(s.c), dbeta = poisoned<T>(s.c);
        kc::batch_norm_backward_train<T>(s, x.data(), dy.data(), gamma, mean.data(),
                                         invstd.data(), dx.data(), dgamma.data(), dbeta.data());
        expect_finite(dx, "bn dx");
        expect_finite(dgamma, "bn dgamma");
        expect_finite(dbeta, "bn dbeta");
        const RefGrads g = ref_backward_train(s, x, dy, st, false, gamma);
        EXPECT_LT(max_rel_err(dx, g.dx), tol);
        // Sums over n*hw terms: scale the tolerance by the sum of magnitudes.
        const double sum_tol = tol * std::sqrt(static_cast<double>(s.n * s.hw));
        EXPECT_LT(max_rel_err(dgamma, g.dgamma), sum_tol);
        EXPECT_LT(max_rel_err(dbeta, g.dbeta), sum_tol);

        // Without dgamma/dbeta, dx is identical.
        auto dx2 = poisoned<T>(size);
        kc::batch_norm_backward_train<T>(s, x.data(), dy.data(), gamma, mean.data(),
                                         invstd.data(), dx2.data(), nullptr, nullptr);
        EXPECT_EQ(dx2, dx);
      }

      // ---- batch norm, eval mode (running statistics given)
      {
        const auto rmean = random_vec<T>(rng, s.c, 0.2, 0.5);
        std::vector<T> rvar(static_cast<size_t>(s.c));
        std::uniform_real_distribution<double> u(0.2, 3.0);
        for (auto& v : rvar) v = static_cast<T>(u(rng));
        RefStats st;
        for (int64_t j = 0; j < s.c; ++j) {
          st.mean.push_back(static_cast<double>(rmean[j]));
          st.invstd.push_back(1.0 / std::sqrt(static_cast<double>(rvar[j]) + kEps));
        }
        auto y = poisoned<T>(size);
        kc::batch_norm_forward_eval<T>(s, x.data(), gamma, beta, rmean.data(), rvar.data(), kEps,
                                       y.data());
        expect_finite(y, "bn eval y");
        EXPECT_LT(max_rel_err(y, ref_forward(s, x, st, false, gamma, beta)), tol);

        auto dx = poisoned<T>(size), dgamma = poisoned<T>(s.c), dbeta = poisoned<T>(s.c);
        kc::batch_norm_backward_eval<T>(s, x.data(), dy.data(), gamma, rmean.data(), rvar.data(),
                                        kEps, dx.data(), dgamma.data(), dbeta.data());
        expect_finite(dx, "bn eval dx");
        expect_finite(dgamma, "bn eval dgamma");
        expect_finite(dbeta, "bn eval dbeta");
        std::vector<double> rdx(size), rdg(s.c, 0.0), rdb(s.c, 0.0);
        for (int64_t r = 0; r < s.n * s.hw; ++r)
          for (int64_t j = 0; j < s.c; ++j) {
            const int64_t i = r * s.c + j;
            const double d = static_cast<double>(dy[i]);
            rdx[i] = d * gam(gamma, j) * st.invstd[j];
            rdg[j] += d * (static_cast<double>(x[i]) - st.mean[j]) * st.invstd[j];
            rdb[j] += d;
          }
        EXPECT_LT(max_rel_err(dx, rdx), tol);
        const double sum_tol = tol * std::sqrt(static_cast<double>(s.n * s.hw));
        EXPECT_LT(max_rel_err(dgamma, rdg), sum_tol);
        EXPECT_LT(max_rel_err(dbeta, rdb), sum_tol);

        auto dx2 = poisoned<T>(size);
        kc::batch_norm_backward_eval<T>(s, x.data(), dy.data(), gamma, rmean.data(), rvar.data(),
                                        kEps, dx2.data(), nullptr, nullptr);
        EXPECT_EQ(dx2, dx);
      }

      // ---- instance norm
      {
        const RefStats st = ref_stats(s, x, true, kEps);
        auto y = poisoned<T>(size), mean = poisoned<T>(s.n * s.c), invstd = poisoned<T>(s.n * s.c);
        kc::instance_norm_forward<T>(s, x.data(), gamma, beta, kEps, y.data(), mean.data(),
                                     invstd.data());
        expect_finite(y, "in y");
        expect_finite(mean, "in mean");
        expect_finite(invstd, "in invstd");
        EXPECT_LT(max_rel_err(y, ref_forward(s, x, st, true, gamma, beta)), tol);
        EXPECT_LT(max_rel_err(mean, st.mean), tol);
        for (int64_t j = 0; j < s.n * s.c; ++j)
          EXPECT_NEAR(invstd[j] / st.invstd[j], 1.0, tol) << "instance/channel " << j;

        auto dx = poisoned<T>(size), dgamma = poisoned<T>(s.c), dbeta = poisoned<T>(s.c);
        kc::instance_norm_backward<T>(s, x.data(), dy.data(), gamma, mean.data(), invstd.data(),
                                      dx.data(), dgamma.data(), dbeta.data());
        expect_finite(dx, "in dx");
        expect_finite(dgamma, "in dgamma");
        expect_finite(dbeta, "in dbeta");
        const RefGrads g = ref_backward_train(s, x, dy, st, true, gamma);
        EXPECT_LT(max_rel_err(dx, g.dx), tol);
        const double sum_tol = tol * std::sqrt(static_cast<double>(s.n * s.hw));
        EXPECT_LT(max_rel_err(dgamma, g.dgamma), sum_tol);
        EXPECT_LT(max_rel_err(dbeta, g.dbeta), sum_tol);

        auto dx2 = poisoned<T>(size);
        kc::instance_norm_backward<T>(s, x.data(), dy.data(), gamma, mean.data(), invstd.data(),
                                      dx2.data(), nullptr, nullptr);
        EXPECT_EQ(dx2, dx);
      }
    }
  }
}

TEST(CpuNorm, MatchesReferenceDouble) { check_against_reference<double>(1e-12); }
TEST(CpuNorm, MatchesReferenceFloat) { check_against_reference<float>(2e-5); }

// A large common offset (mean 1000, std 1) must not destroy the variance of float inputs.
TEST(CpuNorm, VarianceIsStableUnderLargeOffset) {
  const NormShape s{2, 2048, 8};
  std::mt19937_64 rng(99);
  const auto x = random_vec<float>(rng, s.n * s.hw * s.c, 1000.0, 1.0);
  const RefStats bst = ref_stats(s, x, false, kEps), ist = ref_stats(s, x, true, kEps);
  auto y = poisoned<float>(s.n * s.hw * s.c), mean = poisoned<float>(s.n * s.c),
       invstd = poisoned<float>(s.n * s.c);
  kc::batch_norm_forward_train<float>(s, x.data(), nullptr, nullptr, kEps, y.data(), mean.data(),
                                      invstd.data());
  for (int64_t j = 0; j < s.c; ++j) EXPECT_NEAR(invstd[j] / bst.invstd[j], 1.0, 1e-6);
  EXPECT_LT(max_rel_err(y, ref_forward(s, x, bst, false, (const float*)nullptr,
                                       (const float*)nullptr)),
            1e-5);
  kc::instance_norm_forward<float>(s, x.data(), nullptr, nullptr, kEps, y.data(), mean.data(),
                                   invstd.data());
  for (int64_t j = 0; j < s.n * s.c; ++j) EXPECT_NEAR(invstd[j] / ist.invstd[j], 1.0, 1e-6);
  EXPECT_LT(max_rel_err(y, ref_forward(s, x, ist, true, (const float*)nullptr,
                                       (const float*)nullptr)),
            1e-5);
}

// ---------------------------------------------------------------------------------------------
// Finite-difference gradient checks (double), loss L = sum(y * r) for a random projection r.

enum class Mode { kBatchTrain, kBatchEval, kInstance };

struct FdProblem {
  NormShape s;
  Mode mode;
  std::vector<double> x, gamma, beta, r, rmean, rvar;

  double loss() const {
    const int64_t size = s.n * s.hw * s.c;
    const int64_t stats = mode == Mode::kInstance ? s.n * s.c : s.c;
    std::vector<double> y(size), mean(stats), invstd(stats);
    switch (mode) {
      case Mode::kBatchTrain:
        kc::batch_norm_forward_train<double>(s, x.data(), gamma.data(), beta.data(), kEps,
                                             y.data(), mean.data(), invstd.data());
        break;
      case Mode::kBatchEval:
        kc::batch_norm_forward_eval<double>(s, x.data(), gamma.data(), beta.data(), rmean.data(),
                                            rvar.data(), kEps, y.data());
        break;
      case Mode::kInstance:
        kc::instance_norm_forward<double>(s, x.data(), gamma.data(), beta.data(), kEps, y.data(),
                                          mean.data(), invstd.data());
        break;
    }
    double l = 0;
    for (int64_t i = 0; i < size; ++i) l += y[i] * r[i];
    return l;
  }

  // Analytic gradients: forward (for the saved statistics) then backward with dy = r.
  void grads(std::vector<double>& dx, std::vector<double>& dgamma,
             std::vector<double>& dbeta) const {
    const int64_t size = s.n * s.hw * s.c;
    const int64_t stats = mode == Mode::kInstance ? s.n * s.c : s.c;
    auto y = poisoned<double>(size), mean = poisoned<double>(stats),
         invstd = poisoned<double>(stats);
    dx = poisoned<double>(size);
    dgamma = poisoned<double>(s.c);
    dbeta = poisoned<double>(s.c);
    switch (mode) {
      case Mode::kBatchTrain:
        kc::batch_norm_forward_train<double>(s, x.data(), gamma.data(), beta.data(), kEps,
                                             y.data(), mean.data(), invstd.data());
        kc::batch_norm_backward_train<double>(s, x.data(), r.data(), gamma.data(), mean.data(),
                                              invstd.data(), dx.data(), dgamma.data(),
                                              dbeta.data());
        break;
      case Mode::kBatchEval:
        kc::batch_norm_backward_eval<double>(s, x.data(), r.data(), gamma.data(), rmean.data(),
                                             rvar.data(), kEps, dx.data(), dgamma.data(),
                                             dbeta.data());
        break;
      case Mode::kInstance:
        kc::instance_norm_forward<double>(s, x.data(), gamma.data(), beta.data(), kEps, y.data(),
                                          mean.data(), invstd.data());
        kc::instance_norm_backward<double>(s, x.data(), r.data(), gamma.data(), mean.data(),
                                           invstd.data(), dx.data(), dgamma.data(), dbeta.data());
        break;
    }
  }
};

// Central differences of p.loss() with respect to each entry of *param.
std::vector<double> numeric_grad(FdProblem& p, std::vector<double>* param, double h) {
  std::vector<double> g(param->size());
  for (size_t i = 0; i < param->size(); ++i) {
    const double keep = (*param)[i];
    (*param)[i] = keep + h;
    const double lp = p.loss();
    (*param)[i] = keep - h;
    const double lm = p.loss();
    (*param)[i] = keep;
    g[i] = (lp - lm) / (2 * h);
  }
  return g;
}

void expect_grad_close(const std::vector<double>& analytic, const std::vector<double>& numeric,
                       const char* what) {
  ASSERT_EQ(analytic.size(), numeric.size());
  for (size_t i = 0; i < analytic.size(); ++i) {
    ASSERT_TRUE(std::isfinite(analytic[i])) << what << "[" << i << "]";
    const double scale = std::max(std::abs(analytic[i]), std::abs(numeric[i]));
    EXPECT_LE(std::abs(analytic[i] - numeric[i]), 1e-6 * scale + 1e-8)
        << what << "[" << i << "]: analytic " << analytic[i] << " numeric " << numeric[i];
  }
}

void check_fd(Mode mode, const NormShape& s, uint64_t seed) {
  SCOPED_TRACE(shape_str(s));
  std::mt19937_64 rng(seed);
  FdProblem p;
  p.s = s;
  p.mode = mode;
  const int64_t size = s.n * s.hw * s.c;
  p.x = random_input<double>(rng, s);
  p.gamma = random_vec<double>(rng, s.c, 1.0, 0.4);
  p.beta = random_vec<double>(rng, s.c, 0.0, 0.5);
  p.r = random_vec<double>(rng, size, 0.0, 1.0);
  p.rmean = random_vec<double>(rng, s.c, 0.1, 0.5);
  std::uniform_real_distribution<double> u(0.3, 2.0);
  for (int64_t j = 0; j < s.c; ++j) p.rvar.push_back(u(rng));

  std::vector<double> dx, dgamma, dbeta;
  p.grads(dx, dgamma, dbeta);
  const double h = 1e-6;
  expect_grad_close(dx, numeric_grad(p, &p.x, h), "dx");
  expect_grad_close(dgamma, numeric_grad(p, &p.gamma, h), "dgamma");
  expect_grad_close(dbeta, numeric_grad(p, &p.beta, h), "dbeta");
}

TEST(CpuNorm, BatchNormTrainGradientFiniteDifference) {
  check_fd(Mode::kBatchTrain, {2, 3, 3}, 11);
  check_fd(Mode::kBatchTrain, {1, 5, 1}, 12);
  check_fd(Mode::kBatchTrain, {3, 2, 4}, 13);
}

TEST(CpuNorm, BatchNormEvalGradientFiniteDifference) {
  check_fd(Mode::kBatchEval, {2, 3, 3}, 21);
  check_fd(Mode::kBatchEval, {1, 1, 5}, 22);
}

TEST(CpuNorm, InstanceNormGradientFiniteDifference) {
  check_fd(Mode::kInstance, {2, 4, 3}, 31);
  check_fd(Mode::kInstance, {1, 6, 2}, 32);
  check_fd(Mode::kInstance, {3, 1, 2}, 33);  // hw == 1: gradients w.r.t. x and gamma are 0
}

}  // namespace
