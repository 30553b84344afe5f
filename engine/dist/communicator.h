// Collective communication between the processes of a data-parallel job (one process per
// device, launched by mpirun; docs/scaling.md).
//
//   auto comm = rg::dist::init_from_environment(argc, argv);   // MPI under mpirun, else local
//   comm->all_reduce_sum(grad);                                // in place, every rank
//
// Implementations:
//   LocalCommunicator  world size 1: every collective is a no-op (a single process, or tests).
//   MpiCommunicator    OpenMPI over MPI_COMM_WORLD, for CPU tensors (the CPU backend's data
//                      parallelism, and what CI tests with `mpirun -np 2`).
//   NcclCommunicator   CUDA builds (engine/dist/nccl_communicator.h): device tensors through
//                      NCCL, bootstrapped by broadcasting the ncclUniqueId over a host
//                      communicator (MPI under mpirun, local otherwise: NCCL with one rank);
//                      host scalars, CPU tensors and barriers go through that host communicator.
//                      make_device_communicator() below builds it for a CUDA training device.
// Collectives on device tensors are *stream-ordered*: a call enqueues the collective on the
// communicator's stream after the work already enqueued on the caller's current stream and
// returns; PendingReduce::wait() makes the caller's current stream wait for it (an event), not
// the host. For CPU tensors the same calls complete on the host: all_reduce_sum returns when
// done and wait() blocks until the result is in the tensor.
//
// Contract shared by every implementation: all ranks issue the same collectives in the same
// order with tensors of the same shape and dtype (the data-parallel code guarantees that; see
// data_parallel.h). Tensors passed to collectives must be contiguous; all_reduce_sum takes f32
// or f64 (the sum is computed in that dtype; NCCL also takes bf16 and f16 device tensors),
// broadcast any dtype (bytes). Which devices' tensors a communicator takes: supports().
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace rg::dist {

// A collective in flight. The tensor it writes must stay alive and untouched until wait()
// returns. Destroying an unfinished handle waits for it (a collective cannot be cancelled).
class PendingReduce {
 public:
  virtual ~PendingReduce() = default;
  // Blocks (CPU) or orders the caller's stream after the collective (GPU); idempotent.
  virtual void wait() = 0;
  // Lets the library progress the collective without blocking; true when it is complete.
  // (OpenMPI progresses non-blocking collectives only inside MPI calls: polling during backward
  // is what makes the overlap real.)
  virtual bool test() = 0;
};

// A collective that had nothing to do (one rank, an empty tensor): already complete.
class CompletedReduce final : public PendingReduce {
 public:
  void wait() override {}
  bool test() override { return true; }
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  // Rank within the node (which GPU this process drives): from the launcher, else rank().
  virtual int local_rank() const = 0;
  virtual std::string name() const = 0;  // "local", "mpi", "nccl"
  // Whether collectives take tensors on `device` in place (CPU for MPI; CPU and its own GPU for
  // NCCL; every device for the local no-op). Others must be staged through a supported device.
  virtual bool supports(Device device) const { return device.is_cpu(); }

  // In place: t = sum over ranks of t. Contiguous f32/f64.
  virtual void all_reduce_sum(Tensor& t) = 0;
  // Non-blocking all_reduce_sum; the result lands in t once the handle's wait() returns.
  virtual std::unique_ptr<PendingReduce> start_all_reduce_sum(Tensor& t) = 0;
  // In place: every rank gets root's values. Contiguous, any dtype.
  virtual void broadcast(Tensor& t, int root) = 0;
  // Host scalars (losses, metric sums, counts): v[i] = sum over ranks of v[i].
  virtual void all_reduce_sum(std::vector<double>& values) = 0;
  virtual void barrier() = 0;
  // Stops the whole job: prints "rank R: message" on stderr and terminates every rank with
  // `code` (MPI_Abort). Use it when a rank fails, so the others do not hang in a collective.
  [[noreturn]] virtual void abort(int code, const std::string& message) = 0;
};

// World size 1: collectives leave their arguments unchanged.
class LocalCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  int local_rank() const override { return 0; }
  std::string name() const override { return "local"; }
  bool supports(Device) const override { return true; }
  void all_reduce_sum(Tensor& t) override;
  std::unique_ptr<PendingReduce> start_all_reduce_sum(Tensor& t) override;
  void broadcast(Tensor& t, int root) override;
  void all_reduce_sum(std::vector<double>& values) override;
  void barrier() override {}
  [[noreturn]] void abort(int code, const std::string& message) override;
};

// True when this process was started by OpenMPI's launcher (OMPI_COMM_WORLD_SIZE is set).
bool launched_by_mpirun();

// The process's communicator: an MpiCommunicator over MPI_COMM_WORLD when launched by mpirun
// (MPI is initialized here, once per process, and finalized when the last reference goes),
// otherwise a LocalCommunicator. Later calls return the same object.
std::shared_ptr<Communicator> init_from_environment(int& argc, char**& argv);
std::shared_ptr<Communicator> init_from_environment();  // same, without argv

// The communicator for collectives on tensors of `device` (the training device):
//  - CPU: `host` itself (the returned pointer does not own it);
//  - CUDA: a new NcclCommunicator on that device, bootstrapped over `host` (every rank of
//    `host` must call this, in the same order as its other collectives), which sends host
//    scalars, CPU tensors and barriers through `host`. A build without CUDA throws.
// `host` must outlive the result. The caller picks the device of this rank (one GPU per rank:
// usually cuda:local_rank()).
std::shared_ptr<Communicator> make_device_communicator(Communicator& host, Device device);

// Runs fn(); if it throws, reports the error and calls comm.abort(code, what) when the world
// has more than one rank (so the other ranks stop instead of waiting in a collective),
// rethrows otherwise. Returns fn()'s result.
int run_or_abort(Communicator& comm, int code, const std::function<int()>& fn);

// The elements of a tensor an all-reduce may take: contiguous CPU f32/f64 (throws otherwise,
// naming `op`). Exposed for the implementations.
void check_reducible(const Tensor& t, const char* op);
// The same without the device requirement (contiguous f32/f64 anywhere).
void check_reducible_any_device(const Tensor& t, const char* op);

}  // namespace rg::dist
