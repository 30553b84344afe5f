// The CUDA runtime layer of the engine: current streams, events, device selection and the
// error-checking macros every CUDA, cuDNN and cuBLAS call goes through. Included only by code
// compiled in a CUDA build (RG_WITH_CUDA).
//
// The engine's streams are non-blocking: they do not wait for the legacy default stream, and it
// does not wait for them. So nothing in the engine may use the legacy default stream, neither
// explicitly (stream 0 / nullptr) nor implicitly: no cudaMemcpy, cudaMemset or kernel launch
// without a stream; use cudaMemcpyAsync / cudaMemsetAsync / <<<..., stream>>> on
// current_stream(device), and synchronize that stream where the host needs the result. (Work on
// the legacy stream would race with the engine's work instead of being ordered after it.)
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>

#include "engine/error.h"

// Checks a CUDA runtime call; the error names the call, file and line.
#define RG_CUDA_CHECK(call)                                                                  \
  do {                                                                                       \
    const cudaError_t rg_err_ = (call);                                                      \
    RG_CHECK(rg_err_ == cudaSuccess, #call, " failed at ", __FILE__, ":", __LINE__, ": ",    \
             cudaGetErrorName(rg_err_), ": ", cudaGetErrorString(rg_err_));                  \
  } while (0)

namespace rg::cuda {

// The stream the engine launches work on for `device` (this thread). By default one stream per
// device created by the engine (not the legacy default stream, so a step can be captured into a
// CUDA graph), shared by all threads and created on first use; StreamGuard changes it for a scope.
cudaStream_t current_stream(int device);
// Setting nullptr returns this thread to the engine's default stream of `device`.
void set_current_stream(int device, cudaStream_t stream);

class StreamGuard {
 public:
  StreamGuard(int device, cudaStream_t stream);
  ~StreamGuard();
  StreamGuard(const StreamGuard&) = delete;
  StreamGuard& operator=(const StreamGuard&) = delete;

 private:
  int device_;
  cudaStream_t previous_;
};

// An owned stream (non-blocking with respect to the legacy default stream).
class Stream {
 public:
  explicit Stream(int device, int priority = 0);
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  cudaStream_t get() const { return stream_; }
  int device() const { return device_; }
  void synchronize() const;

 private:
  int device_;
  cudaStream_t stream_ = nullptr;
};

// An owned event; timing events measure elapsed device time between two records. The event
// belongs to the device current at construction: record it on streams of that device.
class Event {
 public:
  explicit Event(bool timing = false);
  ~Event();
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  void record(cudaStream_t stream);
  // Makes `stream` wait for the work recorded before this event (no host synchronization).
  void wait(cudaStream_t stream) const;
  void synchronize() const;
  // Milliseconds from `start` to this event (both timing events, both completed).
  float elapsed_ms(const Event& start) const;
  cudaEvent_t get() const { return event_; }

 private:
  cudaEvent_t event_ = nullptr;
};

// Makes `device` current for this thread (cudaSetDevice), checked.
void set_device(int device);
// Makes `device` current for a scope and restores the previous current device afterwards.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = 0;
};
// Waits for all work on the device's current stream.
void synchronize_current_stream(int device);

}  // namespace rg::cuda
