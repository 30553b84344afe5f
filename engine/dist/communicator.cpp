#include "engine/dist/communicator.h"

#include <cstdio>
#include <cstdlib>
#include <exception>

#include "engine/error.h"

namespace rg::dist {


void check_reducible_any_device(const Tensor& t, const char* op) {
  RG_CHECK(t.defined(), op, ": undefined tensor");
  RG_CHECK(t.is_contiguous(), op, ": tensor of shape ", shape_str(t.shape()), " is not contiguous");
  RG_CHECK(t.dtype() == DType::F32 || t.dtype() == DType::F64, op, ": expected f32 or f64, got ",
           dtype_name(t.dtype()));
}

void check_reducible(const Tensor& t, const char* op) {
  RG_CHECK(t.defined(), op, ": undefined tensor");
  RG_CHECK(t.device().is_cpu(), op, ": tensor on ", t.device().str(),
           ": the MPI communicator reduces CPU tensors (device tensors need the NCCL communicator)");
  check_reducible_any_device(t, op);
}

// A local "collective" is the identity on any device: nothing to move.
void LocalCommunicator::all_reduce_sum(Tensor& t) {
  check_reducible_any_device(t, "all_reduce_sum");
}

std::unique_ptr<PendingReduce> LocalCommunicator::start_all_reduce_sum(Tensor& t) {
  check_reducible_any_device(t, "start_all_reduce_sum");
  return std::make_unique<CompletedReduce>();
}

void LocalCommunicator::broadcast(Tensor& t, int root) {
  RG_CHECK(t.defined(), "broadcast: undefined tensor");
  RG_CHECK(root == 0, "broadcast: root ", root, " outside the world of 1 rank");
}

void LocalCommunicator::all_reduce_sum(std::vector<double>&) {}

void LocalCommunicator::abort(int code, const std::string& message) {
  std::fprintf(stderr, "roentgen: %s\n", message.c_str());
  std::fflush(stderr);
  std::exit(code);
}

bool launched_by_mpirun() { return std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr; }

int run_or_abort(Communicator& comm, int code, const std::function<int()>& fn) {
  try {
    return fn();
  } catch (const std::exception& e) {
    if (comm.world_size() > 1) comm.abort(code, e.what());
    throw;
  }
}

}  // namespace rg::dist
