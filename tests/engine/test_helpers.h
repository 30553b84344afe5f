// Shared test utilities: random tensors and a float64 finite-difference gradient checker.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "engine/roentgen.h"

namespace rg::testing {

// Random normal f64 tensor (deterministic per seed) that requires grad when asked.
inline Tensor random_tensor(const Shape& shape, uint64_t seed, bool requires_grad = true,
                            DType dtype = DType::F64) {
  Generator gen(seed);
  Tensor t = Tensor::empty(shape, dtype);
  normal_(t, 0.0, 1.0, gen);
  if (requires_grad) t.set_requires_grad(true);
  return t;
}

// Checks d(loss)/d(input) for every element of every input that requires grad against central
// differences of `loss` (a scalar-valued function of the inputs), all in float64.
inline void expect_gradients_match(const std::function<Tensor(const std::vector<Tensor>&)>& loss,
                                   std::vector<Tensor> inputs, double step = 1e-6,
                                   double rtol = 1e-5, double atol = 1e-7) {
  for (Tensor& t : inputs) {
    ASSERT_EQ(t.dtype(), DType::F64) << "gradient checks run in float64";
    t.zero_grad();
  }
  Tensor out = loss(inputs);
  ASSERT_EQ(out.numel(), 1);
  out.backward();
  NoGradGuard no_grad;
  for (size_t k = 0; k < inputs.size(); ++k) {
    Tensor& t = inputs[k];
    if (!t.requires_grad()) continue;
    Tensor analytic = t.grad();
    ASSERT_TRUE(analytic.defined()) << "input " << k << " got no gradient";
    const std::vector<double> a = analytic.to_vector<double>();
    double* p = t.data<double>();
    for (int64_t i = 0; i < t.numel(); ++i) {
      const double saved = p[i];
      p[i] = saved + step;
      const double plus = loss(inputs).item();
      p[i] = saved - step;
      const double minus = loss(inputs).item();
      p[i] = saved;
      const double numeric = (plus - minus) / (2 * step);
      ASSERT_NEAR(a[i], numeric, atol + rtol * std::abs(numeric))
          << "input " << k << " element " << i << " of shape " << shape_str(t.shape());
    }
  }
}

// sum(f(x) * r) for a fixed random r: turns any tensor op into a scalar with a non-trivial
// upstream gradient.
inline Tensor project(const Tensor& y, uint64_t seed) {
  Tensor r = random_tensor(y.shape(), seed, false, y.dtype());
  return sum(mul(y, r));
}

inline void expect_all_close(const Tensor& actual, const std::vector<double>& expected,
                             double tol = 1e-6) {
  const std::vector<double> a = actual.to_vector<double>();
  ASSERT_EQ(a.size(), expected.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_NEAR(a[i], expected[i], tol) << "element " << i;
  }
}

}  // namespace rg::testing
