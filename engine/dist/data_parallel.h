// Data parallelism: every rank holds a replica of the model, runs forward and backward on its
// shard of the batch, and averages the gradients with all-reduce before the optimizer step.
//
//   dist::broadcast_module_state(model, comm);         // rank 0's parameters and buffers
//   dist::GradientSync sync(model.parameters(), comm);  // after to(device) and checkpoint loading
//   loss.backward();   // buckets are all-reduced while backward runs
//   sync.finish();     // waits, averages (divides by the world size), writes the grads back
//   opt.step();
//
// Buckets. Parameters are grouped into buckets of at most bucket_cap_mib MiB (one dtype and one
// device per bucket; the flat buffer lives on that device) in *reverse* registration order, because
// backward produces the gradients of the last layers first. A post-accumulate hook on each
// parameter counts its accumulations; when every member of a bucket has received its expected
// number of accumulations, the bucket is copied into one flat buffer and a non-blocking all-reduce
// starts, while backward continues with the earlier layers. Buckets are launched strictly in bucket
// order (a ready bucket waits for the buckets before it), so every rank issues its collectives in
// the same order whatever the order in which hooks fire. With a device communicator (NCCL) a
// bucket's flat buffer is read and written on the communicator's stream: the buffers are members,
// allocated once and kept for the run, and finish() waits for every bucket (ordering the compute
// stream after its collective) before reading it or refilling it, so the stream-ordered allocator
// never sees a buffer freed or reused while a collective uses it.
//
// Expected accumulations. A parameter used k times in one forward (D on real and on fake pairs)
// accumulates k times per backward: the first finish() learns k from what it saw (the default
// expectation is 1). A bucket that receives an accumulation after it was launched is marked
// dirty and all-reduced again, from fresh copies, in finish(); results are always exact, only
// the overlap of the first step is lost.
//
// Frozen parameters. Parameters that got no gradient in a step (D frozen during the G step)
// must not deadlock: finish() launches, in bucket order, every bucket that did not fill during
// backward, with zeros for its members that have no gradient; a bucket none of whose members
// got a gradient is skipped, and those parameters keep no gradient. This needs every rank to
// see the same set of gradient-less parameters — true for data parallelism, where every rank
// runs the same code on the same model.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "engine/dist/communicator.h"
#include "engine/nn/module.h"

namespace rg::dist {

// Overwrites every parameter and buffer of `module` with root's values (call once at start,
// after to(device) and after loading a checkpoint on root).
void broadcast_module_state(nn::Module& module, Communicator& comm, int root = 0);
void broadcast_tensors(const std::vector<Tensor>& tensors, Communicator& comm, int root = 0);

struct GradientSyncOptions {
  double bucket_cap_mib = 25.0;  // PyTorch DDP's default; the first bucket is not smaller
};

class GradientSync {
 public:
  GradientSync(std::vector<Tensor> parameters, Communicator& comm, GradientSyncOptions options = {});
  ~GradientSync();
  GradientSync(const GradientSync&) = delete;
  GradientSync& operator=(const GradientSync&) = delete;

  // Completes this step's reduction: launches the buckets that did not fill during backward,
  // redoes dirty ones, waits for all, divides by the world size and writes the averaged
  // gradients back into each parameter's grad. Call after backward, before optimizer.step().
  void finish();

  // ---- introspection (tests, logs)
  size_t bucket_count() const;
  // Indices into the constructor's parameter list, in flat-buffer order.
  const std::vector<size_t>& bucket_members(size_t bucket) const;
  int64_t bucket_numel(size_t bucket) const;
  enum class Phase { Backward, Finish, Redo };
  struct Launch {
    size_t bucket;
    Phase phase;
  };
  // The all-reduces of the last finished step (or the current one before finish), in order.
  const std::vector<Launch>& launches() const;
  // Accumulations per step each parameter is expected to receive (learned; 1 at first).
  int expected_accumulations(size_t parameter) const;

  struct State;  // shared with the hooks (which hold it weakly)

 private:
  std::shared_ptr<State> state_;
};

}  // namespace rg::dist
