#include "engine/cuda/conv_dispatch.h"

#include <type_traits>

#include "engine/conv_backend.h"
#include "engine/cuda/cudnn_common.h"
#include "engine/cuda/cudnn_conv.h"
#include "engine/cuda/runtime.h"

namespace rg::cuda {

namespace {

namespace kc = kernels::cuda;
using kernels::Conv2dShape;

constexpr int kTimedRuns = 3;

template <typename T>
constexpr DType dtype_of_elem() {
  if constexpr (std::is_same_v<T, float>) {
    return DType::F32;
  } else {
    static_assert(std::is_same_v<T, kc::bf16>, "float or bf16");
    return DType::BF16;
  }
}

// Mean device time of one run in milliseconds, after a warm-up run; -1 when `run` reports the
// case unsupported (returns false).
template <typename Run>
double time_ms(cudaStream_t stream, Run&& run) {
  if (!run()) return -1.0;
  Event start(/*timing=*/true), stop(/*timing=*/true);
  start.record(stream);
  for (int i = 0; i < kTimedRuns; ++i) {
    if (!run()) return -1.0;
  }
  stop.record(stream);
  stop.synchronize();
  return static_cast<double>(stop.elapsed_ms(start)) / kTimedRuns;
}

// own(): runs our kernels. library(): runs the library path, false when it cannot.
template <typename Own, typename Library>
void dispatch(ConvDirection direction, int device, const Conv2dShape& s, DType dtype,
              kc::ConvMath math, cudaStream_t stream, Own&& own, Library&& library) {
  switch (conv_backend()) {
    case ConvBackend::Own:
      own();
      return;
    case ConvBackend::Cudnn:
      if (!library()) own();
      return;
    case ConvBackend::Auto:
      break;
  }
  const ConvTuneKey key =
      make_conv_tune_key(device, direction, s, dtype, math == kc::ConvMath::Tf32);
  ConvBackend winner = ConvBackend::Own;
  if (stream_is_capturing(stream)) {
    if (const auto known = conv_autotune_cache().lookup(key)) winner = known->winner;
  } else {
    winner = conv_autotune_cache().choose(
        key,
        [&] {
          return time_ms(stream, [&] {
            own();
            return true;
          });
        },
        [&] { return time_ms(stream, library); });
  }
  if (winner == ConvBackend::Cudnn && library()) return;
  own();
}

}  // namespace

template <typename T>
void conv2d_forward(int device, const Conv2dShape& s, const T* x, const T* w, const float* bias,
                    T* y, kc::ConvMath math, cudaStream_t stream) {
  dispatch(
      ConvDirection::Forward, device, s, dtype_of_elem<T>(), math, stream,
      [&] { kc::conv2d_forward<T>(s, x, w, bias, y, math, stream); },
      [&] { return library_conv2d_forward<T>(device, s, x, w, bias, y, math, stream); });
}

template <typename T>
void conv2d_backward_data(int device, const Conv2dShape& s, const T* dy, const T* w, T* dx,
                          kc::ConvMath math, cudaStream_t stream) {
  dispatch(
      ConvDirection::BackwardData, device, s, dtype_of_elem<T>(), math, stream,
      [&] { kc::conv2d_backward_data<T>(s, dy, w, dx, math, stream); },
      [&] { return library_conv2d_backward_data<T>(device, s, dy, w, dx, math, stream); });
}

template <typename T>
void conv2d_backward_weight(int device, const Conv2dShape& s, const T* x, const T* dy, float* dw,
                            float* dbias, kc::ConvMath math, cudaStream_t stream) {
  dispatch(
      ConvDirection::BackwardWeight, device, s, dtype_of_elem<T>(), math, stream,
      [&] { kc::conv2d_backward_weight<T>(s, x, dy, dw, dbias, math, stream); },
      [&] { return library_conv2d_backward_weight<T>(device, s, x, dy, dw, dbias, math, stream); });
}

#define RG_INSTANTIATE_CONV_DISPATCH(T)                                                          \
  template void conv2d_forward<T>(int, const Conv2dShape&, const T*, const T*, const float*, T*, \
                                  kc::ConvMath, cudaStream_t);                                   \
  template void conv2d_backward_data<T>(int, const Conv2dShape&, const T*, const T*, T*,         \
                                        kc::ConvMath, cudaStream_t);                             \
  template void conv2d_backward_weight<T>(int, const Conv2dShape&, const T*, const T*, float*,   \
                                          float*, kc::ConvMath, cudaStream_t);
RG_INSTANTIATE_CONV_DISPATCH(float)
RG_INSTANTIATE_CONV_DISPATCH(kc::bf16)
#undef RG_INSTANTIATE_CONV_DISPATCH

}  // namespace rg::cuda
