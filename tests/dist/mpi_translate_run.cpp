// train_translate under mpirun (apps/translate/translate_run.h), two CTests:
//
// `mpirun -np 1 rg_mpi_translate_run` (mpi_translate_run_world1): the data-parallel path at
// world size 1 (MPI communicator, GradientSync) against the plain run (no communicator), for
// pix2pix and CycleGAN: every logged loss and every validation and test metric must be
// bit-identical.
//
// `mpirun -np 2 rg_mpi_translate_run` (mpi_translate_run): the same runs on 2 ranks, each taking
// half of the global batch, against one process taking all of it. The two compute the same
// thing up to floating-point summation order (the all-reduce, SyncBatchNorm and GEMMs over half
// batches), which Adam's first steps amplify. Tolerances, with what this program printed on the
// development machine (6 steps, 3 evaluations): pix2pix (batch norm, synchronized) every loss
// within 1e-5 relative (measured 1e-7) and every validation / test number within 1e-4 (3e-9);
// CycleGAN (instance norm) every loss within 2e-3 (1.4e-4: 1e-7 at step 1, the same with the
// image pools off, so not the pools) and every validation / test number within 1e-2 (6e-3, the
// SSIM of a barely trained network, near 0).

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "apps/translate/translate_run.h"
#include "data/prepare.h"
#include "engine/dist/communicator.h"
#include "engine/roentgen.h"
#include "tests/dist/mpi_check.h"
#include "tests/translate/tiny_translation.h"

using namespace rg;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

using mpi_check::expect;

// Rank 0 writes the tiny translation dataset (tests/translate/tiny_translation.h) in a directory
// named after its pid, which every rank learns.
fs::path make_dataset(dist::Communicator& comm) {
  return mpi_check::shared_scratch_files(comm, "rg_mpi_translate_run", [](const fs::path& dir) {
    app::test_data::write_tiny_translation((dir / "data").string());
  });
}

// The tiny run for 1 + 1 epochs of 3 batches; pix2pix with a global batch of 4 (2 per rank).
app::TranslateRunConfig tiny_run(app::TranslateModel model, const fs::path& dir, const std::string& name) {
  app::TranslateRunConfig c = app::test_data::tiny_translate_run(
      model, data::translation_file_names((dir / "data").string(), "tiny"), dir.string(), name);
  c.epochs = 1;
  c.epochs_decay = 1;
  c.max_train_batches = 3;
  if (model == app::TranslateModel::Pix2Pix) c.batch_size = 4;
  return c;
}

std::vector<json> lines(const fs::path& run) {
  std::vector<json> out;
  std::ifstream in(run / "metrics.jsonl");
  std::string line;
  while (std::getline(in, line)) out.push_back(json::parse(line));
  return out;
}

bool close(double a, double b, double rel) {
  if (rel == 0) return a == b;
  return std::fabs(a - b) <= rel * std::max(std::fabs(a), std::fabs(b));
}

// Every number of every "train", "val" and "test" line of `got` against `want`; losses within
// loss_rel, the evaluation lines' numbers within eval_rel.
void compare_runs(const fs::path& want_run, const fs::path& got_run, double loss_rel, double eval_rel,
                  const std::string& what) {
  const auto want = lines(want_run), got = lines(got_run);
  expect(!want.empty() && want.size() == got.size(),
         what + ": " + std::to_string(got.size()) + " log lines, the plain run has " + std::to_string(want.size()));
  double worst[2] = {0, 0};  // losses, evaluation
  std::string worst_key[2] = {"-", "-"};
  for (size_t i = 0; i < std::min(want.size(), got.size()); ++i) {
    const std::string kind = want[i].value("kind", "");
    expect(got[i].value("kind", "") == kind, what + ": line " + std::to_string(i) + " is not a " + kind + " line");
    const double rel = kind == "train" ? loss_rel : eval_rel;
    for (const auto& [key, value] : want[i].items()) {
      if (!value.is_number() || key == "world_size") continue;
      if (!got[i].contains(key)) {
        expect(false, what + ": line " + std::to_string(i) + " lacks " + key);
        continue;
      }
      const double a = value.get<double>(), b = got[i][key].get<double>();
      const int w = kind == "train" ? 0 : 1;
      if (a != b && std::fabs(a - b) / std::max(std::fabs(a), std::fabs(b)) > worst[w]) {
        worst[w] = std::fabs(a - b) / std::max(std::fabs(a), std::fabs(b));
        worst_key[w] = kind + " " + key;
      }
      expect(close(a, b, rel), what + ": " + kind + " line " + std::to_string(i) + " " + key + " = " +
                                   std::to_string(b) + ", the plain run's " + std::to_string(a));
    }
  }
  std::printf("%s: %zu log lines, largest relative difference %.3g in a loss (%s), %.3g in an evaluation (%s)\n",
              what.c_str(), got.size(), worst[0], worst_key[0].c_str(), worst[1], worst_key[1].c_str());
}

int run(dist::Communicator& comm) {
  const int world = comm.world_size();
  const fs::path dir = make_dataset(comm);
  struct Case {
    app::TranslateModel model;
    const char* name;
    double loss_rel, eval_rel;
  };
  const Case cases[] = {{app::TranslateModel::Pix2Pix, "pix2pix", 1e-5, 1e-4},
                        {app::TranslateModel::CycleGan, "cyclegan", 2e-3, 1e-2}};
  for (const Case& k : cases) {
    const std::string dp = std::string(k.name) + "_dp";
    if (app::run_translate_training(tiny_run(k.model, dir, dp), comm) != 0) expect(false, dp + ": exit code");
    if (comm.rank() == 0) {
      // The plain run: no communicator (the other ranks wait in the next collective).
      const std::string plain = std::string(k.name) + "_plain";
      expect(app::run_translate_training(tiny_run(k.model, dir, plain)) == 0, plain + ": exit code");
      expect(fs::exists(dir / dp / "summary.json") && fs::exists(dir / dp / "samples" / "test.png"),
             dp + ": no summary.json or test picture");
      compare_runs(dir / plain, dir / dp, world == 1 ? 0 : k.loss_rel, world == 1 ? 0 : k.eval_rel,
                   std::string(k.name) + " on " + std::to_string(world) + " rank(s)");
    }
  }
  const int code = mpi_check::verdict(comm);
  if (comm.rank() == 0) fs::remove_all(dir);
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  return rg::mpi_check::run_main(argc, argv, "mpi_translate_run", [](rg::dist::Communicator& comm) { return run(comm); });
}
