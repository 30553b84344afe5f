// The training run under mpirun (apps/seg/seg_run.h), two CTests:
//
// `mpirun -np 1 rg_mpi_seg_run` (mpi_seg_run_world1): the data-parallel path at world size 1
// (MPI communicator, GradientSync, sharded evaluation) against the plain run (no communicator):
// every logged loss and every validation and test metric must be bit-identical (a one-rank
// all-reduce leaves values unchanged, and the gradients are copied, not recomputed). This is
// the CPU twin of the GPU check in docs/scaling.md (NCCL at world size 1 under mpirun -np 1);
// it also runs --max-steps (max_steps), which stops with exit code 0 after N steps.
//
// `mpirun -np 2 rg_mpi_seg_run` (mpi_seg_run):
//  1. Resume position: the loader's batch at stream position k on each of 2 ranks, put
//     together, is the batch one process gets at k (same samples, interleaved), for positions
//     inside and across epochs: a checkpoint's global step is a global sample position.
//  2. Sharded evaluation: evaluate_segmentation over 2 ranks gives exactly (==) the per-slice
//     and per-volume metrics and picture rows of a single-process evaluation of the same model,
//     for batch sizes that leave a partial round and a partial last batch.
//  3. Resume at another world size: a 2-rank run interrupted after k steps and resumed by one
//     process, against the uninterrupted 2-rank run and the uninterrupted 1-process run. Up to
//     step k the resumed run *is* the 2-rank run (equal); after it, one process computes what 2
//     ranks would have, up to floating-point summation order (SyncBatchNorm, the all-reduce and
//     GEMMs over half batches sum in another order: ~1e-7 relative per operation), which a GAN
//     amplifies over the remaining steps. Tolerance: every logged loss within 1e-5 relative of
//     both uninterrupted runs' (measured: 9e-8 against the 2-rank run, 3e-7 against the
//     1-process run, which itself differs from the 2-rank run by 3e-7), validation and test Dice
//     within 1e-2 absolute (a pixel flipping in a small structure may move a slice's Dice; the
//     measured difference is 0). For scale the program prints how much the losses change from
//     one step to the next (0.2 relative). A resume with another global batch size is refused.

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "apps/seg/seg_gan.h"
#include "apps/seg/seg_run.h"
#include "data/loader.h"
#include "data/prepare.h"
#include "data/slice_dataset.h"
#include "engine/dist/communicator.h"
#include "engine/dist/data_parallel.h"
#include "engine/roentgen.h"
#include "tests/dist/mpi_check.h"
#include "models/unet.h"
#include "tests/apps/tiny_phantom.h"

using namespace rg;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

using mpi_check::expect;

// A tiny prepared file (4 phantom subjects at 32x32, split 2/1/1 by subject: 32/16/16 slices,
// 4-9% lung pixels, some slices empty) written by rank 0 in a directory named after its pid,
// which every rank learns.
fs::path make_dataset(dist::Communicator& comm) {
  const fs::path dir = mpi_check::shared_scratch_files(comm, "rg_mpi_seg_run", [](const fs::path& d) {
    data::PhantomOptions po;
    po.dims = {96, 96, 16};  // smaller phantoms lose the lungs (empty masks) at 32x32
    data::PrepareOptions opts;
    opts.size = 32;
    opts.labels = {3, 4};
    opts.fractions = {0.5, 0.25, 0.25};
    opts.progress = false;
    data::prepare_slices(data::phantom_subjects(4, 7, po), opts, (d / "tiny.h5").string());
  });
  return dir / "tiny.h5";
}

app::SegRunConfig tiny_run(const fs::path& data, const std::string& name) {
  app::SegRunConfig c;
  c.data = data.string();
  c.name = name;
  c.out_dir = (data.parent_path() / "runs").string();
  c.epochs = 2;
  c.epochs_decay = 1;
  app::test_data::set_tiny_networks(c);
  c.seed = 9;
  c.lr = 2e-3;  // predictions become non-trivial within the few steps of the tiny run
  return c;
}

std::vector<json> lines_of_kind(const fs::path& jsonl, const std::string& kind) {
  std::ifstream in(jsonl);
  std::vector<json> out;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    json j = json::parse(line);
    if (j["kind"] == kind) out.push_back(j);
  }
  return out;
}

fs::path metrics_of(const app::SegRunConfig& c) {
  return fs::path(c.out_dir) / c.name / "metrics.jsonl";
}

const char* const kLossKeys[] = {"d_loss", "g_adv", "g_bce", "g_dice"};
const char* const kMetricKeys[] = {"dice",        "dice_std",      "dice_nonempty", "iou",
                                   "hd95",        "hd95_infinite", "slices",        "volumes",
                                   "dice_volume", "iou_volume",    "hd95_volume"};

// Exact equality of two runs' logs (train, val and test lines).
void expect_identical_logs(const fs::path& a, const fs::path& b, const std::string& what,
                           size_t max_train = SIZE_MAX) {
  const auto ta = lines_of_kind(a, "train"), tb = lines_of_kind(b, "train");
  const size_t n = std::min(ta.size(), max_train);
  expect(tb.size() >= n && n > 0, what + ": train line counts " + std::to_string(ta.size()) +
                                      " vs " + std::to_string(tb.size()));
  for (size_t i = 0; i < n && i < tb.size(); ++i) {
    for (const char* k : kLossKeys) {
      expect(ta[i][k].get<double>() == tb[i][k].get<double>(),
             what + ": " + k + " differs at step " + ta[i]["step"].dump() + ": " + ta[i][k].dump() +
                 " vs " + tb[i][k].dump());
    }
  }
  if (max_train != SIZE_MAX) return;
  for (const char* kind : {"val", "test"}) {
    const auto va = lines_of_kind(a, kind), vb = lines_of_kind(b, kind);
    expect(va.size() == vb.size() && !va.empty(), what + ": " + kind + " line counts differ");
    for (size_t i = 0; i < std::min(va.size(), vb.size()); ++i) {
      for (const char* k : kMetricKeys) {
        expect(va[i][k] == vb[i][k], what + ": " + kind + " " + k + " differs: " + va[i][k].dump() +
                                         " vs " + vb[i][k].dump());
      }
    }
  }
}

// ---- world size 1 -----------------------------------------------------------------------------

void world1(dist::Communicator& comm, const fs::path& data) {
  dist::LocalCommunicator local;
  const app::SegRunConfig plain = tiny_run(data, "plain");
  expect(app::run_seg_training(plain, local) == 0, "plain run");
  const app::SegRunConfig job = tiny_run(data, "mpi_world1");
  expect(app::run_seg_training(job, comm) == 0, "mpirun -np 1 run");
  expect_identical_logs(metrics_of(plain), metrics_of(job), "mpirun -np 1 vs plain");
  app::SegRunConfig short_run = tiny_run(data, "mpi_world1_max_steps");
  short_run.max_steps = 3;
  expect(app::run_seg_training(short_run, comm) == 0, "--max-steps 3 returns 0");
  expect(lines_of_kind(metrics_of(short_run), "train").size() == 3, "--max-steps 3 logs 3 steps");
  expect(fs::exists(fs::path(short_run.out_dir) / short_run.name / "checkpoints" / "latest.json"),
         "--max-steps leaves a resumable checkpoint");
  expect_identical_logs(metrics_of(plain), metrics_of(short_run), "--max-steps vs plain", 3);
  std::printf(
      "mpi_seg_run (world size 1): the data-parallel path under mpirun -np 1 logs the "
      "plain run's losses and metrics bit for bit; --max-steps stops at step 3\n");
}

// ---- world size 2: 1. the resume position ----------------------------------------------------

void loader_positions(dist::Communicator& comm, const fs::path& data) {
  const int world = comm.world_size();
  const int64_t global_batch = 4;
  data::LoaderOptions lo;
  lo.split = "train";
  lo.shuffle = true;
  lo.seed = 5;
  lo.epochs = 0;
  lo.workers = 0;
  lo.drop_last = true;
  int64_t bpe = 0;
  {
    data::LoaderOptions one = lo;
    one.batch_size = global_batch;
    bpe = data::Loader(data.string(), one).batches_per_epoch();
  }
  int checked = 0;
  for (int64_t k : {int64_t{0}, int64_t{1}, bpe - 1, bpe, bpe + 2, 3 * bpe + 1}) {
    data::LoaderOptions mine = lo;
    mine.batch_size = global_batch / world;
    mine.rank = comm.rank();
    mine.world_size = world;
    mine.start_batch = k;
    data::Loader loader(data.string(), mine);
    expect(loader.batches_per_epoch() == bpe, "batches per epoch differ between world sizes");
    const data::Batch b = *loader.next();
    // Gather every rank's indices: position r + world * i of the global batch.
    std::vector<double> global(static_cast<size_t>(global_batch), 0.0);
    for (size_t i = 0; i < b.indices.size(); ++i) {
      global[static_cast<size_t>(comm.rank()) + static_cast<size_t>(world) * i] =
          static_cast<double>(b.indices[i]);
    }
    comm.all_reduce_sum(global);
    if (comm.rank() != 0) continue;
    data::LoaderOptions one = lo;
    one.batch_size = global_batch;
    one.start_batch = k;
    const data::Batch ref = *data::Loader(data.string(), one).next();
    std::vector<double> expected(ref.indices.begin(), ref.indices.end());
    expect(global == expected, "stream position " + std::to_string(k) +
                                   ": the ranks' batches do not interleave into one process's");
    expect(b.epoch == ref.epoch && b.step == ref.step,
           "stream position maps to another epoch/step");
    ++checked;
  }
  if (comm.rank() == 0) {
    std::printf(
        "  resume position: %d stream positions (inside and across epochs, %lld batches "
        "per epoch): 2 ranks' batches = one process's batch\n",
        checked, static_cast<long long>(bpe));
  }
}

// ---- world size 2: 2. sharded evaluation ------------------------------------------------------

bool same_stats(const train::MetricStats& a, const train::MetricStats& b) {
  return a.count == b.count && a.mean == b.mean && a.std == b.std;
}

bool same_summary(const train::MetricSummary& a, const train::MetricSummary& b) {
  return a.items == b.items && same_stats(a.dice, b.dice) && same_stats(a.iou, b.iou) &&
         same_stats(a.hd95, b.hd95) && same_stats(a.dice_nonempty, b.dice_nonempty) &&
         a.hd95_infinite == b.hd95_infinite && a.empty_target == b.empty_target &&
         a.empty_pred == b.empty_pred && a.empty_both == b.empty_both &&
         a.missing_slices == b.missing_slices;
}

void sharded_evaluation(dist::Communicator& comm, const fs::path& data) {
  // A briefly trained U-Net, so that predictions are neither empty nor full; every rank trains
  // the same one, and rank 0's copy is broadcast to be certain.
  Generator init(21);
  models::UnetGenerator g(models::UnetConfig{.num_downs = 5, .ngf = 4}, init);
  {
    data::SliceDataset train(data.string(), "train");
    const int64_t n = std::min<int64_t>(8, train.size()), hw = train.height() * train.width();
    Tensor x = Tensor::empty({n, train.height(), train.width(), 1});
    Tensor m = Tensor::empty({n, train.height(), train.width(), 1});
    for (int64_t i = 0; i < n; ++i) {
      train.read(i * (train.size() / n), x.data<float>() + i * hw, m.data<float>() + i * hw);
    }
    optim::Adam opt(g.parameters(), {.lr = 2e-3, .beta1 = 0.5});
    Generator rng(3);
    app::SegGanStep trainer(g, nullptr, opt, nullptr, {.mode = train::GanMode::None}, rng);
    for (int step = 0; step < 15; ++step) trainer.step(x, m);
  }
  dist::broadcast_module_state(g, comm);

  for (const char* split : {"val", "test"}) {
    data::SliceDataset ds(data.string(), split);
    ds.preload();
    for (int64_t batch : {int64_t{3}, int64_t{5}}) {
      const app::SegEvaluation sharded =
          app::evaluate_segmentation(g, ds, batch, DType::F32, Device::cpu(), 4, comm);
      if (comm.rank() != 0) {
        expect(sharded.slices.items == 0 && sharded.samples.empty(),
               "evaluation results on a rank other than 0");
        continue;
      }
      dist::LocalCommunicator local;
      const app::SegEvaluation single =
          app::evaluate_segmentation(g, ds, batch, DType::F32, Device::cpu(), 4, local);
      const std::string what = std::string(split) + " batch " + std::to_string(batch);
      expect(same_summary(sharded.slices, single.slices), what + ": per-slice metrics differ");
      expect(same_summary(sharded.volumes, single.volumes), what + ": per-volume metrics differ");
      expect(sharded.samples.size() == single.samples.size() && !single.samples.empty(),
             what + ": picture rows differ in number");
      for (size_t r = 0; r < std::min(sharded.samples.size(), single.samples.size()); ++r) {
        expect(sharded.samples[r].prob == single.samples[r].prob &&
                   sharded.samples[r].target == single.samples[r].target &&
                   sharded.samples[r].image == single.samples[r].image,
               what + ": picture row " + std::to_string(r) + " differs");
      }
      // Non-degenerate metrics, or the equality above would prove little.
      expect(
          single.slices.dice.mean > 0.05 && single.slices.dice.mean < 0.999 &&
              single.slices.hd95.count > 0,
          what + ": degenerate predictions (Dice " + std::to_string(single.slices.dice.mean) + ")");
      std::printf(
          "  sharded %s, batch %lld, %d slices in %lld rounds: per-slice Dice %.6f IoU %.6f "
          "HD95 %.4f (%d inf), per-volume Dice %.6f HD95 %.4f over %d volumes: equal (==) to "
          "one process\n",
          split, static_cast<long long>(batch), single.slices.items,
          static_cast<long long>((ds.size() + batch * 2 - 1) / (batch * 2)),
          single.slices.dice.mean, single.slices.iou.mean, single.slices.hd95.mean,
          single.slices.hd95_infinite, single.volumes.dice.mean, single.volumes.hd95.mean,
          single.volumes.items);
    }
  }
}

// ---- world size 2: 3. resume at another world size ---------------------------------------------

double rel_diff(double a, double b) {
  return std::abs(a - b) / std::max(std::abs(b), 1e-12);
}

struct LossComparison {
  double worst_rel = 0;
  std::string where;
};

LossComparison compare_losses(const std::vector<json>& a, const std::vector<json>& b, size_t from) {
  LossComparison c;
  for (size_t i = from; i < std::min(a.size(), b.size()); ++i) {
    for (const char* k : kLossKeys) {
      const double r = rel_diff(a[i][k].get<double>(), b[i][k].get<double>());
      if (r > c.worst_rel) {
        c.worst_rel = r;
        c.where = std::string(k) + " at step " + a[i]["step"].dump();
      }
    }
  }
  return c;
}

void resume_across_world_sizes(dist::Communicator& comm, const fs::path& data) {
  constexpr int64_t kStopAfter = 5;  // inside the second epoch of 4-sample batches
  constexpr double kLossTolerance = 1e-5, kDiceTolerance = 1e-2;
  const app::SegRunConfig straight2 = tiny_run(data, "straight_2ranks");
  expect(app::run_seg_training(straight2, comm) == 0, "uninterrupted 2-rank run");
  app::SegRunConfig first = tiny_run(data, "resumed_2to1");
  first.interrupt_after_steps = kStopAfter;
  expect(app::run_seg_training(first, comm) == 130, "interrupted 2-rank run returns 130");
  if (comm.rank() == 0) {
    dist::LocalCommunicator local;
    const fs::path ckpt = fs::path(first.out_dir) / first.name / "checkpoints" / "latest.json";
    std::ifstream in(ckpt);
    const json meta = json::parse(in);
    expect(meta["world_size"] == 2 && meta["samples_seen"] == kStopAfter * first.batch_size,
           "checkpoint records world size 2 and sample " +
               std::to_string(kStopAfter * first.batch_size));
    app::SegRunConfig other_batch = tiny_run(data, first.name);
    other_batch.resume = true;
    other_batch.batch_size = 2;
    std::string refused;
    try {
      app::run_seg_training(other_batch, local);
    } catch (const Error& e) {
      refused = e.what();
    }
    expect(refused.find("--batch-size 4") != std::string::npos,
           "a resume with another global batch size is refused (got: " + refused + ")");
    app::SegRunConfig second = tiny_run(data, first.name);
    second.resume = true;
    expect(app::run_seg_training(second, local) == 0, "1-process resume");
    const app::SegRunConfig straight1 = tiny_run(data, "straight_1process");
    expect(app::run_seg_training(straight1, local) == 0, "uninterrupted 1-process run");

    const auto resumed = lines_of_kind(metrics_of(first), "train");
    const auto ref2 = lines_of_kind(metrics_of(straight2), "train");
    const auto ref1 = lines_of_kind(metrics_of(straight1), "train");
    expect(resumed.size() == ref2.size() && resumed.size() == ref1.size() &&
               resumed.size() > static_cast<size_t>(kStopAfter),
           "the three runs log the same steps");
    const LossComparison before_in = [&] {
      std::vector<json> head(resumed.begin(), resumed.begin() + kStopAfter);
      return compare_losses(head, ref2, 0);
    }();
    expect(before_in.worst_rel == 0, "the first " + std::to_string(kStopAfter) +
                                         " steps differ from the 2-rank run they are");
    const LossComparison after2 = compare_losses(resumed, ref2, kStopAfter);
    const LossComparison after1 = compare_losses(resumed, ref1, kStopAfter);
    const LossComparison dp_vs_single = compare_losses(ref2, ref1, 0);
    LossComparison step_to_step;
    for (size_t i = 1; i < ref2.size(); ++i) {
      for (const char* k : kLossKeys) {
        step_to_step.worst_rel =
            std::max(step_to_step.worst_rel,
                     rel_diff(ref2[i][k].get<double>(), ref2[i - 1][k].get<double>()));
      }
    }
    expect(after2.worst_rel <= kLossTolerance,
           "resumed vs uninterrupted 2-rank losses: " + std::to_string(after2.worst_rel) +
               " relative (" + after2.where + ")");
    expect(after1.worst_rel <= kLossTolerance,
           "resumed vs uninterrupted 1-process losses: " + std::to_string(after1.worst_rel) +
               " relative (" + after1.where + ")");
    double worst_dice = 0;
    for (const char* kind : {"val", "test"}) {
      const auto va = lines_of_kind(metrics_of(first), kind),
                 vb = lines_of_kind(metrics_of(straight2), kind);
      expect(va.size() == vb.size() && !va.empty(), std::string(kind) + " lines differ in number");
      for (size_t i = 0; i < std::min(va.size(), vb.size()); ++i) {
        for (const char* k : {"dice", "dice_volume"}) {
          worst_dice =
              std::max(worst_dice, std::abs(va[i][k].get<double>() - vb[i][k].get<double>()));
        }
      }
    }
    expect(worst_dice <= kDiceTolerance,
           "resumed vs 2-rank validation/test Dice differ by " + std::to_string(worst_dice));
    std::printf(
        "  resume 2 ranks -> 1 process after step %lld of %zu: losses vs the uninterrupted "
        "2-rank run: steps 1-%lld equal, later worst %.3g relative (%s); vs the 1-process "
        "run: worst %.3g (%s); 2 ranks vs 1 process throughout: %.3g; val/test Dice vs "
        "2 ranks: %.3g (tolerances %.0e relative, %.0e absolute). For scale: losses change "
        "by up to %.3g relative from one step to the next\n",
        static_cast<long long>(kStopAfter), resumed.size(), static_cast<long long>(kStopAfter),
        after2.worst_rel, after2.where.c_str(), after1.worst_rel, after1.where.c_str(),
        dp_vs_single.worst_rel, worst_dice, kLossTolerance, kDiceTolerance, step_to_step.worst_rel);
  }
  comm.barrier();
}

int run(dist::Communicator& comm) {
  const fs::path data = make_dataset(comm);
  if (comm.world_size() == 1) {
    world1(comm, data);
  } else {
    RG_CHECK(comm.world_size() == 2, "run under mpirun -np 1 or -np 2 (got ", comm.world_size(),
             ")");
    if (comm.rank() == 0) std::printf("mpi_seg_run (world size 2):\n");
    loader_positions(comm, data);
    sharded_evaluation(comm, data);
    resume_across_world_sizes(comm, data);
  }
  const int code = mpi_check::verdict(comm);
  if (comm.rank() == 0) fs::remove_all(data.parent_path());
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  return rg::mpi_check::run_main(argc, argv, "mpi_seg_run", [](rg::dist::Communicator& comm) { return run(comm); });
}
