// What the library paths (cuDNN convolutions and batch norm, cuBLAS GEMM convolutions) share:
// the per-device cuDNN handle, scratch memory from the caching allocator, and two small
// conversions done with our own kernels.
#pragma once

#include <cuda_runtime_api.h>
#include <cudnn.h>

#include <cstddef>
#include <cstdint>
#include <mutex>

#include "kernels/cuda/common.h"

namespace rg::cuda {

// Throws unless `device` is the calling thread's current CUDA device: library handles and our
// kernels launch on the current device, so a tensor of another device would fail obscurely.
void check_current_device(int device, const char* what);

// Exclusive use of the device's cuDNN handle, bound to `stream`, for the lifetime of the lease.
// There is one handle per device, created on first use and kept for the process. The lease's
// lock makes "bind the stream, then enqueue" atomic when several host threads share a device;
// the calls enqueue asynchronously, so it is held for microseconds (except during an algorithm
// search, which synchronizes). Never take a second lease of the same device while holding one.
class CudnnHandle {
 public:
  CudnnHandle(int device, cudaStream_t stream);
  CudnnHandle(const CudnnHandle&) = delete;
  CudnnHandle& operator=(const CudnnHandle&) = delete;
  cudnnHandle_t get() const { return handle_; }
  int device() const { return device_; }

 private:
  int device_;
  std::unique_lock<std::mutex> lock_;
  cudnnHandle_t handle_ = nullptr;
};

// Device memory from the device's caching allocator (engine/allocator.h), handed back on the
// same stream at scope exit. The allocator is stream-ordered: work queued on the stream before
// the hand-back still owns the bytes, later work on the stream may reuse them. Zero bytes give
// a null pointer without touching the allocator.
class DeviceScratch {
 public:
  DeviceScratch(int device, size_t bytes, cudaStream_t stream);
  ~DeviceScratch();
  DeviceScratch(const DeviceScratch&) = delete;
  DeviceScratch& operator=(const DeviceScratch&) = delete;
  void* get() const { return ptr_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }
  size_t bytes() const { return bytes_; }

 private:
  int device_;
  size_t bytes_;
  cudaStream_t stream_;
  void* ptr_ = nullptr;
  bool stream_ordered_ = false;  // from cudaMallocAsync (taken during graph capture)
};

// y[r][c] = bias[c] for r < rows, c < cols (a broadcast copy, converting to T). The library
// convolutions then accumulate onto it (beta = 1), which adds the bias without a second pass.
template <typename T>
void fill_rows_with_bias(int64_t rows, int64_t cols, const float* bias, T* y, cudaStream_t stream);

// dst[i] = float(src[i]) for i < n (exact).
void widen_bf16(int64_t n, const kernels::cuda::bf16* src, float* dst, cudaStream_t stream);

// True while `stream` is being captured into a CUDA graph: nothing may synchronize then
// (no algorithm search by measurement, no timing).
bool stream_is_capturing(cudaStream_t stream);

}  // namespace rg::cuda
