#include "kernels/elementwise.h"

#include "kernels/cpu/fixed_chunks.h"

#include <omp.h>

#include <cmath>
#include <vector>

namespace rg::kernels::cpu {

namespace {
// Below this many elements the OpenMP fork/join costs more than the loop.
constexpr int64_t kParallelGrain = 1 << 15;
}  // namespace

template <typename T>
void binary_forward(BinaryOp op, const BroadcastShape& s, const T* a, const T* b, T* out) {
  auto apply = [op](T x, T y) -> T {
    switch (op) {
      case BinaryOp::Add: return x + y;
      case BinaryOp::Sub: return x - y;
      case BinaryOp::Mul: return x * y;
      case BinaryOp::Div: return x / y;
    }
    return T(0);
  };
  const int64_t total = s.numel();
  const int64_t inner = s.shape[4];
  const int64_t outer = total / (inner == 0 ? 1 : inner);
  if (total == 0) return;
#pragma omp parallel for schedule(static) if (total > kParallelGrain)
  for (int64_t o = 0; o < outer; ++o) {
    int64_t rem = o, ao = 0, bo = 0;
    for (int d = 3; d >= 0; --d) {
      const int64_t i = rem % s.shape[d];
      rem /= s.shape[d];
      ao += i * s.a_strides[d];
      bo += i * s.b_strides[d];
    }
    T* y = out + o * inner;
    const int64_t as = s.a_strides[4], bs = s.b_strides[4];
    if (as == 1 && bs == 1) {
      for (int64_t i = 0; i < inner; ++i) y[i] = apply(a[ao + i], b[bo + i]);
    } else if (as == 1 && bs == 0) {
      const T bv = b[bo];
      for (int64_t i = 0; i < inner; ++i) y[i] = apply(a[ao + i], bv);
    } else if (as == 0 && bs == 1) {
      const T av = a[ao];
      for (int64_t i = 0; i < inner; ++i) y[i] = apply(av, b[bo + i]);
    } else {
      for (int64_t i = 0; i < inner; ++i) y[i] = apply(a[ao + i * as], b[bo + i * bs]);
    }
  }
}

template <typename T>
void unary_forward(UnaryOp op, double scalar, int64_t n, const T* x, T* y) {
  const T c = static_cast<T>(scalar);
#pragma omp parallel for schedule(static) if (n > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) {
    const T v = x[i];
    switch (op) {
      case UnaryOp::Neg: y[i] = -v; break;
      case UnaryOp::Exp: y[i] = std::exp(v); break;
      case UnaryOp::Log: y[i] = std::log(v); break;
      case UnaryOp::Sqrt: y[i] = std::sqrt(v); break;
      case UnaryOp::Square: y[i] = v * v; break;
      case UnaryOp::AddScalar: y[i] = v + c; break;
      case UnaryOp::MulScalar: y[i] = v * c; break;
    }
  }
}

template <typename T>
void activation_forward(Activation act, double negative_slope, int64_t n, const T* x, T* y) {
  const T slope = static_cast<T>(negative_slope);
  switch (act) {
    case Activation::ReLU:
#pragma omp parallel for schedule(static) if (n > kParallelGrain)
      for (int64_t i = 0; i < n; ++i) y[i] = x[i] > T(0) ? x[i] : T(0);
      break;
    case Activation::LeakyReLU:
#pragma omp parallel for schedule(static) if (n > kParallelGrain)
      for (int64_t i = 0; i < n; ++i) y[i] = x[i] > T(0) ? x[i] : x[i] * slope;
      break;
    case Activation::Sigmoid:
      // Two branches keep exp() from overflowing for large |x|.
#pragma omp parallel for schedule(static) if (n > kParallelGrain)
      for (int64_t i = 0; i < n; ++i) {
        const T v = x[i];
        if (v >= T(0)) {
          y[i] = T(1) / (T(1) + std::exp(-v));
        } else {
          const T e = std::exp(v);
          y[i] = e / (T(1) + e);
        }
      }
      break;
    case Activation::Tanh:
#pragma omp parallel for schedule(static) if (n > kParallelGrain)
      for (int64_t i = 0; i < n; ++i) y[i] = std::tanh(x[i]);
      break;
  }
}

template <typename T>
void activation_backward(Activation act, double negative_slope, int64_t n, const T* y, const T* dy,
                         T* dx) {
  const T slope = static_cast<T>(negative_slope);
  switch (act) {
    case Activation::ReLU:
#pragma omp parallel for schedule(static) if (n > kParallelGrain)
      for (int64_t i = 0; i < n; ++i) dx[i] = y[i] > T(0) ? dy[i] : T(0);
      break;
    case Activation::LeakyReLU:
#pragma omp parallel for schedule(static) if (n > kParallelGrain)
      for (int64_t i = 0; i < n; ++i) dx[i] = y[i] > T(0) ? dy[i] : dy[i] * slope;
      break;
    case Activation::Sigmoid:
#pragma omp parallel for schedule(static) if (n > kParallelGrain)
      for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * y[i] * (T(1) - y[i]);
      break;
    case Activation::Tanh:
#pragma omp parallel for schedule(static) if (n > kParallelGrain)
      for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * (T(1) - y[i] * y[i]);
      break;
  }
}

template <typename T>
void sum_rows(int64_t rows, int64_t cols, const T* x, T* out) {
#pragma omp parallel for schedule(static) if (rows * cols > kParallelGrain)
  for (int64_t r = 0; r < rows; ++r) {
    double acc = 0.0;
    const T* p = x + r * cols;
    for (int64_t c = 0; c < cols; ++c) acc += p[c];
    out[r] = static_cast<T>(acc);
  }
}

template <typename T>
void sum_columns(int64_t rows, int64_t cols, const T* x, T* out) {
  // Chunks of rows summed into their own partials, added in chunk order: the same result for
  // any thread count (kernels/cpu/fixed_chunks.h).
  std::vector<double> sums(static_cast<size_t>(std::max<int64_t>(cols, 0)), 0.0);
  chunked_row_sums(rows, cols, cols, sums.data(), [&](int64_t r0, int64_t r1, double* acc) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* p = x + r * cols;
      for (int64_t c = 0; c < cols; ++c) acc[c] += p[c];
    }
  });
  for (int64_t c = 0; c < cols; ++c) out[c] = static_cast<T>(sums[static_cast<size_t>(c)]);
}

template <typename T>
void accumulate(int64_t n, const T* src, T* dst) {
#pragma omp parallel for schedule(static) if (n > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) dst[i] += src[i];
}

#define RG_INSTANTIATE(T)                                                                      \
  template void binary_forward<T>(BinaryOp, const BroadcastShape&, const T*, const T*, T*);    \
  template void unary_forward<T>(UnaryOp, double, int64_t, const T*, T*);                      \
  template void activation_forward<T>(Activation, double, int64_t, const T*, T*);              \
  template void activation_backward<T>(Activation, double, int64_t, const T*, const T*, T*);   \
  template void sum_rows<T>(int64_t, int64_t, const T*, T*);                                   \
  template void sum_columns<T>(int64_t, int64_t, const T*, T*);                                \
  template void accumulate<T>(int64_t, const T*, T*);
RG_INSTANTIATE(float)
RG_INSTANTIATE(double)
#undef RG_INSTANTIATE

}  // namespace rg::kernels::cpu
