#include "train/distribution_metrics.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "data/rng.h"
#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/nn/init.h"
#include "engine/nn/layers.h"
#include "engine/ops/ops.h"

// LAPACK's symmetric eigensolver, from the BLAS library the engine links (OpenBLAS ships LAPACK).
// Fortran calling convention: every argument by pointer, hidden lengths of the character ones.
extern "C" void dsyev_(const char* jobz, const char* uplo, const int* n, double* a, const int* lda,
                       double* w, double* work, const int* lwork, int* info, size_t jobz_len,
                       size_t uplo_len);

namespace rg::train {

namespace {

// Eigen-decomposition of the symmetric d x d matrix `a` (row-major; overwritten by the
// eigenvectors, one per column of the column-major result, i.e. one per row here) into values.
std::vector<double> symmetric_eigen(std::vector<double>& a, int64_t d) {
  const int n = static_cast<int>(d);
  std::vector<double> w(static_cast<size_t>(d));
  int info = 0, lwork = -1;
  double query = 0;
  // OpenBLAS sizes its team from omp_get_max_threads(): one thread keeps the rounding the same
  // for any thread count, as in the convolutions (kernels/cpu/conv.cpp). The setting is scoped
  // to this one-thread region.
#pragma omp parallel num_threads(1)
  {
    omp_set_num_threads(1);
    dsyev_("V", "U", &n, a.data(), &n, w.data(), &query, &lwork, &info, 1, 1);
    if (info == 0) {
      lwork = static_cast<int>(query);
      std::vector<double> work(static_cast<size_t>(std::max(1, lwork)));
      dsyev_("V", "U", &n, a.data(), &n, w.data(), work.data(), &lwork, &info, 1, 1);
    }
  }
  RG_CHECK(info == 0, "frechet_distance: LAPACK dsyev failed (info ", info, ")");
  return w;
}

// Mean [d] and covariance [d, d] (divided by n - 1) of n rows.
void moments(const std::vector<double>& x, int64_t n, int64_t d, std::vector<double>& mean,
             std::vector<double>& cov) {
  mean.assign(static_cast<size_t>(d), 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < d; ++j) mean[static_cast<size_t>(j)] += x[static_cast<size_t>(i * d + j)];
  for (double& m : mean) m /= static_cast<double>(n);
  cov.assign(static_cast<size_t>(d * d), 0.0);
  std::vector<double> c(static_cast<size_t>(d));
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < d; ++j) c[static_cast<size_t>(j)] = x[static_cast<size_t>(i * d + j)] - mean[static_cast<size_t>(j)];
    for (int64_t j = 0; j < d; ++j)
      for (int64_t k = j; k < d; ++k) cov[static_cast<size_t>(j * d + k)] += c[static_cast<size_t>(j)] * c[static_cast<size_t>(k)];
  }
  for (int64_t j = 0; j < d; ++j) {
    for (int64_t k = j; k < d; ++k) {
      const double v = cov[static_cast<size_t>(j * d + k)] / static_cast<double>(n - 1);
      cov[static_cast<size_t>(j * d + k)] = v;
      cov[static_cast<size_t>(k * d + j)] = v;
    }
  }
}

int64_t rows_of(const std::vector<double>& x, int64_t d, const char* what) {
  RG_CHECK(d > 0, what, ": feature dimension must be positive, got ", d);
  RG_CHECK(x.size() % static_cast<size_t>(d) == 0, what, ": ", x.size(), " values are not rows of ", d);
  return static_cast<int64_t>(x.size()) / d;
}

double cubic_kernel(const double* x, const double* y, int64_t d) {
  double dot = 0;
  for (int64_t j = 0; j < d; ++j) dot += x[j] * y[j];
  const double v = dot / static_cast<double>(d) + 1.0;
  return v * v * v;
}

}  // namespace

double frechet_distance(const std::vector<double>& a, const std::vector<double>& b, int64_t d) {
  const int64_t na = rows_of(a, d, "frechet_distance"), nb = rows_of(b, d, "frechet_distance");
  RG_CHECK(na >= 2 && nb >= 2, "frechet_distance: need at least 2 samples per set, got ", na, " and ", nb);
  std::vector<double> mu_a, mu_b, s_a, s_b;
  moments(a, na, d, mu_a, s_a);
  moments(b, nb, d, mu_b, s_b);
  double mean_term = 0, trace = 0;
  for (int64_t j = 0; j < d; ++j) {
    const double diff = mu_a[static_cast<size_t>(j)] - mu_b[static_cast<size_t>(j)];
    mean_term += diff * diff;
    trace += s_a[static_cast<size_t>(j * d + j)] + s_b[static_cast<size_t>(j * d + j)];
  }
  // S_a^1/2 = V diag(sqrt(lambda)) V^T (dsyev leaves the eigenvectors as the rows of v here:
  // column-major columns read row-major).
  std::vector<double> v = s_a;
  const std::vector<double> lambda = symmetric_eigen(v, d);
  std::vector<double> root(static_cast<size_t>(d * d), 0.0);
  for (int64_t e = 0; e < d; ++e) {
    const double s = std::sqrt(std::max(0.0, lambda[static_cast<size_t>(e)]));
    if (s == 0) continue;
    const double* ve = v.data() + e * d;
    for (int64_t i = 0; i < d; ++i)
      for (int64_t j = 0; j < d; ++j) root[static_cast<size_t>(i * d + j)] += s * ve[i] * ve[j];
  }
  // M = S_a^1/2 S_b S_a^1/2 (symmetric PSD); tr(M^1/2) = sum of the roots of its eigenvalues.
  std::vector<double> tmp(static_cast<size_t>(d * d), 0.0), m(static_cast<size_t>(d * d), 0.0);
  for (int64_t i = 0; i < d; ++i)
    for (int64_t k = 0; k < d; ++k) {
      const double r = root[static_cast<size_t>(i * d + k)];
      for (int64_t j = 0; j < d; ++j) tmp[static_cast<size_t>(i * d + j)] += r * s_b[static_cast<size_t>(k * d + j)];
    }
  for (int64_t i = 0; i < d; ++i)
    for (int64_t k = 0; k < d; ++k) {
      const double t = tmp[static_cast<size_t>(i * d + k)];
      for (int64_t j = 0; j < d; ++j) m[static_cast<size_t>(i * d + j)] += t * root[static_cast<size_t>(k * d + j)];
    }
  for (int64_t i = 0; i < d; ++i)  // symmetrize away rounding before the eigensolver
    for (int64_t j = i + 1; j < d; ++j) {
      const double s = 0.5 * (m[static_cast<size_t>(i * d + j)] + m[static_cast<size_t>(j * d + i)]);
      m[static_cast<size_t>(i * d + j)] = m[static_cast<size_t>(j * d + i)] = s;
    }
  double trace_root = 0;
  for (double mu : symmetric_eigen(m, d)) trace_root += std::sqrt(std::max(0.0, mu));
  return std::max(0.0, mean_term + trace - 2.0 * trace_root);
}

KernelDistance kernel_distance(const std::vector<double>& a, const std::vector<double>& b, int64_t d,
                               int64_t subsets, int64_t subset_size, uint64_t seed) {
  const int64_t na = rows_of(a, d, "kernel_distance"), nb = rows_of(b, d, "kernel_distance");
  RG_CHECK(subsets >= 1 && subset_size >= 2, "kernel_distance: need subsets >= 1 and subset_size >= 2");
  const int64_t m = std::min({na, nb, subset_size});
  RG_CHECK(m >= 2, "kernel_distance: need at least 2 samples per set, got ", na, " and ", nb);
  // With m = n for both sets every draw is the whole set: one draw is the exact estimate.
  const int64_t draws = (m == na && m == nb) ? 1 : subsets;
  data::Rng rng(seed);
  std::vector<int64_t> ia(static_cast<size_t>(na)), ib(static_cast<size_t>(nb));
  std::vector<double> values;
  for (int64_t r = 0; r < draws; ++r) {
    std::iota(ia.begin(), ia.end(), 0);
    std::iota(ib.begin(), ib.end(), 0);
    if (draws > 1) {  // partial Fisher-Yates: the first m entries are the draw
      for (int64_t i = 0; i < m; ++i) {
        std::swap(ia[static_cast<size_t>(i)], ia[static_cast<size_t>(i + static_cast<int64_t>(rng.below(static_cast<uint64_t>(na - i))))]);
        std::swap(ib[static_cast<size_t>(i)], ib[static_cast<size_t>(i + static_cast<int64_t>(rng.below(static_cast<uint64_t>(nb - i))))]);
      }
    }
    auto row_a = [&](int64_t i) { return a.data() + ia[static_cast<size_t>(i)] * d; };
    auto row_b = [&](int64_t i) { return b.data() + ib[static_cast<size_t>(i)] * d; };
    double kaa = 0, kbb = 0, kab = 0;
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < m; ++j) {
        if (i != j) {
          kaa += cubic_kernel(row_a(i), row_a(j), d);
          kbb += cubic_kernel(row_b(i), row_b(j), d);
        }
        kab += cubic_kernel(row_a(i), row_b(j), d);
      }
    }
    const double mm = static_cast<double>(m);
    values.push_back(kaa / (mm * (mm - 1)) + kbb / (mm * (mm - 1)) - 2.0 * kab / (mm * mm));
  }
  KernelDistance out;
  out.subset_size = m;
  out.subsets = draws;
  out.mean = std::accumulate(values.begin(), values.end(), 0.0) / static_cast<double>(values.size());
  if (values.size() > 1) {
    double ss = 0;
    for (double v : values) ss += (v - out.mean) * (v - out.mean);
    out.sd = std::sqrt(ss / static_cast<double>(values.size() - 1));
  }
  return out;
}

struct FeatureEncoder::Layers {
  std::vector<std::shared_ptr<nn::Conv2d>> convs;
};

FeatureEncoder::FeatureEncoder() : layers_(std::make_unique<Layers>()) {
  Generator gen(kFeatureSeed);
  const int64_t widths[] = {1, 32, 64, 128, kFeatureDim};
  for (int i = 0; i < 4; ++i) {
    const nn::ConvOptions opts{.kernel = 4, .stride = 2, .padding = 1, .output_padding = 0, .bias = false};
    auto conv = std::make_shared<nn::Conv2d>(widths[i], widths[i + 1], opts, gen);
    // He-normal for LeakyReLU(0.2): std = sqrt(2 / ((1 + 0.2^2) fan_in)).
    const double fan_in = 16.0 * static_cast<double>(widths[i]);
    nn::init::normal(conv->weight, 0.0, std::sqrt(2.0 / (1.04 * fan_in)), gen);
    layers_->convs.push_back(conv);
  }
}

FeatureEncoder::~FeatureEncoder() = default;

std::vector<double> FeatureEncoder::features(const Tensor& images) {
  RG_CHECK(images.dim() == 4 && images.size(3) == 1 && images.size(1) >= 16 && images.size(2) >= 16,
           "FeatureEncoder: expected images [N, H, W, 1] with H, W >= 16, got ", shape_str(images.shape()));
  NoGradGuard no_grad;
  Tensor h = images.to(Device::cpu()).to(DType::F32);
  for (const auto& conv : layers_->convs) h = leaky_relu(conv->forward(h), 0.2);
  const Tensor pooled = mean(h, {1, 2}).contiguous();  // [N, C]
  const float* p = pooled.data<float>();
  return std::vector<double>(p, p + pooled.numel());
}

DistributionDistance distribution_distance(const std::vector<double>& real,
                                           const std::vector<double>& synthetic) {
  DistributionDistance out;
  out.real = static_cast<int64_t>(real.size()) / kFeatureDim;
  out.synthetic = static_cast<int64_t>(synthetic.size()) / kFeatureDim;
  out.frechet = frechet_distance(real, synthetic, kFeatureDim);
  out.kid = kernel_distance(real, synthetic, kFeatureDim);
  return out;
}

}  // namespace rg::train
