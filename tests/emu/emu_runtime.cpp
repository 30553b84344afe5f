// The emulated CUDA runtime (emu_runtime.h): one device, memory on the host, streams that run
// their work at once, and the stream-ordering check.
//
// Stream ordering. Work runs at submission, so a missing synchronization can never produce a
// wrong number here; it is checked instead. The engine's streams and most test streams are
// non-blocking: they are not ordered after work on the legacy default stream (stream 0:
// cudaMemset, cudaMemcpy host-to-device or device-to-device, which may return before the copy
// lands, kernel launches without a stream). Submitting work to a non-blocking stream while such
// legacy work has not been waited for (cudaDeviceSynchronize, cudaStreamSynchronize(0), a
// device-to-host cudaMemcpy, an event recorded on the legacy stream and waited for) is a race
// on the GPU and an error here. Reading device memory back with a legacy device-to-host
// cudaMemcpy while a non-blocking stream has work nobody waited for is the same race the other
// way round and is reported too.
#include "tests/emu/emu_runtime.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <map>
#include <mutex>
#include <set>
#include <string>

#include "tests/emu/emu_error.h"
#include "tests/emu/emu_scheduler.h"

struct rg_emu_stream {
  unsigned flags = 0;
  uint64_t legacy_seen = 0;  // legacy-stream work up to this count is ordered before this stream
  bool pending = false;      // work submitted since the host last waited for this stream
};

struct rg_emu_event {
  unsigned flags = 0;
  bool recorded = false;
  uint64_t legacy_count = 0;  // legacy work the event covers (recorded on the legacy stream)
  std::chrono::steady_clock::time_point when{};
};

namespace rg_emu {
namespace {

struct Runtime {
  std::recursive_mutex mutex;  // one API call (and launch) at a time
  std::map<uintptr_t, size_t> allocations;  // device allocations: start -> bytes
  std::set<rg_emu_stream*> streams;
  std::set<rg_emu_event*> events;
  cudaError_t last_error = cudaSuccess;
  int device = 0;
  uint64_t legacy_submitted = 0;  // async legacy-stream operations so far
  uint64_t legacy_waited = 0;     // ... of which the host has waited for
};

Runtime& rt() {
  static Runtime* r = new Runtime();  // never destroyed: buffers may be freed in static dtors
  return *r;
}

cudaError_t record(cudaError_t e) {
  if (e != cudaSuccess) rt().last_error = e;
  return e;
}

bool is_legacy(cudaStream_t s) { return s == nullptr || s == cudaStreamLegacy; }

// Non-blocking streams are the ones the legacy stream does not order.
bool is_nonblocking(cudaStream_t s) {
  return !is_legacy(s) && s != cudaStreamPerThread && (s->flags & cudaStreamNonBlocking);
}

bool valid_stream(cudaStream_t s) {
  return is_legacy(s) || s == cudaStreamPerThread || rt().streams.count(s) > 0;
}

// The allocation holding [p, p + bytes), or none.
bool in_device_memory(const void* p, size_t bytes) {
  Runtime& r = rt();
  const auto addr = reinterpret_cast<uintptr_t>(p);
  auto it = r.allocations.upper_bound(addr);
  if (it == r.allocations.begin()) return false;
  --it;
  return addr >= it->first && addr + bytes <= it->first + std::max<size_t>(it->second, 1);
}

[[noreturn]] void ordering_error(const std::string& what) {
  throw Error(what +
              " (stream-ordering race: on a GPU the two may run concurrently; synchronize, or "
              "use the same stream / an event; tests/emu/emu_runtime.cpp explains the check)");
}

// Called before work is submitted to `s` (everything that reads or writes device memory).
void before_work(cudaStream_t s, const char* what) {
  Runtime& r = rt();
  if (is_nonblocking(s)) {
    if (r.legacy_submitted > std::max(r.legacy_waited, s->legacy_seen)) {
      ordering_error(std::string(what) +
                     " on a non-blocking stream while work on the legacy default stream "
                     "(cudaMemset, cudaMemcpy to the device, a launch without a stream) has "
                     "not been waited for");
    }
    s->pending = true;
  } else if (is_legacy(s)) {
    ++r.legacy_submitted;
  }
}

// The legacy stream and the blocking streams are complete (the host waited for them).
void legacy_waited() {
  Runtime& r = rt();
  r.legacy_waited = r.legacy_submitted;
}

cudaError_t check_range(const void* p, size_t bytes) {
  return in_device_memory(p, bytes) ? cudaSuccess : cudaErrorInvalidValue;
}

cudaError_t allocate(void** ptr, size_t bytes) {
  if (ptr == nullptr) return cudaErrorInvalidValue;
  void* p = nullptr;
  // 256-byte alignment as cudaMalloc guarantees; the exact size, so that ASan's redzone starts
  // right after the last byte.
  if (posix_memalign(&p, 256, bytes == 0 ? 1 : bytes) != 0) return cudaErrorMemoryAllocation;
  std::memset(p, 0xFF, bytes);  // what nobody wrote reads as NaN
  rt().allocations[reinterpret_cast<uintptr_t>(p)] = bytes;
  *ptr = p;
  return cudaSuccess;
}

cudaError_t release(void* p) {
  if (p == nullptr) return cudaSuccess;
  Runtime& r = rt();
  auto it = r.allocations.find(reinterpret_cast<uintptr_t>(p));
  if (it == r.allocations.end()) return cudaErrorInvalidDevicePointer;
  r.allocations.erase(it);
  std::free(p);
  return cudaSuccess;
}

cudaError_t copy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  if (bytes == 0) return cudaSuccess;
  if (dst == nullptr || src == nullptr) return cudaErrorInvalidValue;
  const bool dst_dev = in_device_memory(dst, bytes), src_dev = in_device_memory(src, bytes);
  switch (kind) {
    case cudaMemcpyHostToDevice:
      if (!dst_dev) return cudaErrorInvalidValue;
      break;
    case cudaMemcpyDeviceToHost:
      if (!src_dev) return cudaErrorInvalidValue;
      break;
    case cudaMemcpyDeviceToDevice:
      if (!dst_dev || !src_dev) return cudaErrorInvalidValue;
      break;
    case cudaMemcpyHostToHost:
    case cudaMemcpyDefault:
      break;
    default:
      return cudaErrorInvalidMemcpyDirection;
  }
  std::memmove(dst, src, bytes);
  return cudaSuccess;
}

}  // namespace

// ---- Launch -------------------------------------------------------------------------------

void launch_grid(const char* kernel, const char* file, int line, dim3 grid, dim3 block,
                 size_t dynamic_smem, cudaStream_t stream, void (*body)(void*), void* ctx) {
  Runtime& r = rt();
  std::lock_guard<std::recursive_mutex> lock(r.mutex);
  const uint64_t threads = uint64_t{block.x} * block.y * block.z;
  const bool bad_config = grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.x > 0x7fffffffu ||
                          grid.y > 65535 || grid.z > 65535 || block.x == 0 || block.y == 0 ||
                          block.z == 0 || block.x > 1024 || block.y > 1024 || block.z > 64 ||
                          threads > 1024 || dynamic_smem > 48 * 1024;
  if (bad_config) {
    record(cudaErrorInvalidConfiguration);
    return;
  }
  if (!valid_stream(stream)) {
    record(cudaErrorInvalidResourceHandle);
    return;
  }
  if (dynamic_smem > 0) {
    throw Error(std::string(kernel) + " at " + file + ":" + std::to_string(line) +
                ": dynamic shared memory is not emulated");
  }
  before_work(stream, (std::string("launch of ") + kernel).c_str());
  run_grid(kernel, grid, block, body, ctx);
}

}  // namespace rg_emu

using rg_emu::record;
using rg_emu::rt;

#define RG_EMU_LOCK std::lock_guard<std::recursive_mutex> rg_emu_lock_(rt().mutex)

// ---- Device -------------------------------------------------------------------------------

cudaError_t cudaGetDeviceCount(int* count) {
  if (count == nullptr) return record(cudaErrorInvalidValue);
  *count = 1;
  return cudaSuccess;
}

cudaError_t cudaGetDevice(int* device) {
  RG_EMU_LOCK;
  if (device == nullptr) return record(cudaErrorInvalidValue);
  *device = rt().device;
  return cudaSuccess;
}

cudaError_t cudaSetDevice(int device) {
  RG_EMU_LOCK;
  if (device != 0) return record(cudaErrorInvalidDevice);
  rt().device = device;
  return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  if (prop == nullptr) return record(cudaErrorInvalidValue);
  if (device != 0) return record(cudaErrorInvalidDevice);
  std::memset(prop, 0, sizeof *prop);
  std::snprintf(prop->name, sizeof prop->name, "roentgen CUDA emulation (CPU)");
  prop->totalGlobalMem = size_t{16} << 30;
  prop->sharedMemPerBlock = 48 * 1024;
  prop->sharedMemPerBlockOptin = 227 * 1024;
  prop->sharedMemPerMultiprocessor = 228 * 1024;
  prop->regsPerBlock = 65536;
  prop->warpSize = 32;
  prop->maxThreadsPerBlock = 1024;
  prop->maxThreadsDim[0] = 1024;
  prop->maxThreadsDim[1] = 1024;
  prop->maxThreadsDim[2] = 64;
  prop->maxGridSize[0] = 0x7fffffff;
  prop->maxGridSize[1] = 65535;
  prop->maxGridSize[2] = 65535;
  prop->major = 9;
  prop->minor = 0;
  prop->multiProcessorCount = 132;
  prop->maxThreadsPerMultiProcessor = 2048;
  prop->l2CacheSize = 50 << 20;
  return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
  if (value == nullptr) return record(cudaErrorInvalidValue);
  if (device != 0) return record(cudaErrorInvalidDevice);
  cudaDeviceProp p;
  cudaGetDeviceProperties(&p, 0);
  switch (attr) {
    case cudaDevAttrMaxThreadsPerBlock:
      *value = p.maxThreadsPerBlock;
      return cudaSuccess;
    case cudaDevAttrWarpSize:
      *value = p.warpSize;
      return cudaSuccess;
    case cudaDevAttrMultiProcessorCount:
      *value = p.multiProcessorCount;
      return cudaSuccess;
    case cudaDevAttrComputeCapabilityMajor:
      *value = p.major;
      return cudaSuccess;
    case cudaDevAttrComputeCapabilityMinor:
      *value = p.minor;
      return cudaSuccess;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin:
      *value = static_cast<int>(p.sharedMemPerBlockOptin);
      return cudaSuccess;
  }
  return record(cudaErrorInvalidValue);
}

cudaError_t cudaDeviceSynchronize() {
  RG_EMU_LOCK;
  rg_emu::legacy_waited();
  for (rg_emu_stream* s : rt().streams) s->pending = false;
  return cudaSuccess;
}

cudaError_t cudaGetLastError() {
  RG_EMU_LOCK;
  const cudaError_t e = rt().last_error;
  rt().last_error = cudaSuccess;
  return e;
}

cudaError_t cudaPeekAtLastError() {
  RG_EMU_LOCK;
  return rt().last_error;
}

const char* cudaGetErrorName(cudaError_t error) {
  switch (error) {
#define RG_EMU_NAME(e) \
  case e:              \
    return #e;
    RG_EMU_NAME(cudaSuccess)
    RG_EMU_NAME(cudaErrorInvalidValue)
    RG_EMU_NAME(cudaErrorMemoryAllocation)
    RG_EMU_NAME(cudaErrorInitializationError)
    RG_EMU_NAME(cudaErrorInvalidConfiguration)
    RG_EMU_NAME(cudaErrorInvalidDevicePointer)
    RG_EMU_NAME(cudaErrorInvalidMemcpyDirection)
    RG_EMU_NAME(cudaErrorInvalidResourceHandle)
    RG_EMU_NAME(cudaErrorNotReady)
    RG_EMU_NAME(cudaErrorIllegalAddress)
    RG_EMU_NAME(cudaErrorLaunchFailure)
    RG_EMU_NAME(cudaErrorNotSupported)
    RG_EMU_NAME(cudaErrorInvalidDevice)
    RG_EMU_NAME(cudaErrorNoDevice)
    RG_EMU_NAME(cudaErrorUnknown)
#undef RG_EMU_NAME
  }
  return "cudaErrorUnknown";
}

const char* cudaGetErrorString(cudaError_t error) {
  switch (error) {
    case cudaSuccess:
      return "no error";
    case cudaErrorInvalidValue:
      return "invalid argument";
    case cudaErrorMemoryAllocation:
      return "out of memory";
    case cudaErrorInvalidConfiguration:
      return "invalid configuration argument";
    case cudaErrorInvalidDevicePointer:
      return "invalid device pointer";
    case cudaErrorInvalidDevice:
      return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle:
      return "invalid resource handle";
    case cudaErrorNotReady:
      return "device not ready";
    default:
      return cudaGetErrorName(error);
  }
}

// ---- Memory -------------------------------------------------------------------------------

cudaError_t cudaMalloc(void** ptr, size_t bytes) {
  RG_EMU_LOCK;
  return record(rg_emu::allocate(ptr, bytes));
}

cudaError_t cudaFree(void* ptr) {
  RG_EMU_LOCK;
  // cudaFree waits for the device first.
  cudaDeviceSynchronize();
  return record(rg_emu::release(ptr));
}

cudaError_t cudaMallocAsync(void** ptr, size_t bytes, cudaStream_t stream) {
  RG_EMU_LOCK;
  if (!rg_emu::valid_stream(stream)) return record(cudaErrorInvalidResourceHandle);
  return record(rg_emu::allocate(ptr, bytes));
}

cudaError_t cudaFreeAsync(void* ptr, cudaStream_t stream) {
  RG_EMU_LOCK;
  if (!rg_emu::valid_stream(stream)) return record(cudaErrorInvalidResourceHandle);
  return record(rg_emu::release(ptr));
}

cudaError_t cudaMallocHost(void** ptr, size_t bytes) {
  if (ptr == nullptr) return record(cudaErrorInvalidValue);
  if (posix_memalign(ptr, 256, bytes == 0 ? 1 : bytes) != 0) {
    return record(cudaErrorMemoryAllocation);
  }
  return cudaSuccess;
}

cudaError_t cudaFreeHost(void* ptr) {
  std::free(ptr);
  return cudaSuccess;
}

cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
  if (free_bytes) *free_bytes = size_t{16} << 30;
  if (total_bytes) *total_bytes = size_t{16} << 30;
  return cudaSuccess;
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  RG_EMU_LOCK;
  auto& r = rt();
  const bool from_device = kind == cudaMemcpyDeviceToHost ||
                           (kind == cudaMemcpyDefault && rg_emu::in_device_memory(src, bytes) &&
                            !rg_emu::in_device_memory(dst, bytes));
  if (from_device) {
    // Synchronous: it returns when the legacy stream (and the blocking streams) are done, but
    // it does not wait for non-blocking streams.
    for (rg_emu_stream* s : r.streams) {
      if (rg_emu::is_nonblocking(s) && s->pending) {
        rg_emu::ordering_error(
            "cudaMemcpy from the device on the legacy stream while a non-blocking stream has "
            "work the host has not waited for");
      }
    }
    const cudaError_t e = rg_emu::copy(dst, src, bytes, kind);
    rg_emu::legacy_waited();
    return record(e);
  }
  rg_emu::before_work(nullptr, "cudaMemcpy");
  return record(rg_emu::copy(dst, src, bytes, kind));
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t stream) {
  RG_EMU_LOCK;
  if (!rg_emu::valid_stream(stream)) return record(cudaErrorInvalidResourceHandle);
  rg_emu::before_work(stream, "cudaMemcpyAsync");
  return record(rg_emu::copy(dst, src, bytes, kind));
}

cudaError_t cudaMemset(void* dst, int value, size_t bytes) {
  return cudaMemsetAsync(dst, value, bytes, nullptr);
}

cudaError_t cudaMemsetAsync(void* dst, int value, size_t bytes, cudaStream_t stream) {
  RG_EMU_LOCK;
  if (!rg_emu::valid_stream(stream)) return record(cudaErrorInvalidResourceHandle);
  if (bytes == 0) return cudaSuccess;
  if (rg_emu::check_range(dst, bytes) != cudaSuccess) return record(cudaErrorInvalidValue);
  rg_emu::before_work(stream, stream == nullptr ? "cudaMemset" : "cudaMemsetAsync");
  std::memset(dst, value, bytes);
  return cudaSuccess;
}

// ---- Streams and events -------------------------------------------------------------------

cudaError_t cudaStreamCreate(cudaStream_t* stream) {
  return cudaStreamCreateWithFlags(stream, cudaStreamDefault);
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned flags) {
  RG_EMU_LOCK;
  if (stream == nullptr || (flags & ~cudaStreamNonBlocking)) return record(cudaErrorInvalidValue);
  auto* s = new rg_emu_stream;
  s->flags = flags;
  s->legacy_seen = 0;  // not ordered after any legacy work, even work from before its creation
  rt().streams.insert(s);
  *stream = s;
  return cudaSuccess;
}

cudaError_t cudaStreamCreateWithPriority(cudaStream_t* stream, unsigned flags, int) {
  return cudaStreamCreateWithFlags(stream, flags);
}

cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  RG_EMU_LOCK;
  if (rg_emu::is_legacy(stream) || rt().streams.erase(stream) == 0) {
    return record(cudaErrorInvalidResourceHandle);
  }
  delete stream;
  return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  RG_EMU_LOCK;
  if (!rg_emu::valid_stream(stream)) return record(cudaErrorInvalidResourceHandle);
  if (rg_emu::is_nonblocking(stream)) {
    stream->pending = false;
  } else {
    // The legacy stream (or a blocking one, which waits for it) is done.
    rg_emu::legacy_waited();
    if (!rg_emu::is_legacy(stream) && stream != cudaStreamPerThread) stream->pending = false;
  }
  return cudaSuccess;
}

cudaError_t cudaStreamQuery(cudaStream_t stream) {
  RG_EMU_LOCK;
  if (!rg_emu::valid_stream(stream)) return record(cudaErrorInvalidResourceHandle);
  return cudaSuccess;  // everything submitted has run
}

cudaError_t cudaStreamGetFlags(cudaStream_t stream, unsigned* flags) {
  RG_EMU_LOCK;
  if (flags == nullptr || !rg_emu::valid_stream(stream)) return record(cudaErrorInvalidValue);
  *flags = rg_emu::is_nonblocking(stream) ? cudaStreamNonBlocking : cudaStreamDefault;
  return cudaSuccess;
}

cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned) {
  RG_EMU_LOCK;
  if (!rg_emu::valid_stream(stream) || rt().events.count(event) == 0) {
    return record(cudaErrorInvalidResourceHandle);
  }
  if (rg_emu::is_nonblocking(stream)) {
    stream->legacy_seen = std::max(stream->legacy_seen, event->legacy_count);
  }
  return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t* event) {
  return cudaEventCreateWithFlags(event, cudaEventDefault);
}

cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned flags) {
  RG_EMU_LOCK;
  if (event == nullptr) return record(cudaErrorInvalidValue);
  auto* e = new rg_emu_event;
  e->flags = flags;
  rt().events.insert(e);
  *event = e;
  return cudaSuccess;
}

cudaError_t cudaEventDestroy(cudaEvent_t event) {
  RG_EMU_LOCK;
  if (rt().events.erase(event) == 0) return record(cudaErrorInvalidResourceHandle);
  delete event;
  return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  RG_EMU_LOCK;
  if (rt().events.count(event) == 0 || !rg_emu::valid_stream(stream)) {
    return record(cudaErrorInvalidResourceHandle);
  }
  event->recorded = true;
  event->when = std::chrono::steady_clock::now();
  // An event on the legacy stream (or a blocking stream) covers the legacy work before it; one
  // on a non-blocking stream covers what that stream has been ordered after.
  event->legacy_count = rg_emu::is_nonblocking(stream)
                            ? std::max(stream->legacy_seen, rt().legacy_waited)
                            : rt().legacy_submitted;
  return cudaSuccess;
}

cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  RG_EMU_LOCK;
  if (rt().events.count(event) == 0) return record(cudaErrorInvalidResourceHandle);
  rt().legacy_waited = std::max(rt().legacy_waited, event->legacy_count);
  return cudaSuccess;
}

cudaError_t cudaEventQuery(cudaEvent_t event) {
  RG_EMU_LOCK;
  if (rt().events.count(event) == 0) return record(cudaErrorInvalidResourceHandle);
  return cudaSuccess;
}

cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  RG_EMU_LOCK;
  if (ms == nullptr || rt().events.count(start) == 0 || rt().events.count(end) == 0) {
    return record(cudaErrorInvalidResourceHandle);
  }
  if (!start->recorded || !end->recorded || (start->flags & cudaEventDisableTiming) ||
      (end->flags & cudaEventDisableTiming)) {
    return record(cudaErrorInvalidResourceHandle);
  }
  *ms = std::chrono::duration<float, std::milli>(end->when - start->when).count();
  return cudaSuccess;
}
