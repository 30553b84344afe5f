// Data-parallel equivalence, run as `mpirun -np 2 rg_mpi_equivalence` (CTest:
// mpi_data_parallel_equivalence). Both ranks train a small U-Net + PatchGAN (vanilla GAN, batch
// norm made synchronous, gradients averaged by GradientSync in small buckets) for a few steps on
// fixed data, each on its half of a batch of B. Rank 0 then trains the same models in a single
// process (no communicator, plain BatchNorm) on the whole batch and compares every parameter and
// running statistic.
//
// Why they agree: with SyncBatchNorm every normalization sees the statistics of the whole batch
// of B; every loss is a mean over the samples (BCE, LSGAN/vanilla terms) or a mean of
// per-sample terms (soft Dice), so the average of the two half-batch gradients is the gradient
// of the whole batch. What remains is floating-point summation order (per-rank partial sums
// added by the all-reduce, convolution GEMMs over 2 instead of 4 images), i.e. f32 rounding of
// relative size ~1e-7 per operation, carried through a few Adam steps.
//
// Tolerance: per tensor, ||p_dp - p_ref|| / ||p_ref|| <= 1e-5 (relative, in the L2 norm). Adam
// normalizes each update by sqrt(v): for the few elements whose gradient is near zero the update
// direction is decided by rounding noise, which can move single elements by up to lr per step;
// the per-tensor norm is not dominated by them. To show the check has teeth, the program also
// prints how far the parameters moved from their initialization (which must be far above the
// tolerance) and the difference when batch norm is NOT synchronized (which must fail it).
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>

#include "apps/seg/seg_gan.h"
#include "engine/checkpoint.h"
#include "engine/dist/communicator.h"
#include "engine/dist/data_parallel.h"
#include "engine/dist/sync_batch_norm.h"
#include "engine/roentgen.h"
#include "models/patchgan.h"
#include "models/unet.h"
#include "tests/dist/mpi_check.h"

using namespace rg;

namespace {

constexpr int64_t kBatch = 4, kSize = 32, kSteps = 3;
constexpr double kTolerance = 1e-5;

struct Data {
  Tensor image, mask;  // [kBatch, 32, 32, 1]
};

Data make_data() {
  Generator gen(1234);
  Tensor noise = Tensor::empty({kBatch, kSize, kSize, 1});
  uniform_(noise, -1.0, 1.0, gen);
  std::vector<float> img(noise.numel()), msk(noise.numel());
  const std::vector<float> n = noise.to_vector<float>();
  for (int64_t b = 0; b < kBatch; ++b) {
    const double cx = 10 + 3 * b, cy = 16 - 2 * b, r = 6 + b;  // a disc per image, plus noise
    for (int64_t y = 0; y < kSize; ++y) {
      for (int64_t x = 0; x < kSize; ++x) {
        const int64_t i = (b * kSize + y) * kSize + x;
        const bool inside = (x - cx) * (x - cx) + (y - cy) * (y - cy) < r * r;
        msk[i] = inside ? 1.0f : 0.0f;
        img[i] = static_cast<float>((inside ? 0.5 : -0.5) + 0.4 * n[i]);
      }
    }
  }
  return {Tensor::from_vector(img, {kBatch, kSize, kSize, 1}),
          Tensor::from_vector(msk, {kBatch, kSize, kSize, 1})};
}

struct Trained {
  NamedTensors state;    // G.* and D.*: parameters and buffers
  NamedTensors initial;  // the same, before training
};

NamedTensors snapshot(const nn::Module& g, const nn::Module& d) {
  NamedTensors out;
  for (auto& [name, t] : module_state(g, "G.")) out.emplace_back(name, t.clone());
  for (auto& [name, t] : module_state(d, "D.")) out.emplace_back(name, t.clone());
  return out;
}

// comm == nullptr: the plain single-process run on the whole batch.
Trained train(const Data& data, dist::Communicator* comm, bool sync_bn) {
  models::UnetConfig gc;
  gc.num_downs = 5;
  gc.ngf = 4;
  models::PatchGanConfig dc;
  dc.in_channels = 2;
  dc.ndf = 4;
  dc.n_layers = 3;
  Generator init_gen(7);
  models::UnetGenerator g(gc, init_gen);
  models::PatchDiscriminator d(dc, init_gen);
  Trained out;
  out.initial = snapshot(g, d);

  Tensor image = data.image, mask = data.mask;
  std::unique_ptr<dist::GradientSync> g_sync, d_sync;
  if (comm) {
    if (sync_bn) {
      dist::convert_sync_batch_norm(g, comm);
      dist::convert_sync_batch_norm(d, comm);
    }
    dist::broadcast_module_state(g, *comm);
    dist::broadcast_module_state(d, *comm);
    // Small buckets (16 KiB) so that several are in flight during each backward.
    const dist::GradientSyncOptions opts{.bucket_cap_mib = 1.0 / 64};
    g_sync = std::make_unique<dist::GradientSync>(g.parameters(), *comm, opts);
    d_sync = std::make_unique<dist::GradientSync>(d.parameters(), *comm, opts);
    const int64_t per_rank = kBatch / comm->world_size();
    const int64_t start = comm->rank() * per_rank;
    image = image.slice(0, start, start + per_rank).contiguous();
    mask = mask.slice(0, start, start + per_rank).contiguous();
  }
  optim::Adam opt_g(g.parameters(), {.lr = 2e-4, .beta1 = 0.5, .beta2 = 0.999});
  optim::Adam opt_d(d.parameters(), {.lr = 2e-4, .beta1 = 0.5, .beta2 = 0.999});
  Generator rng(99);
  app::SegGanStep trainer(g, &d, opt_g, &opt_d, {.mode = train::GanMode::Vanilla, .lambda_seg = 100.0},
                             rng);
  trainer.set_gradient_sync(g_sync.get(), d_sync.get());
  for (int64_t s = 0; s < kSteps; ++s) trainer.step(image, mask);
  out.state = snapshot(g, d);
  return out;
}

double norm2(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x * x;
  return std::sqrt(s);
}

struct Comparison {
  double worst_rel = 0, worst_abs = 0;
  std::string worst_name;
};

Comparison compare(const NamedTensors& a, const NamedTensors& b) {
  Comparison c;
  RG_CHECK(a.size() == b.size(), "state sizes differ: ", a.size(), " vs ", b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    RG_CHECK(a[i].first == b[i].first, "state names differ: ", a[i].first, " vs ", b[i].first);
    const std::vector<double> x = a[i].second.to_vector<double>(), y = b[i].second.to_vector<double>();
    std::vector<double> diff(x.size());
    double max_abs = 0;
    for (size_t k = 0; k < x.size(); ++k) {
      diff[k] = x[k] - y[k];
      max_abs = std::max(max_abs, std::abs(diff[k]));
    }
    const double rel = norm2(diff) / std::max(norm2(y), 1e-30);
    if (rel > c.worst_rel) {
      c.worst_rel = rel;
      c.worst_name = a[i].first;
    }
    c.worst_abs = std::max(c.worst_abs, max_abs);
  }
  return c;
}

int run(dist::Communicator& comm) {
  RG_CHECK(comm.world_size() > 1 && kBatch % comm.world_size() == 0,
           "run this under mpirun with a world size dividing ", kBatch, " (got ", comm.world_size(), ")");
  // Failure drill (CTest mpi_rank_failure_aborts): this rank throws before its first collective;
  // the job must stop with a message instead of the other rank hanging in the broadcast.
  if (const char* fail = std::getenv("RG_MPI_TEST_FAIL_RANK"); fail && std::atoi(fail) == comm.rank()) {
    RG_FAIL("injected failure (RG_MPI_TEST_FAIL_RANK=", fail, ")");
  }
  const Data data = make_data();
  const Trained dp = train(data, &comm, /*sync_bn=*/true);
  const Trained dp_unsynced = train(data, &comm, /*sync_bn=*/false);

  // Replicas must agree exactly: compare every rank with rank 0.
  double replica_diff = 0;
  for (const auto& [name, t] : dp.state) {
    Tensor mine = t.contiguous().clone(), root = t.contiguous().clone();
    comm.broadcast(root, 0);
    const std::vector<float> a = mine.to_vector<float>(), b = root.to_vector<float>();
    for (size_t k = 0; k < a.size(); ++k) replica_diff = std::max(replica_diff, double(std::abs(a[k] - b[k])));
  }
  std::vector<double> flags{replica_diff};
  comm.all_reduce_sum(flags);
  replica_diff = flags[0];

  std::vector<double> verdict{0.0};  // rank 0's failures, shared so every rank exits alike
  if (comm.rank() == 0) {
    const Trained ref = train(data, nullptr, false);
    const Comparison c = compare(dp.state, ref.state);
    const Comparison moved = compare(ref.initial, ref.state);
    const Comparison unsynced = compare(dp_unsynced.state, ref.state);
    std::printf("mpi_equivalence: %d ranks x batch %lld vs 1 process x batch %lld, %lld GAN steps, "
                "%zu tensors\n", comm.world_size(), static_cast<long long>(kBatch / comm.world_size()),
                static_cast<long long>(kBatch), static_cast<long long>(kSteps), ref.state.size());
    std::printf("  SyncBatchNorm + GradientSync vs reference: worst relative L2 %.3g (%s), worst abs %.3g "
                "(tolerance %.0e relative)\n", c.worst_rel, c.worst_name.c_str(), c.worst_abs, kTolerance);
    std::printf("  replicas vs rank 0: max abs difference %.3g\n", replica_diff);
    std::printf("  for scale: training moved the parameters by up to %.3g relative (%s); unsynchronized "
                "batch norm differs from the reference by %.3g relative (%s)\n", moved.worst_rel,
                moved.worst_name.c_str(), unsynced.worst_rel, unsynced.worst_name.c_str());
    if (!(c.worst_rel <= kTolerance)) {
      std::printf("FAIL: data-parallel parameters differ from the single-process run\n");
      verdict[0] += 1;
    }
    if (replica_diff != 0) {
      std::printf("FAIL: the replicas diverged\n");
      verdict[0] += 1;
    }
    if (!(unsynced.worst_rel > kTolerance)) {
      std::printf("FAIL: unsynchronized batch norm also matches: the test cannot tell them apart\n");
      verdict[0] += 1;
    }
    if (verdict[0] == 0) std::printf("PASS\n");
    std::fflush(stdout);
  }
  comm.all_reduce_sum(verdict);
  return verdict[0] == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  return rg::mpi_check::run_main(argc, argv, "mpi_equivalence", [](rg::dist::Communicator& comm) { return run(comm); });
}
