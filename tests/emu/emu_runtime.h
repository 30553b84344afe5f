// CPU emulation of CUDA, host side: the runtime API that the kernel launchers and the GPU tests
// call, over host memory, and the launch that replaces <<<...>>> (tests/emu/rewrite_launches.py
// turns `kernel<<<grid, block, smem, stream>>>(args)` into a call of rg_emu::Launch).
//
// One emulated device (ordinal 0). Device memory is host memory (posix_memalign, 256-byte
// aligned like cudaMalloc; filled with 0xFF on allocation, i.e. NaN, so a kernel that reads what
// nobody wrote shows it). Every stream executes its work at once, in submission order, on the
// calling thread: results never depend on timing, so cross-stream races cannot show as wrong
// numbers. Instead the runtime checks the ordering rules such races break (emu_runtime.cpp:
// legacy-stream work followed by non-blocking-stream work without synchronization) and raises an
// error.
//
// The API has C++ linkage and its own handle types (rg_emu_*), so an emulated object never
// resolves to, or clashes with, the real libcudart of a CUDA build linked into the same program.
#pragma once

#include <cstddef>
#include <cstdint>
#include <tuple>
#include <type_traits>
#include <utility>

#include "tests/emu/emu_device.h"

enum rg_emu_cudaError : int {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInitializationError = 3,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInvalidDevicePointer = 17,
  cudaErrorInvalidMemcpyDirection = 21,
  cudaErrorInvalidResourceHandle = 400,
  cudaErrorNotReady = 600,
  cudaErrorIllegalAddress = 700,
  cudaErrorLaunchFailure = 719,
  cudaErrorNotSupported = 801,
  cudaErrorInvalidDevice = 101,
  cudaErrorNoDevice = 100,
  cudaErrorUnknown = 999,
};
typedef rg_emu_cudaError cudaError_t;

typedef struct rg_emu_stream* cudaStream_t;
typedef struct rg_emu_event* cudaEvent_t;

enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4,
};

constexpr unsigned cudaStreamDefault = 0x0;
constexpr unsigned cudaStreamNonBlocking = 0x1;
constexpr unsigned cudaEventDefault = 0x0;
constexpr unsigned cudaEventBlockingSync = 0x1;
constexpr unsigned cudaEventDisableTiming = 0x2;
#define cudaStreamLegacy (reinterpret_cast<cudaStream_t>(0x1))
#define cudaStreamPerThread (reinterpret_cast<cudaStream_t>(0x2))

struct cudaDeviceProp {
  char name[256];
  size_t totalGlobalMem;
  size_t sharedMemPerBlock;
  int regsPerBlock;
  int warpSize;
  int maxThreadsPerBlock;
  int maxThreadsDim[3];
  int maxGridSize[3];
  int major;
  int minor;
  int multiProcessorCount;
  int maxThreadsPerMultiProcessor;
  size_t sharedMemPerMultiprocessor;
  size_t sharedMemPerBlockOptin;
  int l2CacheSize;
};

enum cudaDeviceAttr {
  cudaDevAttrMaxThreadsPerBlock = 1,
  cudaDevAttrWarpSize = 10,
  cudaDevAttrMultiProcessorCount = 16,
  cudaDevAttrComputeCapabilityMajor = 75,
  cudaDevAttrComputeCapabilityMinor = 76,
  cudaDevAttrMaxSharedMemoryPerBlockOptin = 97,
};

// ---- The runtime API (tests/emu/emu_runtime.cpp) ----------------------------------------

cudaError_t cudaGetDeviceCount(int* count);
cudaError_t cudaGetDevice(int* device);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device);
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device);
cudaError_t cudaDeviceSynchronize();
cudaError_t cudaGetLastError();
cudaError_t cudaPeekAtLastError();
const char* cudaGetErrorName(cudaError_t error);
const char* cudaGetErrorString(cudaError_t error);

cudaError_t cudaMalloc(void** ptr, size_t bytes);
cudaError_t cudaFree(void* ptr);
cudaError_t cudaMallocAsync(void** ptr, size_t bytes, cudaStream_t stream);
cudaError_t cudaFreeAsync(void* ptr, cudaStream_t stream);
cudaError_t cudaMallocHost(void** ptr, size_t bytes);
cudaError_t cudaFreeHost(void* ptr);
cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes);
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t stream = 0);
cudaError_t cudaMemset(void* dst, int value, size_t bytes);
cudaError_t cudaMemsetAsync(void* dst, int value, size_t bytes, cudaStream_t stream = 0);

cudaError_t cudaStreamCreate(cudaStream_t* stream);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned flags);
cudaError_t cudaStreamCreateWithPriority(cudaStream_t* stream, unsigned flags, int priority);
cudaError_t cudaStreamDestroy(cudaStream_t stream);
cudaError_t cudaStreamSynchronize(cudaStream_t stream);
cudaError_t cudaStreamQuery(cudaStream_t stream);
cudaError_t cudaStreamGetFlags(cudaStream_t stream, unsigned* flags);
cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned flags = 0);

cudaError_t cudaEventCreate(cudaEvent_t* event);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned flags);
cudaError_t cudaEventDestroy(cudaEvent_t event);
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream = 0);
cudaError_t cudaEventSynchronize(cudaEvent_t event);
cudaError_t cudaEventQuery(cudaEvent_t event);
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end);

// The typed overloads of cuda_runtime.h.
template <typename T>
cudaError_t cudaMalloc(T** ptr, size_t bytes) {
  return cudaMalloc(reinterpret_cast<void**>(ptr), bytes);
}
template <typename T>
cudaError_t cudaMallocAsync(T** ptr, size_t bytes, cudaStream_t stream) {
  return cudaMallocAsync(reinterpret_cast<void**>(ptr), bytes, stream);
}

// ---- Launch ------------------------------------------------------------------------------

namespace rg_emu {

// Runs body(ctx) as every thread of every block of the grid (emu_scheduler.cpp), after the
// checks a launch makes on the GPU; reports a bad configuration through cudaGetLastError.
void launch_grid(const char* kernel, const char* file, int line, dim3 grid, dim3 block,
                 size_t dynamic_smem, cudaStream_t stream, void (*body)(void*), void* ctx);

// The rewritten `kernel<<<grid, block, smem, stream>>>(args...)`: the arguments are evaluated
// once, on the host, and copied into every thread's parameters as a launch copies them.
class Launch {
 public:
  Launch(const char* kernel, const char* file, int line, dim3 grid, dim3 block,
         size_t dynamic_smem = 0, cudaStream_t stream = 0)
      : kernel_(kernel), file_(file), line_(line), grid_(grid), block_(block),
        smem_(dynamic_smem), stream_(stream) {}

  template <typename Call, typename... Args>
  void operator()(Call call, Args&&... args) const {
    struct Ctx {
      Call call;
      std::tuple<std::decay_t<Args>...> args;
    } ctx{call, std::tuple<std::decay_t<Args>...>(std::forward<Args>(args)...)};
    launch_grid(kernel_, file_, line_, grid_, block_, smem_, stream_, &run<Ctx>, &ctx);
  }

 private:
  template <typename Ctx>
  static void run(void* p) {
    auto* ctx = static_cast<Ctx*>(p);
    std::apply(ctx->call, ctx->args);
  }

  const char* kernel_;
  const char* file_;
  int line_;
  dim3 grid_, block_;
  size_t smem_;
  cudaStream_t stream_;
};

}  // namespace rg_emu
