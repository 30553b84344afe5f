// Where a training run executes: its device and, under mpirun, its ranks. A CUDA device under a
// multi-rank launch gets an NCCL communicator (built over the host one) for its tensors; host
// scalars keep going through the host communicator.
#pragma once

#include <memory>

#include "engine/device.h"

namespace rg::dist {
class Communicator;
}

namespace rg::train {

struct RunContext {
  Device device;
  // The communicator for the run's tensors: the NCCL one for a CUDA device under mpirun, else
  // the host one. Not owned unless device_comm holds it.
  dist::Communicator* comm = nullptr;
  std::shared_ptr<dist::Communicator> device_comm;
  // Data parallelism whenever launched as a job (mpirun), even of one rank (where the
  // data-parallel path must give the plain run's results exactly: docs/scaling.md).
  bool data_parallel = false;
  int world_size = 1;
  int rank = 0;
  bool root() const { return rank == 0; }  // the only rank that writes files
};

// `requested` is the resolved --device (train/settings.h); each rank takes its local GPU.
RunContext make_run_context(dist::Communicator& host_comm, Device requested);

}  // namespace rg::train
