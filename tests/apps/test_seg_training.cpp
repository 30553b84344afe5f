// The segmentation step and the training run: a tiny U-Net + PatchGAN overfits 8 slices, every GAN
// mode trains, a resumed run reproduces an uninterrupted one exactly, bad input is refused.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "tests/apps/tiny_phantom.h"
#include "apps/seg/seg_gan.h"
#include "apps/seg/seg_predict.h"
#include "train/seg_metrics.h"
#include "apps/seg/seg_run.h"
#include "data/loader.h"
#include "data/prepare.h"
#include "data/slice_dataset.h"
#include "data/slice_writer.h"
#include "engine/dist/communicator.h"
#include "engine/roentgen.h"
#include "models/patchgan.h"
#include "models/unet.h"
#include "tests/process_temp_dir.h"

namespace rg::app {
namespace {

namespace fs = std::filesystem;
using train::GanMode;
using train::StepLosses;

// 8 slices of 32x32: an image with a bright disc (plus a dimmer decoy square) and the disc's mask.
void make_disc_batch(Tensor& image, Tensor& mask) {
  const int64_t n = 8, s = 32;
  image = Tensor::empty({n, s, s, 1});
  mask = Tensor::empty({n, s, s, 1});
  float* im = image.data<float>();
  float* m = mask.data<float>();
  for (int64_t b = 0; b < n; ++b) {
    const double cx = 8 + 2 * b, cy = 20 - b, r = 4 + (b % 3);
    for (int64_t y = 0; y < s; ++y) {
      for (int64_t x = 0; x < s; ++x) {
        const bool in = (x - cx) * (x - cx) + (y - cy) * (y - cy) <= r * r;
        const bool decoy = x >= 24 && x < 29 && y >= 3 && y < 8;
        const int64_t i = (b * s + y) * s + x;
        m[i] = in ? 1.0f : 0.0f;
        im[i] = in ? 0.8f : (decoy ? 0.1f : -0.8f);
      }
    }
  }
}

double dice_of(models::UnetGenerator& g, const Tensor& image, const Tensor& mask) {
  NoGradGuard no_grad;
  g.eval();
  Tensor p = sigmoid(g.forward(image));
  g.train();
  const auto pv = p.to_vector<float>(), mv = mask.to_vector<float>();
  const auto pb = train::binarize(pv.data(), pv.size()), mb = train::binarize(mv.data(), mv.size());
  return train::dice(pb.data(), mb.data(), pb.size());
}

struct TinyGan {
  models::UnetGenerator g;
  models::PatchDiscriminator d;
  optim::Adam opt_g, opt_d;
  Generator rng{3};
  explicit TinyGan(Generator& init)
      : g(models::UnetConfig{.num_downs = 5, .ngf = 8}, init),
        d(models::PatchGanConfig{.ndf = 8, .n_layers = 2}, init),
        opt_g(g.parameters(), {.lr = 2e-3, .beta1 = 0.5}),
        opt_d(d.parameters(), {.lr = 2e-4, .beta1 = 0.5}) {}
};

TEST(GanTrainer, TinyUnetPatchGanOverfitsEightSlices) {
  Tensor image, mask;
  make_disc_batch(image, mask);
  Generator init(11);
  TinyGan net(init);
  SegGanStep trainer(net.g, &net.d, net.opt_g, &net.opt_d, {.mode = GanMode::Vanilla}, net.rng);
  double dice_now = 0;
  int steps = 0;
  for (; steps < 300; ++steps) {
    const StepLosses l = trainer.step(image, mask);
    ASSERT_TRUE(std::isfinite(l.read("d_loss")) && std::isfinite(l.read("g_total"))) << "step " << steps;
    if (steps % 25 == 24 && (dice_now = dice_of(net.g, image, mask)) > 0.95) break;
  }
  EXPECT_GT(dice_now, 0.95) << "after " << steps << " steps";
}

TEST(GanTrainer, EveryGanModeTrainsAndTheBaselineNeedsNoDiscriminator) {
  Tensor image, mask;
  make_disc_batch(image, mask);
  for (GanMode mode : {GanMode::Vanilla, GanMode::LSGAN, GanMode::Hinge, GanMode::WganGp}) {
    Generator init(5);
    TinyGan net(init);
    const Tensor d_before = net.d.parameters()[0].clone();
    SegGanStep trainer(net.g, &net.d, net.opt_g, &net.opt_d, {.mode = mode}, net.rng);
    StepLosses first = trainer.step(image, mask), last;
    for (int i = 0; i < 20; ++i) last = trainer.step(image, mask);
    const char* name = train::gan_mode_name(mode);
    EXPECT_TRUE(std::isfinite(last.read("d_loss")) && std::isfinite(last.read("g_adv"))) << name;
    EXPECT_LT(last.read("g_bce") + last.read("g_dice"), first.read("g_bce") + first.read("g_dice")) << name;
    EXPECT_NE(net.d.parameters()[0].to_vector<float>(), d_before.to_vector<float>());
    EXPECT_EQ(first.contains("d_penalty"), mode == GanMode::WganGp) << name;
    if (mode == GanMode::WganGp) {
      EXPECT_GT(first.read("d_penalty"), 0.0);
    }
    // D is unfrozen again after the G step (the next D step must train it).
    for (const Tensor& p : net.d.parameters()) EXPECT_TRUE(p.requires_grad());
  }
  Generator init(6);
  models::UnetGenerator g(models::UnetConfig{.num_downs = 5, .ngf = 8}, init);
  optim::Adam opt_g(g.parameters(), {.lr = 2e-3});
  Generator rng(1);
  SegGanStep baseline(g, nullptr, opt_g, nullptr, {.mode = GanMode::None}, rng);
  const StepLosses l = baseline.step(image, mask);
  EXPECT_FALSE(l.contains("d_loss"));  // no discriminator, no adversarial term
  EXPECT_FALSE(l.contains("g_adv"));
  EXPECT_TRUE(l.contains("g_bce") && l.contains("g_dice") && l.contains("g_total"));
  EXPECT_THROW(SegGanStep(g, nullptr, opt_g, nullptr, {.mode = GanMode::Vanilla}, rng), Error);
}

// R1 adds gamma/2 * mean ||grad_m D(x, m)||^2 on real pairs to D's loss, in any GAN mode.
TEST(GanTrainer, R1PenaltyJoinsTheCriticLoss) {
  Tensor image, mask;
  make_disc_batch(image, mask);
  Generator init(8);
  TinyGan net(init);
  SegGanStep step(net.g, &net.d, net.opt_g, &net.opt_d, {.mode = GanMode::LSGAN, .r1_gamma = 10.0},
                  net.rng);
  const StepLosses l = step.step(image, mask);
  ASSERT_TRUE(l.contains("d_r1"));
  EXPECT_GT(l.read("d_r1"), 0.0);
  const double expected = 0.5 * (l.read("d_real") + l.read("d_fake")) + l.read("d_r1");
  EXPECT_NEAR(l.read("d_loss"), expected, 1e-5 * std::max(1.0, std::abs(expected)));
  EXPECT_THROW(SegGanStep(net.g, &net.d, net.opt_g, &net.opt_d, {.r1_gamma = -1.0}, net.rng), Error);
}

TEST(GanTrainer, Bf16ActivationsTrain) {
  // --precision bf16: the image enters as bf16, so every activation is stored in bf16 while the
  // mask, losses, gradients and master weights stay f32.
  Tensor image, mask;
  make_disc_batch(image, mask);
  Generator init(12);
  TinyGan net(init);
  SegGanStep trainer(net.g, &net.d, net.opt_g, &net.opt_d, {.mode = GanMode::Vanilla}, net.rng);
  const StepLosses first = trainer.step(image.to(DType::BF16), mask);
  StepLosses last;
  for (int i = 0; i < 10; ++i) last = trainer.step(image.to(DType::BF16), mask);
  EXPECT_TRUE(std::isfinite(last.read("d_loss")) && std::isfinite(last.read("g_total")));
  EXPECT_LT(last.read("g_bce") + last.read("g_dice"), first.read("g_bce") + first.read("g_dice"));
  for (const Tensor& p : net.g.parameters()) EXPECT_EQ(p.dtype(), DType::F32);
}

// train_seg's step leaves its losses on the device: nothing in it reads tensor data back to the
// host (on a GPU each such read would stall the step until the device catches up).
TEST(GanTrainer, TheStepReadsNothingBackToTheHost) {
  Tensor image, mask;
  make_disc_batch(image, mask);
  for (GanMode mode : {GanMode::Vanilla, GanMode::WganGp, GanMode::None}) {
    Generator init(13);
    TinyGan net(init);
    SegGanStep step(net.g, mode == GanMode::None ? nullptr : &net.d, net.opt_g,
                    mode == GanMode::None ? nullptr : &net.opt_d, {.mode = mode}, net.rng);
    step.step(image, mask);
    const int64_t before = host_read_count();
    const StepLosses l = step.step(image, mask);
    EXPECT_EQ(host_read_count(), before) << train::gan_mode_name(mode);
    l.read("g_total");
    EXPECT_EQ(host_read_count(), before + 1) << "the counter must see a read";
  }
}

// A tiny prepared file: 4 phantom subjects at 32x32 (split 2/1/1 by subject).
const std::string& tiny_dataset() {
  static const std::string path = [] {
    const fs::path dir = test::process_temp_dir("seg_training");
    return test_data::write_tiny_phantom((dir / "tiny.h5").string());
  }();
  return path;
}

// The runs' Dice checks only mean something if the masks are not empty: most training slices
// show lung, and not all of a slice is lung.
TEST(SegRun, TheTinyDatasetHasLungsInMostSlices) {
  data::SliceDataset ds(tiny_dataset(), "train");
  ASSERT_GT(ds.size(), 0);
  const int64_t hw = ds.height() * ds.width();
  std::vector<float> image(static_cast<size_t>(hw)), mask(static_cast<size_t>(hw));
  int64_t with_lung = 0;
  for (int64_t i = 0; i < ds.size(); ++i) {
    ds.read(i, image.data(), mask.data());
    double fg = 0;
    for (float m : mask) fg += m;
    EXPECT_LT(fg, 0.8 * static_cast<double>(hw)) << "slice " << i;
    if (fg > 0) ++with_lung;
  }
  EXPECT_GE(with_lung * 2, ds.size()) << with_lung << " of " << ds.size() << " slices show lung";
}

// The 4-wide U-Net of depth 5 for the tiny file's 32x32 slices, as initialized (seed 5).
models::UnetGenerator untrained_tiny_generator() {
  models::UnetConfig gc;
  gc.num_downs = 5;
  gc.ngf = 4;
  Generator init(5);
  return models::UnetGenerator(gc, init);
}

// The worst slices' picture rows are those slices, worst first: each row's prediction scores
// the Dice the report gives that slice.
TEST(SegRun, WorstSlicePicturesShowTheWorstSlices) {
  data::SliceDataset ds(tiny_dataset(), "test");
  ds.preload();
  models::UnetGenerator g = untrained_tiny_generator();
  dist::LocalCommunicator local;
  const SegEvaluation e = evaluate_segmentation(g, ds, 4, DType::F32, Device::cpu(), 2, local, 3);
  ASSERT_EQ(e.worst_samples.size(), 3u);
  ASSERT_GE(e.worst.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    const train::SegGridRow& row = e.worst_samples[i];
    const size_t hw = static_cast<size_t>(ds.height() * ds.width());
    std::vector<float> image(hw), mask(hw);
    ds.read(e.worst[i].index, image.data(), mask.data());
    EXPECT_EQ(row.image, image);
    EXPECT_EQ(row.target, mask);
    const std::vector<uint8_t> pred = train::binarize(row.prob.data(), hw), target = train::binarize(mask.data(), hw);
    EXPECT_NEAR(train::dice(pred.data(), target.data(), hw), e.worst[i].dice, 1e-9) << "row " << i;
  }
  // Not asked for: no rows.
  EXPECT_TRUE(evaluate_segmentation(g, ds, 4, DType::F32, Device::cpu(), 2, local).worst_samples.empty());
}

// --test-time-flip reaches the metrics and the pictures: each slice's probabilities are
// predict_probabilities' flip-averaged ones.
TEST(SegPredict, EvaluationWithTestTimeFlipScoresTheFlipAveragedProbabilities) {
  data::SliceDataset ds(tiny_dataset(), "test");
  ds.preload();
  models::UnetGenerator g = untrained_tiny_generator();
  dist::LocalCommunicator local;
  const SegEvaluation flip = evaluate_segmentation(g, ds, 4, DType::F32, Device::cpu(), 2, local, 2, {}, true);
  ASSERT_EQ(flip.worst_samples.size(), 2u);
  const int64_t hw = ds.height() * ds.width();
  for (size_t r = 0; r < 2; ++r) {
    Tensor x = Tensor::empty({1, ds.height(), ds.width(), 1});
    std::vector<float> mask(static_cast<size_t>(hw));
    ds.read(flip.worst[r].index, x.data<float>(), mask.data());
    const Tensor p = predict_probabilities(g, x, DType::F32, Device::cpu(), true);
    const Tensor once = predict_probabilities(g, x, DType::F32, Device::cpu(), false);
    EXPECT_EQ(flip.worst_samples[r].prob, std::vector<float>(p.data<float>(), p.data<float>() + hw)) << "row " << r;
    EXPECT_NE(flip.worst_samples[r].prob, std::vector<float>(once.data<float>(), once.data<float>() + hw)) << "row " << r;
  }
}

SegRunConfig tiny_run(const std::string& name, const fs::path& out) {
  SegRunConfig c;
  c.data = tiny_dataset();
  c.name = name;
  c.out_dir = out.string();
  c.epochs = 2;
  c.epochs_decay = 1;
  test_data::set_tiny_networks(c);
  c.seed = 9;
  return c;
}

std::vector<nlohmann::json> lines_of_kind(const fs::path& jsonl, const std::string& kind) {
  std::ifstream in(jsonl);
  std::vector<nlohmann::json> out;
  std::string line;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line);
    if (j["kind"] == kind) out.push_back(j);
  }
  return out;
}

TEST(SegRun, ResumeReproducesAnUninterruptedRunExactly) {
  const fs::path out = fs::path(tiny_dataset()).parent_path() / "runs";
  ASSERT_EQ(run_seg_training(tiny_run("straight", out)), 0);

  SegRunConfig first = tiny_run("resumed", out);
  first.interrupt_after_steps = 5;  // stops inside an epoch: the resume continues mid-stream
  ASSERT_EQ(run_seg_training(first), 130);
  EXPECT_TRUE(fs::exists(out / "resumed" / "checkpoints" / "latest.safetensors"));
  SegRunConfig second = tiny_run("resumed", out);
  second.resume = true;
  ASSERT_EQ(run_seg_training(second), 0);

  const auto a = lines_of_kind(out / "straight" / "metrics.jsonl", "train");
  const auto b = lines_of_kind(out / "resumed" / "metrics.jsonl", "train");
  ASSERT_EQ(a.size(), b.size());
  ASSERT_GT(a.size(), 5u);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i]["step"], b[i]["step"]);
    for (const char* k : {"d_loss", "g_adv", "g_bce", "g_dice"}) {
      EXPECT_EQ(a[i][k].get<double>(), b[i][k].get<double>()) << k << " at step " << a[i]["step"];
    }
  }
  const auto ta = lines_of_kind(out / "straight" / "metrics.jsonl", "test");
  const auto tb = lines_of_kind(out / "resumed" / "metrics.jsonl", "test");
  ASSERT_EQ(ta.size(), 1u);
  ASSERT_EQ(tb.size(), 1u);
  EXPECT_EQ(ta[0]["dice"].get<double>(), tb[0]["dice"].get<double>());
  // The worst test slices, worst first, each placed in its volume (0 = lowest, 1 = highest).
  const auto& worst = ta[0]["worst_slices"];
  ASSERT_TRUE(worst.is_array());
  ASSERT_FALSE(worst.empty());
  EXPECT_EQ(worst.size(), std::min<size_t>(8, ta[0]["slices"].get<size_t>()));
  EXPECT_LE(worst[0]["dice"].get<double>(), ta[0]["dice"].get<double>() + 1e-12)
      << "the worst slice is no better than the mean";
  const std::vector<std::string> names = data::SliceDataset(tiny_dataset(), "test").subject_names();
  for (size_t i = 0; i < worst.size(); ++i) {
    // The subject by its row in /subjects and by its name (what prepare_data info lists).
    EXPECT_EQ(worst[i]["subject_name"].get<std::string>(), names.at(worst[i]["subject"].get<size_t>()));
    EXPECT_GE(worst[i]["height"].get<double>(), 0.0);
    EXPECT_LE(worst[i]["height"].get<double>(), 1.0);
    if (i > 0) {
      EXPECT_LE(worst[i - 1]["dice"].get<double>(), worst[i]["dice"].get<double>());
    }
  }
  // The run left its pictures and its summary.
  for (const char* f : {"curves/losses.png", "curves/val_metrics.png", "summary.json", "samples/test.png",
                        "samples/test_worst.png", "checkpoints/best.safetensors", "checkpoints/best.json"}) {
    EXPECT_TRUE(fs::exists(out / "straight" / f)) << f;
  }
}

// --ema: the average is checkpointed and its ramp continues from the resumed step, so the
// validation and test scores (which use the average) are those of an uninterrupted run.
TEST(SegRun, ResumeWithAWeightAverageReproducesTheRun) {
  const fs::path out = fs::path(tiny_dataset()).parent_path() / "runs";
  SegRunConfig straight = tiny_run("ema_straight", out);
  straight.ema_decay = 0.9;
  ASSERT_EQ(run_seg_training(straight), 0);
  SegRunConfig first = tiny_run("ema_resumed", out);
  first.ema_decay = 0.9;
  first.interrupt_after_steps = 5;
  ASSERT_EQ(run_seg_training(first), 130);
  SegRunConfig second = first;
  second.interrupt_after_steps = 0;
  second.resume = true;
  ASSERT_EQ(run_seg_training(second), 0);
  for (const char* kind : {"val", "test"}) {
    const auto a = lines_of_kind(out / "ema_straight" / "metrics.jsonl", kind);
    const auto b = lines_of_kind(out / "ema_resumed" / "metrics.jsonl", kind);
    ASSERT_EQ(a.size(), b.size()) << kind;
    ASSERT_FALSE(a.empty()) << kind;
    for (size_t i = 0; i < a.size(); ++i) {
      EXPECT_EQ(a[i]["dice"].get<double>(), b[i]["dice"].get<double>()) << kind << " " << i;
      EXPECT_EQ(a[i]["dice_volume"].get<double>(), b[i]["dice_volume"].get<double>()) << kind << " " << i;
    }
  }
}

TEST(SegRun, BadConfigurationAndDataAreRefusedClearly) {
  const fs::path out = fs::path(tiny_dataset()).parent_path() / "runs_bad";
  auto message = [](const SegRunConfig& c) {
    try {
      run_seg_training(c);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  SegRunConfig missing = tiny_run("missing", out);
  missing.data = "/nonexistent/file.h5";
  EXPECT_NE(message(missing).find("/nonexistent/file.h5"), std::string::npos);
  SegRunConfig not_hdf5 = tiny_run("not_hdf5", out);
  fs::create_directories(out);
  not_hdf5.data = (out / "garbage.h5").string();
  std::ofstream(not_hdf5.data) << "this is not HDF5";
  EXPECT_NE(message(not_hdf5).find("garbage.h5"), std::string::npos);
  SegRunConfig bad_batch = tiny_run("bad_batch", out);
  bad_batch.batch_size = 1000;  // more than the training split holds
  EXPECT_NE(message(bad_batch).find("batch"), std::string::npos);
  EXPECT_FALSE(fs::exists(out / "bad_batch" / "metrics.jsonl")) << "a refused run wrote its log";
  SegRunConfig bad_depth = tiny_run("bad_depth", out);
  bad_depth.num_downs = 6;  // 32 / 2^6 is not an integer
  EXPECT_NE(message(bad_depth).find("num-downs"), std::string::npos);
  SegRunConfig no_resume = tiny_run("nothing_here", out);
  no_resume.resume = true;
  EXPECT_NE(message(no_resume).find("latest.json"), std::string::npos);
  SegRunConfig bad_elastic = tiny_run("bad_elastic", out);
  bad_elastic.elastic = 1.5;
  EXPECT_NE(message(bad_elastic).find("--elastic"), std::string::npos);
  EXPECT_FALSE(fs::exists(out / "bad_elastic"));
  SegRunConfig bad_context = tiny_run("bad_context", out);
  bad_context.context_slices = 9;
  EXPECT_NE(message(bad_context).find("--context-slices"), std::string::npos);
  // 2.5-D input with an extra file where a slice repeats (as synthesize writes them): no
  // neighbours to give, refused before the run starts.
  data::SlicesFile repeated;
  repeated.height = repeated.width = 32;
  repeated.subjects = {"synthetic"};
  for (int i = 0; i < 2; ++i) {
    repeated.splits[0].images.insert(repeated.splits[0].images.end(), 32 * 32, 0.0f);
    repeated.splits[0].masks.insert(repeated.splits[0].masks.end(), 32 * 32, 0);
    repeated.splits[0].subject.push_back(0);
    repeated.splits[0].slice.push_back(4);
  }
  data::write_slices_file((out / "repeated.h5").string(), repeated);
  SegRunConfig context_extra = tiny_run("context_extra", out);
  context_extra.context_slices = 1;
  context_extra.extra_train = (out / "repeated.h5").string();
  const std::string why = message(context_extra);
  EXPECT_NE(why.find("--context-slices"), std::string::npos) << why;
  EXPECT_NE(why.find("repeated.h5"), std::string::npos) << why;
  EXPECT_FALSE(fs::exists(out / "context_extra"));
}

// --train-fraction / --extra-train: a seeded subset of the real slices plus a second file's
// slices train; the training stream really holds what was asked (the loader's sample count shows
// in the steps per epoch); bad extra files are refused naming the flag and the file.
TEST(SegTraining, TrainFractionAndExtraTrainingFile) {
  const fs::path out = fs::temp_directory_path() / ("rg_seg_extra_" + std::to_string(getpid()));
  fs::remove_all(out);
  fs::create_directories(out);
  const int64_t real = data::read_slices_info(tiny_dataset()).counts[0];
  // 8 extra 32x32 pairs (a square mask, a bright square).
  data::SlicesFile f;
  f.height = f.width = 32;
  f.subjects = {"extra"};
  for (int i = 0; i < 8; ++i) {
    std::vector<float> img(32 * 32, -1.0f);
    std::vector<uint8_t> m(32 * 32, 0);
    for (int y = 8; y < 20; ++y)
      for (int x = 6 + i; x < 18 + i; ++x) img[static_cast<size_t>(y * 32 + x)] = 0.5f, m[static_cast<size_t>(y * 32 + x)] = 1;
    f.splits[0].images.insert(f.splits[0].images.end(), img.begin(), img.end());
    f.splits[0].masks.insert(f.splits[0].masks.end(), m.begin(), m.end());
    f.splits[0].subject.push_back(0);
    f.splits[0].slice.push_back(i);
  }
  const std::string extra = (out / "extra.h5").string();
  data::write_slices_file(extra, f);

  auto steps_per_epoch = [&](const SegRunConfig& c) {
    EXPECT_EQ(run_seg_training(c), 0);
    const auto lines = lines_of_kind(fs::path(c.out_dir) / c.name / "metrics.jsonl", "val");
    EXPECT_FALSE(lines.empty());
    const auto train_lines = lines_of_kind(fs::path(c.out_dir) / c.name / "metrics.jsonl", "train");
    return train_lines.empty() ? int64_t{-1} : train_lines.back().at("step").get<int64_t>();
  };
  SegRunConfig half = tiny_run("half", out);
  half.epochs = 1;
  half.epochs_decay = 0;
  half.train_fraction = 0.5;
  half.train_seed = 3;
  const int64_t half_slices = static_cast<int64_t>(data::seeded_subset(real, 0.5, 3).size());
  EXPECT_EQ(steps_per_epoch(half), half_slices / half.batch_size);

  SegRunConfig mixed = half;
  mixed.name = "mixed";
  mixed.extra_train = extra;
  EXPECT_EQ(steps_per_epoch(mixed), (half_slices + 8) / mixed.batch_size);

  SegRunConfig only = half;
  only.name = "synthetic_only";
  only.train_fraction = 0;
  only.extra_train = extra;
  EXPECT_EQ(steps_per_epoch(only), 8 / only.batch_size);

  // --epoch-steps: the same number of steps per epoch whatever the training set's size, longer
  // than one pass over the 8 extra slices (the stream runs on into the next loader epoch).
  SegRunConfig fixed = only;
  fixed.name = "fixed_epoch";
  fixed.epoch_steps = 5;
  EXPECT_EQ(steps_per_epoch(fixed), 5);
  const auto fixed_config = nlohmann::json::parse(std::ifstream(out / "fixed_epoch" / "config.json"));
  EXPECT_EQ(fixed_config.at("epoch_steps").get<int64_t>(), 5);

  auto message = [](const SegRunConfig& c) {
    try {
      run_seg_training(c);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  SegRunConfig nothing = half;
  nothing.name = "nothing";
  nothing.train_fraction = 0;
  EXPECT_NE(message(nothing).find("--train-fraction"), std::string::npos);
  SegRunConfig missing = half;
  missing.name = "missing";
  missing.extra_train = (out / "absent.h5").string();
  EXPECT_NE(message(missing).find("absent.h5"), std::string::npos);
  SegRunConfig both = fixed;
  both.name = "both_epoch_lengths";
  both.max_train_batches = 1;
  EXPECT_NE(message(both).find("--epoch-steps"), std::string::npos);
  f.height = f.width = 16;
  f.splits[0].images.resize(8 * 16 * 16);
  f.splits[0].masks.assign(8 * 16 * 16, 0);
  const std::string small = (out / "small.h5").string();
  data::write_slices_file(small, f);
  SegRunConfig wrong = half;
  wrong.name = "wrong_size";
  wrong.extra_train = small;
  EXPECT_NE(message(wrong).find("small.h5"), std::string::npos);
  EXPECT_FALSE(fs::exists(out / "wrong_size")) << "refused before the run folder is written";
  EXPECT_FALSE(fs::exists(out / "missing"));
  EXPECT_FALSE(fs::exists(out / "both_epoch_lengths"));
  fs::remove_all(out);
}

}  // namespace
}  // namespace rg::app
