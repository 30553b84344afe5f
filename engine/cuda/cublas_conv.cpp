#include "engine/cuda/cublas_conv.h"

#include <climits>
#include <memory>
#include <mutex>
#include <type_traits>
#include <vector>

#include "engine/cuda/cublas_check.h"
#include "engine/cuda/cudnn_common.h"
#include "engine/cuda/runtime.h"
#include "engine/error.h"
#include "kernels/cuda/elementwise.h"

namespace rg::cuda {

namespace {

namespace kc = kernels::cuda;
using kernels::Conv2dShape;

struct DeviceHandle {
  std::mutex mutex;
  cublasHandle_t handle = nullptr;
};

// Kept for the whole process, never destroyed (see the cuDNN handles in cudnn_common.cpp).
DeviceHandle& device_handle(int device) {
  static std::mutex registry_mutex;
  static auto* registry = new std::vector<std::unique_ptr<DeviceHandle>>();
  std::lock_guard<std::mutex> lock(registry_mutex);
  if (device >= 0 && static_cast<size_t>(device) < registry->size() &&
      (*registry)[static_cast<size_t>(device)]) {
    return *(*registry)[static_cast<size_t>(device)];
  }
  int count = 0;
  RG_CUDA_CHECK(cudaGetDeviceCount(&count));
  RG_CHECK(device >= 0 && device < count, "cuBLAS: CUDA device cuda:", device, " requested, but ",
           count, " CUDA device(s) are available");
  if (registry->size() < static_cast<size_t>(count)) registry->resize(static_cast<size_t>(count));
  std::unique_ptr<DeviceHandle>& slot = (*registry)[static_cast<size_t>(device)];
  if (!slot) slot = std::make_unique<DeviceHandle>();
  return *slot;
}

// Exclusive use of the device's cuBLAS handle bound to `stream` (as CudnnHandle for cuDNN).
class CublasHandle {
 public:
  CublasHandle(int device, cudaStream_t stream) {
    check_current_device(device, "cuBLAS");
    DeviceHandle& dh = device_handle(device);
    lock_ = std::unique_lock<std::mutex>(dh.mutex);
    if (dh.handle == nullptr) {
      RG_CUBLAS_CHECK(cublasCreate(&dh.handle));
      // Default math: float inputs with CUBLAS_COMPUTE_32F stay exact fp32; TF32 is asked for
      // per call through the compute type, never through the handle.
      RG_CUBLAS_CHECK(cublasSetMathMode(dh.handle, CUBLAS_DEFAULT_MATH));
    }
    handle_ = dh.handle;
    RG_CUBLAS_CHECK(cublasSetStream(handle_, stream));
  }
  cublasHandle_t get() const { return handle_; }

 private:
  std::unique_lock<std::mutex> lock_;
  cublasHandle_t handle_ = nullptr;
};

template <typename T>
constexpr cudaDataType_t cuda_type() {
  if constexpr (std::is_same_v<T, float>) {
    return CUDA_R_32F;
  } else {
    static_assert(std::is_same_v<T, kc::bf16>, "float or bf16");
    return CUDA_R_16BF;
  }
}

template <typename T>
cublasComputeType_t compute_type(kc::ConvMath math) {
  if (std::is_same_v<T, float> && math == kc::ConvMath::Tf32) return CUBLAS_COMPUTE_32F_FAST_TF32;
  return CUBLAS_COMPUTE_32F;
}

// True on success, false on CUBLAS_STATUS_NOT_SUPPORTED, throws otherwise.
bool cublas_supports(cublasStatus_t status, const char* call, const char* file, int line) {
  if (status == CUBLAS_STATUS_SUCCESS) return true;
  if (status == CUBLAS_STATUS_NOT_SUPPORTED) return false;
  RG_FAIL(call, " failed at ", file, ":", line, ": ", cublasGetStatusName(status), ": ",
          cublasGetStatusString(status));
}
#define RG_CUBLAS_SUPPORTS(call) cublas_supports((call), #call, __FILE__, __LINE__)

// One column-major GEMM C[m][n] = alpha * op(A) * op(B) + beta * C.
struct Gemm {
  cublasOperation_t op_a, op_b;
  int m, n, k;
  const void* a;
  cudaDataType_t a_type;
  int lda;
  const void* b;
  cudaDataType_t b_type;
  int ldb;
  void* c;
  cudaDataType_t c_type;
  int ldc;
};

bool run_gemm(int device, const Gemm& g, float beta, cublasComputeType_t compute,
              cudaStream_t stream) {
  CublasHandle handle(device, stream);
  const float alpha = 1.f;
  return RG_CUBLAS_SUPPORTS(cublasGemmEx(handle.get(), g.op_a, g.op_b, g.m, g.n, g.k, &alpha, g.a,
                                         g.a_type, g.lda, g.b, g.b_type, g.ldb, &beta, g.c,
                                         g.c_type, g.ldc, compute, CUBLAS_GEMM_DEFAULT));
}

int64_t rows_of(const Conv2dShape& s) {
  return s.n * s.h * s.w;
}

}  // namespace

bool cublas_conv_is_gemm(const Conv2dShape& s) {
  if (s.kh != 1 || s.kw != 1 || s.stride_h != 1 || s.stride_w != 1 || s.pad_h != 0 ||
      s.pad_w != 0) {
    return false;
  }
  if (s.n <= 0 || s.h <= 0 || s.w <= 0 || s.c_in <= 0 || s.c_out <= 0) return false;
  // Checked factor by factor so the product cannot overflow.
  if (s.n > INT_MAX || s.h > INT_MAX / s.n || s.w > INT_MAX / (s.n * s.h)) return false;
  return s.c_in <= INT_MAX && s.c_out <= INT_MAX;
}

template <typename T>
bool cublas_conv2d_forward(int device, const Conv2dShape& s, const T* x, const T* w,
                           const float* bias, T* y, kc::ConvMath math, cudaStream_t stream) {
  if (!cublas_conv_is_gemm(s)) return false;
  const int rows = static_cast<int>(rows_of(s));
  const int c_in = static_cast<int>(s.c_in), c_out = static_cast<int>(s.c_out);
  if (bias != nullptr) fill_rows_with_bias<T>(rows, c_out, bias, y, stream);
  // y^T [c_out x rows] = (w as [c_in x c_out])^T * (x as [c_in x rows])
  const Gemm g{.op_a = CUBLAS_OP_T,
               .op_b = CUBLAS_OP_N,
               .m = c_out,
               .n = rows,
               .k = c_in,
               .a = w,
               .a_type = cuda_type<T>(),
               .lda = c_in,
               .b = x,
               .b_type = cuda_type<T>(),
               .ldb = c_in,
               .c = y,
               .c_type = cuda_type<T>(),
               .ldc = c_out};
  return run_gemm(device, g, bias != nullptr ? 1.f : 0.f, compute_type<T>(math), stream);
}

template <typename T>
bool cublas_conv2d_backward_data(int device, const Conv2dShape& s, const T* dy, const T* w, T* dx,
                                 kc::ConvMath math, cudaStream_t stream) {
  if (!cublas_conv_is_gemm(s)) return false;
  const int rows = static_cast<int>(rows_of(s));
  const int c_in = static_cast<int>(s.c_in), c_out = static_cast<int>(s.c_out);
  // dx^T [c_in x rows] = (w as [c_in x c_out]) * (dy as [c_out x rows])
  const Gemm g{.op_a = CUBLAS_OP_N,
               .op_b = CUBLAS_OP_N,
               .m = c_in,
               .n = rows,
               .k = c_out,
               .a = w,
               .a_type = cuda_type<T>(),
               .lda = c_in,
               .b = dy,
               .b_type = cuda_type<T>(),
               .ldb = c_out,
               .c = dx,
               .c_type = cuda_type<T>(),
               .ldc = c_in};
  return run_gemm(device, g, 0.f, compute_type<T>(math), stream);
}

template <typename T>
bool cublas_conv2d_backward_weight(int device, const Conv2dShape& s, const T* x, const T* dy,
                                   float* dw, float* dbias, kc::ConvMath math,
                                   cudaStream_t stream) {
  if (!cublas_conv_is_gemm(s)) return false;
  const int rows = static_cast<int>(rows_of(s));
  const int c_in = static_cast<int>(s.c_in), c_out = static_cast<int>(s.c_out);
  // dw^T [c_in x c_out] = (x as [c_in x rows]) * (dy as [c_out x rows])^T, written in fp32
  const Gemm g{.op_a = CUBLAS_OP_N,
               .op_b = CUBLAS_OP_T,
               .m = c_in,
               .n = c_out,
               .k = rows,
               .a = x,
               .a_type = cuda_type<T>(),
               .lda = c_in,
               .b = dy,
               .b_type = cuda_type<T>(),
               .ldb = c_out,
               .c = dw,
               .c_type = CUDA_R_32F,
               .ldc = c_in};
  if (!run_gemm(device, g, 0.f, compute_type<T>(math), stream)) return false;
  if (dbias != nullptr) kc::sum_columns<T>(rows, c_out, dy, dbias, stream);
  return true;
}

#define RG_INSTANTIATE_CUBLAS_CONV(T)                                                           \
  template bool cublas_conv2d_forward<T>(int, const Conv2dShape&, const T*, const T*,           \
                                         const float*, T*, kc::ConvMath, cudaStream_t);         \
  template bool cublas_conv2d_backward_data<T>(int, const Conv2dShape&, const T*, const T*, T*, \
                                               kc::ConvMath, cudaStream_t);                     \
  template bool cublas_conv2d_backward_weight<T>(int, const Conv2dShape&, const T*, const T*,   \
                                                 float*, float*, kc::ConvMath, cudaStream_t);
RG_INSTANTIATE_CUBLAS_CONV(float)
RG_INSTANTIATE_CUBLAS_CONV(kc::bf16)
#undef RG_INSTANTIATE_CUBLAS_CONV

}  // namespace rg::cuda
