#include "engine/cuda/cudnn_common.h"

#include <memory>
#include <vector>

#include "engine/allocator.h"
#include "engine/cuda/cudnn_check.h"
#include "engine/cuda/runtime.h"
#include "engine/error.h"
#include "kernels/cuda/tensor_ops.h"

namespace rg::cuda {

namespace {

namespace kc = kernels::cuda;

struct DeviceHandle {
  std::mutex mutex;  // held by a CudnnHandle lease
  cudnnHandle_t handle = nullptr;
};

// Handles live for the whole process and are deliberately never destroyed: destroying them in a
// static destructor could run after the CUDA runtime has shut down.
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
  RG_CHECK(device >= 0 && device < count, "cuDNN: CUDA device cuda:", device, " requested, but ",
           count, " CUDA device(s) are available");
  if (registry->size() < static_cast<size_t>(count)) registry->resize(static_cast<size_t>(count));
  std::unique_ptr<DeviceHandle>& slot = (*registry)[static_cast<size_t>(device)];
  if (!slot) slot = std::make_unique<DeviceHandle>();
  return *slot;
}

kc::StridedLayout contiguous_1d(int64_t n) {
  kc::StridedLayout l;
  l.ndim = 1;
  l.shape[0] = n;
  l.strides[0] = 1;
  return l;
}

template <typename T>
constexpr kc::ElemType elem_type();
template <>
constexpr kc::ElemType elem_type<float>() {
  return kc::ElemType::F32;
}
template <>
constexpr kc::ElemType elem_type<kc::bf16>() {
  return kc::ElemType::BF16;
}

}  // namespace

void check_current_device(int device, const char* what) {
  int current = -1;
  RG_CUDA_CHECK(cudaGetDevice(&current));
  RG_CHECK(current == device, what, ": the tensors are on cuda:", device,
           " but the current CUDA device is cuda:", current,
           " (make the tensors' device current first)");
}

CudnnHandle::CudnnHandle(int device, cudaStream_t stream) : device_(device) {
  check_current_device(device, "cuDNN");
  DeviceHandle& dh = device_handle(device);
  lock_ = std::unique_lock<std::mutex>(dh.mutex);
  if (dh.handle == nullptr) {
    // Headers and library of different major versions would disagree on the legacy API's
    // structures (the perf structs of the algorithm search): refuse before any call.
    const size_t version = cudnnGetVersion();
    RG_CHECK(version / 10000 == CUDNN_MAJOR, "cuDNN: built against cuDNN ", CUDNN_MAJOR, ".",
             CUDNN_MINOR, " but the loaded library is version ", version);
    RG_CUDNN_CHECK(cudnnCreate(&dh.handle));
  }
  handle_ = dh.handle;
  RG_CUDNN_CHECK(cudnnSetStream(handle_, stream));
}

// During graph capture the workspace comes from the stream-ordered allocator instead of the
// caching allocator: a cache miss there would call cudaMalloc (and a trim cudaFree), which a
// capture forbids, and a block returned to the cache at scope exit could be handed to other work
// while the graph, replayed later, still writes it. cudaMallocAsync/cudaFreeAsync become nodes
// of the graph, which then owns the memory.
DeviceScratch::DeviceScratch(int device, size_t bytes, cudaStream_t stream)
    : device_(device), bytes_(bytes), stream_(stream) {
  if (bytes_ == 0) return;
  if (stream_is_capturing(stream_)) {
    DeviceGuard guard(device_);
    RG_CUDA_CHECK(cudaMallocAsync(&ptr_, bytes_, stream_));
    stream_ordered_ = true;
  } else {
    ptr_ = cuda_allocator(device_).allocate(bytes_, stream_);
  }
}

DeviceScratch::~DeviceScratch() {
  if (ptr_ == nullptr) return;
  if (stream_ordered_) {
    DeviceGuard guard(device_);
    cudaFreeAsync(ptr_, stream_);
  } else {
    cuda_allocator(device_).deallocate(ptr_, bytes_, stream_);
  }
}

template <typename T>
void fill_rows_with_bias(int64_t rows, int64_t cols, const float* bias, T* y, cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return;
  kc::StridedLayout dst;
  dst.ndim = 2;
  dst.shape[0] = rows;
  dst.shape[1] = cols;
  dst.strides[0] = cols;
  dst.strides[1] = 1;
  kc::StridedLayout src = dst;
  src.strides[0] = 0;  // every row reads the same bias vector
  kc::strided_copy(elem_type<T>(), dst, y, kc::ElemType::F32, src, bias, stream);
}

template void fill_rows_with_bias<float>(int64_t, int64_t, const float*, float*, cudaStream_t);
template void fill_rows_with_bias<kc::bf16>(int64_t, int64_t, const float*, kc::bf16*,
                                            cudaStream_t);

void widen_bf16(int64_t n, const kc::bf16* src, float* dst, cudaStream_t stream) {
  if (n <= 0) return;
  const kc::StridedLayout l = contiguous_1d(n);
  kc::strided_copy(kc::ElemType::F32, l, dst, kc::ElemType::BF16, l, src, stream);
}

bool stream_is_capturing(cudaStream_t stream) {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  const cudaError_t err = cudaStreamIsCapturing(stream, &status);
  if (err != cudaSuccess) {
    // The legacy stream while another stream captures in global mode: treat as capturing.
    cudaGetLastError();
    return true;
  }
  return status != cudaStreamCaptureStatusNone;
}

}  // namespace rg::cuda
