#include "engine/dist/data_parallel.h"

#include <algorithm>

#include "engine/autograd.h"
#include "engine/ops/ops.h"

namespace rg::dist {

namespace {

// Broadcasts one tensor in place, through a contiguous staging copy when needed (a strided
// tensor, or one on a device the communicator does not take).
void broadcast_one(const Tensor& t, Communicator& comm, int root) {
  if (!t.defined()) return;
  NoGradGuard no_grad;
  if (t.is_contiguous() && comm.supports(t.device())) {
    Tensor view = t;
    comm.broadcast(view, root);
    return;
  }
  if (comm.supports(t.device())) {
    Tensor staging = t.contiguous().clone();
    comm.broadcast(staging, root);
    Tensor dst = t;
    dst.copy_(staging);
    return;
  }
  Tensor staging = t.to(Device::cpu()).contiguous().clone();
  comm.broadcast(staging, root);
  Tensor dst = t;
  dst.copy_(staging);
}

}  // namespace

void broadcast_tensors(const std::vector<Tensor>& tensors, Communicator& comm, int root) {
  if (comm.world_size() == 1) return;
  for (const Tensor& t : tensors) broadcast_one(t, comm, root);
}

void broadcast_module_state(nn::Module& module, Communicator& comm, int root) {
  if (comm.world_size() == 1) return;
  for (auto& [name, t] : module.named_parameters()) broadcast_one(t, comm, root);
  for (auto& [name, t] : module.named_buffers()) broadcast_one(t, comm, root);
}

struct GradientSync::State {
  struct Param {
    Tensor tensor;
    size_t bucket = 0;
    int64_t offset = 0;  // in the bucket's flat buffer
    int count = 0;       // accumulations this step
    int expected = 1;
  };
  struct Bucket {
    std::vector<size_t> members;
    int64_t numel = 0;
    DType dtype = DType::F32;
    Device device;  // of every member; the flat buffer lives there
    size_t complete = 0;  // members with count >= expected
    bool launched = false;
    bool dirty = false;   // an accumulation arrived after the launch
    Tensor flat;
    std::unique_ptr<PendingReduce> pending;
  };

  Communicator& comm;
  std::vector<Param> params;
  std::vector<Bucket> buckets;
  size_t next_to_launch = 0;
  std::vector<Launch> launches;
  bool step_started = false;  // launches belong to the current step

  explicit State(Communicator& c) : comm(c) {}

  void begin_step_if_needed() {
    if (!step_started) {
      launches.clear();
      step_started = true;
    }
  }

  void launch(size_t b, Phase phase) {
    Bucket& bucket = buckets[b];
    NoGradGuard no_grad;
    // Kept for the whole run: a device collective reads and writes it on the communicator's
    // stream until the wait() in finish(), which orders every later use after it.
    if (!bucket.flat.defined()) {
      bucket.flat = Tensor::empty({bucket.numel}, bucket.dtype, bucket.device);
    }
    for (size_t i : bucket.members) {
      const Param& p = params[i];
      Tensor dst = bucket.flat.slice(0, p.offset, p.offset + p.tensor.numel()).reshape(p.tensor.shape());
      const Tensor g = p.tensor.grad();
      if (g.defined()) {
        dst.copy_(g);
      } else {
        dst.fill_(0.0);
      }
    }
    bucket.pending = comm.start_all_reduce_sum(bucket.flat);
    bucket.launched = true;
    launches.push_back({b, phase});
  }

  // Launches, in bucket order, every bucket that is complete and whose predecessors are launched.
  void launch_ready() {
    while (next_to_launch < buckets.size() &&
           buckets[next_to_launch].complete == buckets[next_to_launch].members.size()) {
      launch(next_to_launch, Phase::Backward);
      ++next_to_launch;
    }
  }

  void on_accumulate(size_t i) {
    begin_step_if_needed();
    Param& p = params[i];
    Bucket& bucket = buckets[p.bucket];
    ++p.count;
    if (bucket.launched) {
      bucket.dirty = true;  // the copy in flight misses this accumulation
    } else if (p.count == p.expected) {
      ++bucket.complete;
      launch_ready();
    }
    // Give MPI a chance to progress the reductions in flight (see PendingReduce::test).
    for (size_t b = 0; b < next_to_launch; ++b) {
      if (buckets[b].pending) buckets[b].pending->test();
    }
  }

  bool touched(const Bucket& bucket) const {
    return std::any_of(bucket.members.begin(), bucket.members.end(),
                       [&](size_t i) { return params[i].count > 0; });
  }

  void finish() {
    begin_step_if_needed();
    std::vector<bool> skip(buckets.size(), false);
    for (size_t b = next_to_launch; b < buckets.size(); ++b) {
      if (!touched(buckets[b])) {
        skip[b] = true;  // no member got a gradient on any rank (same frozen set everywhere)
        continue;
      }
      launch(b, Phase::Finish);
    }
    for (size_t b = 0; b < buckets.size(); ++b) {
      if (!buckets[b].dirty) continue;
      buckets[b].pending->wait();
      launch(b, Phase::Redo);
    }
    const int world = comm.world_size();
    NoGradGuard no_grad;
    for (size_t b = 0; b < buckets.size(); ++b) {
      Bucket& bucket = buckets[b];
      if (skip[b]) continue;
      bucket.pending->wait();
      bucket.pending.reset();
      if (world > 1) mul_(bucket.flat, 1.0 / world);
      for (size_t i : bucket.members) {
        Param& p = params[i];
        Tensor g = p.tensor.grad();
        if (!g.defined()) continue;
        g.copy_(bucket.flat.slice(0, p.offset, p.offset + p.tensor.numel()).reshape(p.tensor.shape()));
      }
    }
    // Learn how many accumulations each parameter receives per step; reset for the next step.
    for (Param& p : params) {
      if (p.count > 0) p.expected = p.count;
      p.count = 0;
    }
    for (Bucket& bucket : buckets) {
      bucket.complete = 0;
      bucket.launched = false;
      bucket.dirty = false;
    }
    next_to_launch = 0;
    step_started = false;
  }
};

GradientSync::GradientSync(std::vector<Tensor> parameters, Communicator& comm,
                           GradientSyncOptions options)
    : state_(std::make_shared<State>(comm)) {
  RG_CHECK(options.bucket_cap_mib > 0, "GradientSync: bucket_cap_mib must be > 0, got ",
           options.bucket_cap_mib);
  const auto cap = static_cast<int64_t>(options.bucket_cap_mib * 1024.0 * 1024.0);
  State& s = *state_;
  for (const Tensor& t : parameters) {
    RG_CHECK(t.defined() && t.is_leaf(), "GradientSync: parameters must be defined leaf tensors");
    RG_CHECK(t.dtype() == DType::F32 || t.dtype() == DType::F64, "GradientSync: parameter of dtype ",
             dtype_name(t.dtype()), " (gradients are reduced in f32 or f64)");
    State::Param p;
    p.tensor = t;
    s.params.push_back(p);
  }
  // Reverse registration order: the last layers' gradients are ready first.
  int64_t bytes = 0;
  for (size_t k = s.params.size(); k-- > 0;) {
    State::Param& p = s.params[k];
    const int64_t nbytes = static_cast<int64_t>(p.tensor.nbytes());
    const bool new_bucket = s.buckets.empty() || s.buckets.back().dtype != p.tensor.dtype() ||
                            s.buckets.back().device != p.tensor.device() ||
                            (bytes + nbytes > cap && !s.buckets.back().members.empty());
    if (new_bucket) {
      s.buckets.emplace_back();
      s.buckets.back().dtype = p.tensor.dtype();
      s.buckets.back().device = p.tensor.device();
      bytes = 0;
    }
    State::Bucket& bucket = s.buckets.back();
    p.bucket = s.buckets.size() - 1;
    p.offset = bucket.numel;
    bucket.numel += p.tensor.numel();
    bucket.members.push_back(k);
    bytes += nbytes;
  }
  std::weak_ptr<State> weak = state_;
  for (size_t i = 0; i < s.params.size(); ++i) {
    s.params[i].tensor.add_post_accumulate_hook([weak, i](const Tensor&) {
      if (auto state = weak.lock()) state->on_accumulate(i);
    });
  }
}

GradientSync::~GradientSync() {
  // Reductions still in flight write into our buffers: wait for them (handles wait on destruction).
  for (State::Bucket& bucket : state_->buckets) bucket.pending.reset();
}

void GradientSync::finish() { state_->finish(); }

size_t GradientSync::bucket_count() const { return state_->buckets.size(); }

const std::vector<size_t>& GradientSync::bucket_members(size_t bucket) const {
  RG_CHECK(bucket < state_->buckets.size(), "GradientSync: no bucket ", bucket);
  return state_->buckets[bucket].members;
}

int64_t GradientSync::bucket_numel(size_t bucket) const {
  RG_CHECK(bucket < state_->buckets.size(), "GradientSync: no bucket ", bucket);
  return state_->buckets[bucket].numel;
}

const std::vector<GradientSync::Launch>& GradientSync::launches() const { return state_->launches; }

int GradientSync::expected_accumulations(size_t parameter) const {
  RG_CHECK(parameter < state_->params.size(), "GradientSync: no parameter ", parameter);
  return state_->params[parameter].expected;
}

}  // namespace rg::dist
