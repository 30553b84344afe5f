// Elementwise arithmetic, activations and reductions over raw pointers.
#pragma once

#include <cstdint>

namespace rg::kernels {

// A binary op's iteration space padded to 5 dimensions; the output is contiguous, the inputs
// are read through strides (0 along broadcast dimensions).
struct BroadcastShape {
  int64_t shape[5];
  int64_t a_strides[5];
  int64_t b_strides[5];
  int64_t numel() const { return shape[0] * shape[1] * shape[2] * shape[3] * shape[4]; }
};

enum class BinaryOp { Add, Sub, Mul, Div };
enum class UnaryOp { Neg, Exp, Log, Sqrt, Square, AddScalar, MulScalar };
// For ReLU/LeakyReLU the backward reads the forward output y (y > 0 exactly where x > 0 for a
// non-negative slope), so every activation saves only its output.
enum class Activation { ReLU, LeakyReLU, Sigmoid, Tanh };

namespace cpu {

template <typename T>
void binary_forward(BinaryOp op, const BroadcastShape& s, const T* a, const T* b, T* out);

// y = op(x) (scalar used by AddScalar/MulScalar).
template <typename T>
void unary_forward(UnaryOp op, double scalar, int64_t n, const T* x, T* y);

template <typename T>
void activation_forward(Activation act, double negative_slope, int64_t n, const T* x, T* y);
// dx = dy * act'(x), computed from the forward output y.
template <typename T>
void activation_backward(Activation act, double negative_slope, int64_t n, const T* y, const T* dy,
                         T* dx);

// out[r] = sum_c x[r*cols + c]  (reduce the innermost dimension)
template <typename T>
void sum_rows(int64_t rows, int64_t cols, const T* x, T* out);
// out[c] = sum_r x[r*cols + c]  (reduce the outermost dimension, e.g. over N*H*W in NHWC)
template <typename T>
void sum_columns(int64_t rows, int64_t cols, const T* x, T* out);

// dst[i] += src[i]
template <typename T>
void accumulate(int64_t n, const T* src, T* dst);

}  // namespace cpu
}  // namespace rg::kernels
