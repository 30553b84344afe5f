// The NCCL communicator: data-parallel collectives on CUDA tensors (one process per GPU).
// Compiled only in CUDA builds; everything else reaches it through
// dist::make_device_communicator (engine/dist/communicator.h).
//
// Bootstrap. Rank 0 draws an ncclUniqueId, the host communicator broadcasts it (MPI under
// mpirun), every rank calls ncclCommInitRank on its device. With a local host communicator (a
// process not started by mpirun) the world is one rank: NCCL still runs, every collective is
// the identity, and the stream machinery below is exercised as in a real job.
//
// Streams. The communicator owns one high-priority stream per process (priority so that the
// reduction kernels are not starved by the compute kernels they overlap with). A device
// collective:
//   1. records an event on the caller's current stream (rg::cuda::current_stream) and makes the
//      communicator's stream wait for it: the collective reads what the caller wrote before;
//   2. enqueues the NCCL call on the communicator's stream;
//   3. records a completion event there, which PendingReduce::wait() makes the caller's current
//      stream wait for (no host synchronization) and PendingReduce::test() queries.
// all_reduce_sum(Tensor&) and broadcast() are start + wait: they return once the work is
// enqueued and the caller's stream is ordered after it.
//
// Memory. A tensor allocated on the compute stream is read and written on the communicator's
// stream. With a stream-ordered caching allocator its memory must not be freed (and reused on
// the compute stream) before the collective is done: the pending handle keeps the tensor's
// storage alive, and after wait() any later reuse on the caller's stream is ordered after the
// collective. dist::GradientSync keeps its bucket buffers as members and waits for every
// bucket in finish() before the gradients are copied out, so no allocator change is needed.
//
// Host-side values. all_reduce_sum(std::vector<double>&), CPU tensors and barrier() go through
// the host communicator (MPI), which is blocking; SyncBatchNorm's statistics travel that way.
//
// Errors. Every NCCL call is checked (RG_NCCL_CHECK: the call, file:line and NCCL's text). A
// watchdog thread polls ncclCommGetAsyncError and the completion events of the collectives in
// flight; an asynchronous error, or a collective not complete after the timeout (environment
// RG_NCCL_TIMEOUT_S, default 600 s), calls ncclCommAbort and stops the job through the host
// communicator's abort path (MPI_Abort) with a message naming the rank and the collective. The
// timeout has to exceed the longest time one rank can spend outside collectives while the
// others wait for it (rank 0 writing a checkpoint). wait() and broadcast() also poll the
// asynchronous error on the calling thread (they never block on the device, so the timeout is
// the watchdog's alone). Host-side MPI collectives are not watched.
#pragma once

#if RG_WITH_CUDA

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <memory>
#include <string>

#include "engine/dist/communicator.h"

// Checks an NCCL call; the error names the call, file and line and NCCL's explanation.
#define RG_NCCL_CHECK(call) ::rg::dist::nccl_check((call), #call, __FILE__, __LINE__)

namespace rg::dist {

void nccl_check(ncclResult_t result, const char* call, const char* file, int line);

struct NcclOptions {
  // Seconds a collective may take from being enqueued to completing; <= 0: from the
  // environment (RG_NCCL_TIMEOUT_S), else 600.
  double timeout_s = 0;
  // Exit code of a job stopped by the watchdog.
  int abort_code = 3;
};

// The timeout NcclOptions{} resolves to: RG_NCCL_TIMEOUT_S (seconds, > 0) or 600.
double nccl_timeout_from_environment();

class NcclCommunicator final : public Communicator {
 public:
  // Collective over every rank of `host` (see the bootstrap above); `host` must outlive this.
  NcclCommunicator(Communicator& host, int device, NcclOptions options = {});
  // Waits (up to the timeout, watched) for the collectives in flight, then destroys the NCCL
  // communicator.
  ~NcclCommunicator() override;
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  int rank() const override;
  int world_size() const override;
  int local_rank() const override;
  std::string name() const override { return "nccl"; }
  // CPU tensors (through the host communicator) and tensors on this communicator's GPU.
  bool supports(Device device) const override;

  // Device tensors: contiguous f32, f64, bf16 or f16 on device(); CPU tensors: as the host.
  void all_reduce_sum(Tensor& t) override;
  std::unique_ptr<PendingReduce> start_all_reduce_sum(Tensor& t) override;
  void broadcast(Tensor& t, int root) override;
  void all_reduce_sum(std::vector<double>& values) override;
  void barrier() override;
  [[noreturn]] void abort(int code, const std::string& message) override;

  int device() const;
  // The stream the collectives run on (tests use it to hold back or observe them).
  cudaStream_t stream() const;
  double timeout_s() const;
  // One watchdog check on the calling thread: asynchronous NCCL errors and overdue collectives
  // end the job; finished collectives are retired. The watchdog thread runs it periodically.
  void check_health();

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

// What make_device_communicator calls for a CUDA device.
std::shared_ptr<Communicator> make_nccl_communicator(Communicator& host, int device);

}  // namespace rg::dist

#endif  // RG_WITH_CUDA
