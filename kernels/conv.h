// Convolution kernels over raw pointers. Layouts: activations NHWC, weights OHWI
// ([c_out][kh][kw][c_in]), bias [c_out]. Every backend declares the same three entry points;
// conv_transpose2d is expressed through them (its forward is conv2d_backward_data of the adjoint
// convolution), so no backend needs separate transposed-convolution kernels.
#pragma once

#include <cstdint>

namespace rg::kernels {

struct Conv2dShape {
  int64_t n = 1, h = 1, w = 1, c_in = 1;  // input [n][h][w][c_in]
  int64_t c_out = 1, kh = 1, kw = 1;      // weight [c_out][kh][kw][c_in]
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_h = 0, pad_w = 0;

  int64_t out_h() const { return (h + 2 * pad_h - kh) / stride_h + 1; }
  int64_t out_w() const { return (w + 2 * pad_w - kw) / stride_w + 1; }
  // Multiply-accumulates of one forward pass (also of each backward pass).
  int64_t macs() const { return n * out_h() * out_w() * c_out * kh * kw * c_in; }
};

namespace cpu {

// y[n][oh][ow][co] = bias[co] + sum_{kh,kw,ci} x[n][oh*s-p+kh][ow*s-p+kw][ci] * w[co][kh][kw][ci]
// bias may be null. y is overwritten.
template <typename T>
void conv2d_forward(const Conv2dShape& s, const T* x, const T* w, const T* bias, T* y);

// dx = gradient of the forward w.r.t. x given dy [n][out_h][out_w][c_out]. dx is overwritten.
template <typename T>
void conv2d_backward_data(const Conv2dShape& s, const T* dy, const T* w, T* dx);

// dw = gradient w.r.t. w (overwritten); dbias (may be null) = sum of dy over n, oh, ow (overwritten).
template <typename T>
void conv2d_backward_weight(const Conv2dShape& s, const T* x, const T* dy, T* dw, T* dbias);

}  // namespace cpu
}  // namespace rg::kernels
