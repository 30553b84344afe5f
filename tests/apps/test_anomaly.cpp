// f-AnoGAN (apps/anomaly): the WGAN-GP stage learns a toy distribution, the encoder stage
// leaves G and the critic bit-identical, the lesion data is deterministic, a run resumes
// exactly through the training loop, bad input is refused before anything is written.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "tests/apps/tiny_phantom.h"
#include "tests/process_temp_dir.h"
#include "apps/anomaly/anomaly_eval.h"
#include "apps/anomaly/anomaly_gan.h"
#include "apps/anomaly/anomaly_model.h"
#include "apps/anomaly/anomaly_run.h"
#include "apps/anomaly/detect.h"
#include "data/nifti.h"
#include "data/phantom.h"
#include "data/prepare.h"
#include "data/slice_dataset.h"
#include "engine/roentgen.h"
#include "models/dcgan.h"

namespace rg::app {
namespace {

namespace fs = std::filesystem;

const models::DcganConfig kToy{.size = 16, .z_dim = 8, .width = 8};

// The toy "normal" distribution: the left half bright (0.6), the right half dark (-0.6), plus a
// little noise, 16x16.
Tensor toy_batch(int64_t n, Generator& gen) {
  Tensor noise = Tensor::empty({n, 16, 16, 1});
  normal_(noise, 0.0, 0.05, gen);
  Tensor x = Tensor::empty({n, 16, 16, 1});
  const auto nv = noise.to_vector<float>();
  float* p = x.data<float>();
  for (int64_t i = 0; i < n * 256; ++i) p[i] = ((i % 16) < 8 ? 0.6f : -0.6f) + nv[static_cast<size_t>(i)];
  return x;
}

// Mean absolute difference between the mean generated image and the toy pattern.
double distance_to_pattern(models::DcganGenerator& g, Generator& gen) {
  NoGradGuard no_grad;
  Tensor z = Tensor::empty({64, kToy.z_dim});
  normal_(z, 0.0, 1.0, gen);
  const auto v = mean(g.forward(z), {0}).to_vector<float>();
  double d = 0;
  for (size_t i = 0; i < v.size(); ++i) d += std::fabs(v[i] - ((i % 16) < 8 ? 0.6 : -0.6));
  return d / static_cast<double>(v.size());
}

TEST(AnomalyGan, WganGpLearnsAToyDistribution) {
  Generator init(5), data_gen(6), rng(7), eval_gen(8);
  models::DcganGenerator g(kToy, init);
  models::DcganCritic d(kToy, init);
  // A larger learning rate than f-AnoGAN's 1e-4 so that a few dozen steps show the trend;
  // the betas are f-AnoGAN's.
  const optim::AdamOptions adam{.lr = 1e-3, .beta1 = 0.0, .beta2 = 0.9};
  optim::Adam opt_g(g.parameters(), adam), opt_d(d.parameters(), adam);
  WganGpStep step(g, d, opt_g, opt_d, {.n_critic = 5, .gp_weight = 10}, rng);
  const double before = distance_to_pattern(g, eval_gen);
  double first_w = 0, max_w = -1e9;
  for (int s = 0; s < 40; ++s) {
    std::vector<Tensor> real;
    for (int k = 0; k < 5; ++k) real.push_back(toy_batch(8, data_gen));
    const train::StepLosses l = step.step(real);
    for (const char* k : {"d_loss", "d_penalty", "w_distance", "g_loss"}) {
      ASSERT_TRUE(std::isfinite(l.read(k))) << k << " at step " << s;
    }
    EXPECT_GE(l.read("d_penalty"), 0.0);
    if (s == 0) first_w = l.read("w_distance");
    max_w = std::max(max_w, l.read("w_distance"));
  }
  // The critic learns to separate real from generated (the Wasserstein estimate rises from
  // near 0), and the generator moves towards the data.
  EXPECT_GT(max_w, first_w + 0.1);
  const double after = distance_to_pattern(g, eval_gen);
  EXPECT_LT(after, 0.5 * before) << "before " << before << " after " << after;
}

TEST(AnomalyGan, WganGpStepNeedsOneBatchPerCriticUpdate) {
  Generator init(1), rng(2);
  models::DcganGenerator g(kToy, init);
  models::DcganCritic d(kToy, init);
  optim::Adam opt_g(g.parameters(), {}), opt_d(d.parameters(), {});
  WganGpStep step(g, d, opt_g, opt_d, {.n_critic = 5}, rng);
  Generator data_gen(3);
  EXPECT_THROW(step.step({toy_batch(2, data_gen)}), Error);
  EXPECT_THROW(WganGpStep(g, d, opt_g, opt_d, {.n_critic = 0}, rng), Error);
}

std::vector<std::vector<float>> snapshot(const nn::Module& m) {
  std::vector<std::vector<float>> out;
  for (const Tensor& p : m.parameters()) out.push_back(p.to_vector<float>());
  return out;
}

TEST(AnomalyGan, EncoderStageLeavesGeneratorAndCriticUnchanged) {
  Generator init(11), data_gen(12);
  models::DcganGenerator g(kToy, init);
  models::DcganCritic d(kToy, init);
  models::DcganEncoder e(kToy, init);
  optim::Adam opt_e(e.parameters(), {.lr = 1e-3, .beta1 = 0.0, .beta2 = 0.9});
  EncoderStep step(g, d, e, opt_e, 1.0);
  const auto g0 = snapshot(g), d0 = snapshot(d), e0 = snapshot(e);
  const Tensor x = toy_batch(8, data_gen);
  double first = 0, last = 0;
  for (int s = 0; s < 30; ++s) {
    const train::StepLosses l = step.step(x);
    if (s == 0) first = l.read("e_loss");
    last = l.read("e_loss");
    EXPECT_NEAR(l.read("e_loss"), l.read("e_image") + l.read("e_feature"), 1e-5);
  }
  EXPECT_EQ(snapshot(g), g0) << "the encoder stage changed G";
  EXPECT_EQ(snapshot(d), d0) << "the encoder stage changed the critic";
  EXPECT_NE(snapshot(e), e0) << "the encoder did not train";
  EXPECT_LT(last, first) << "the encoder loss did not decrease";
  // Frozen networks come back with their parameters requiring gradients (for a later stage 1
  // resume in the same process) and receive no gradients.
  for (const Tensor& p : g.parameters()) {
    EXPECT_TRUE(p.requires_grad());
    EXPECT_FALSE(p.grad().defined());
  }
}

TEST(AnomalyGan, ScoreIsTheEncoderLossPerImage) {
  Generator init(21), data_gen(22);
  models::DcganGenerator g(kToy, init);
  models::DcganCritic d(kToy, init);
  models::DcganEncoder e(kToy, init);
  const Tensor x = toy_batch(3, data_gen);
  const Residuals r = izif_residuals(g, d, e, x, 2.0);
  const auto s = r.score.to_vector<float>(), im = r.image.to_vector<float>(), f = r.feature.to_vector<float>();
  ASSERT_EQ(s.size(), 3u);
  // The per-image pixel term by hand.
  const auto xv = x.to_vector<float>(), rv = r.reconstruction.to_vector<float>();
  double sq = 0;
  for (size_t i = 256; i < 512; ++i) sq += (xv[i] - rv[i]) * (xv[i] - rv[i]);
  EXPECT_NEAR(im[1], sq / 256, 1e-5);
  for (size_t i = 0; i < 3; ++i) EXPECT_NEAR(s[i], im[i] + 2.0 * f[i], 1e-5);
}

// A tiny prepared file: 4 phantom subjects at 32x32 (split 2/1/1 by subject), on a coarse grid
// with the default field of view, so every slice has lungs for the lesions to go into.
const std::string& tiny_dataset() {
  static const std::string path = [] {
    const fs::path dir = test::process_temp_dir("anomaly");
    return test_data::write_tiny_phantom((dir / "tiny.h5").string());
  }();
  return path;
}

TEST(AnomalyData, LesionSlicesAreDeterministicAndInsideTheOrgan) {
  data::SliceDataset ds(tiny_dataset(), "val");
  const LesionSlices a = make_lesion_slices(ds, 3), b = make_lesion_slices(ds, 3);
  EXPECT_EQ(a.images, b.images);
  EXPECT_EQ(a.lesion, b.lesion);
  int64_t lesion_slices = 0;
  for (int64_t i = 0; i < a.count; ++i) {
    if (!a.has_lesion[static_cast<size_t>(i)]) continue;
    ++lesion_slices;
    EXPECT_EQ(i % 2, 0) << "odd slices stay normal";
  }
  EXPECT_GT(lesion_slices, 0);
  EXPECT_LT(lesion_slices, a.count);
  for (size_t p = 0; p < a.lesion.size(); ++p) {
    if (a.lesion[p]) {
      ASSERT_TRUE(a.organ[p]) << "lesion pixel " << p << " outside the organ";
    }
  }
  // The normal slices are the file's, untouched.
  std::vector<float> image(static_cast<size_t>(a.height * a.width));
  ds.read(1, image.data(), nullptr);
  EXPECT_TRUE(std::equal(image.begin(), image.end(), a.images.begin() + a.height * a.width));
  const LesionSlices other = make_lesion_slices(ds, 4);
  EXPECT_NE(other.lesion, a.lesion) << "the lesion seed changes nothing";
}

AnomalyRunConfig tiny_run(int stage, const std::string& name, const fs::path& out) {
  AnomalyRunConfig c;
  c.data = tiny_dataset();
  c.stage = stage;
  c.name = name;
  c.out_dir = out.string();
  c.epochs = 2;
  c.batch_size = 4;
  c.n_critic = 2;
  c.z_dim = 8;
  c.width = 4;
  c.workers = 1;
  c.log_every = 1;
  c.progress = false;
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

void expect_same_train_lines(const fs::path& a_run, const fs::path& b_run,
                             const std::vector<std::string>& keys) {
  const auto a = lines_of_kind(a_run / "metrics.jsonl", "train");
  const auto b = lines_of_kind(b_run / "metrics.jsonl", "train");
  ASSERT_EQ(a.size(), b.size());
  ASSERT_GT(a.size(), 2u);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i]["step"], b[i]["step"]);
    for (const auto& k : keys) {
      EXPECT_EQ(a[i][k].get<double>(), b[i][k].get<double>()) << k << " at step " << a[i]["step"];
    }
  }
}

TEST(AnomalyRun, BothStagesResumeExactlyAndStageTwoScoresLesions) {
  const fs::path out = fs::path(tiny_dataset()).parent_path() / "runs";
  ASSERT_EQ(run_anomaly_training(tiny_run(1, "s1", out)), 0);
  AnomalyRunConfig first = tiny_run(1, "s1_resumed", out);
  first.interrupt_after_steps = 2;
  ASSERT_EQ(run_anomaly_training(first), 130);
  AnomalyRunConfig second = tiny_run(1, "s1_resumed", out);
  second.resume = true;
  ASSERT_EQ(run_anomaly_training(second), 0);
  expect_same_train_lines(out / "s1", out / "s1_resumed", {"d_loss", "d_penalty", "w_distance", "g_loss"});
  for (const char* f : {"curves/losses.png", "summary.json", "checkpoints/best.json", "samples/test.png"}) {
    EXPECT_TRUE(fs::exists(out / "s1" / f)) << f;
  }

  AnomalyRunConfig s2 = tiny_run(2, "s2", out);
  s2.stage1_run = (out / "s1").string();
  s2.width = 99;  // ignored: stage 2 takes the sizes of the stage-1 checkpoint, and records them
  ASSERT_EQ(run_anomaly_training(s2), 0);
  {
    std::ifstream in(out / "s2" / "config.json");
    const nlohmann::json config = nlohmann::json::parse(in);
    EXPECT_EQ(config["width"], 4);
  }
  AnomalyRunConfig s2a = tiny_run(2, "s2_resumed", out);
  s2a.stage1_run = s2.stage1_run;
  s2a.interrupt_after_steps = 3;
  ASSERT_EQ(run_anomaly_training(s2a), 130);
  s2a.interrupt_after_steps = 0;
  s2a.resume = true;
  ASSERT_EQ(run_anomaly_training(s2a), 0);
  expect_same_train_lines(out / "s2", out / "s2_resumed", {"e_loss", "e_image", "e_feature"});
  const auto tests = lines_of_kind(out / "s2" / "metrics.jsonl", "test");
  ASSERT_EQ(tests.size(), 1u);
  for (const char* k : {"image_auroc", "pixel_auroc", "pixel_auprc", "best_dice", "dice_at_val_threshold"}) {
    ASSERT_TRUE(tests[0].contains(k)) << k << " missing in " << tests[0].dump();
    const double v = tests[0][k].get<double>();
    EXPECT_TRUE(v >= 0 && v <= 1) << k << " = " << v;
  }
  // Size buckets: present, and within [0, 1] where a bucket has lesions.
  for (const char* k : {"image_auroc_small", "image_auroc_large", "pixel_auroc_small", "pixel_auroc_large"}) {
    ASSERT_TRUE(tests[0].contains(k)) << k;
    if (!tests[0][k].is_null()) {
      EXPECT_TRUE(tests[0][k].get<double>() >= 0 && tests[0][k].get<double>() <= 1) << k;
    }
  }
  const auto resumed_tests = lines_of_kind(out / "s2_resumed" / "metrics.jsonl", "test");
  ASSERT_EQ(resumed_tests.size(), 1u);
  EXPECT_EQ(tests[0]["image_auroc"].get<double>(), resumed_tests[0]["image_auroc"].get<double>());

  // The trained stage 2 reloads as a detector and scores the test slices as the run did; a
  // stage-1 run is no detector.
  const LoadedAnomalyModel detector = load_anomaly_model(out / "s2", Device::cpu());
  EXPECT_EQ(detector.nets.method, AnomalyMethod::FAnoGan);
  data::SliceDataset test_split(tiny_dataset(), "test");
  const LesionSlices test_slices = make_lesion_slices(test_split, s2.lesion_seed + 1);
  const AnomalyMaps maps = score_slices(detector.nets, test_slices.images.data(), test_slices.organ.data(),
                                        test_slices.count, 32, 32, 5, Device::cpu());
  const AnomalyEvaluation again = evaluate_anomaly_maps(test_slices, maps, std::nullopt);
  EXPECT_NEAR(again.metrics["image_auroc"].get<double>(), tests[0]["image_auroc"].get<double>(), 1e-9);
  EXPECT_NEAR(again.metrics["pixel_auprc"].get<double>(), tests[0]["pixel_auprc"].get<double>(), 1e-6);
  try {
    load_anomaly_model(out / "s1", Device::cpu());
    ADD_FAILURE() << "a stage-1 run was accepted as a detector";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("stage-1"), std::string::npos) << e.what();
  }
}

TEST(AnomalyRun, BadInputIsRefusedAndWritesNothing) {
  const fs::path out = fs::path(tiny_dataset()).parent_path() / "runs_bad";
  auto message = [](const AnomalyRunConfig& c) {
    try {
      run_anomaly_training(c);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  AnomalyRunConfig missing = tiny_run(1, "missing", out);
  missing.data = "/nonexistent/file.h5";
  EXPECT_NE(message(missing).find("/nonexistent/file.h5"), std::string::npos);
  AnomalyRunConfig no_stage1 = tiny_run(2, "no_stage1", out);
  EXPECT_NE(message(no_stage1).find("--stage1"), std::string::npos);
  AnomalyRunConfig bad_stage1 = tiny_run(2, "bad_stage1", out);
  bad_stage1.stage1_run = (out / "nowhere").string();
  EXPECT_NE(message(bad_stage1).find("--stage1"), std::string::npos);
  EXPECT_NE(message(bad_stage1).find("nowhere"), std::string::npos);
  // A checkpoint of stage 2 (or of another application) is no stage-1 run.
  AnomalyRunConfig not_stage1 = tiny_run(2, "not_stage1", out);
  not_stage1.stage1_run = (out / "not_a_run").string();
  fs::create_directories(out / "not_a_run" / "checkpoints");
  std::ofstream(out / "not_a_run" / "checkpoints" / "best.json") << "{\"kind\": \"seg\"}";
  EXPECT_NE(message(not_stage1).find("--stage1"), std::string::npos);
  AnomalyRunConfig bad_stage = tiny_run(3, "bad_stage", out);
  EXPECT_NE(message(bad_stage).find("--stage"), std::string::npos);
  AnomalyRunConfig big_batch = tiny_run(1, "big_batch", out);
  big_batch.batch_size = 1000;
  EXPECT_NE(message(big_batch).find("batch"), std::string::npos);
  AnomalyRunConfig critic_steps = tiny_run(1, "critic_steps", out);
  critic_steps.n_critic = 100;  // more batches per step than an epoch holds
  EXPECT_NE(message(critic_steps).find("--n-critic"), std::string::npos);
  for (const char* name : {"missing", "no_stage1", "bad_stage1", "not_stage1", "bad_stage", "big_batch",
                           "critic_steps"}) {
    EXPECT_FALSE(fs::exists(out / name / "metrics.jsonl")) << name << " wrote its log";
  }
}

// ---- baselines and metrics per lesion-size bucket

TEST(AnomalyBaselines, AutoencoderLossFallsOnATinySet) {
  Generator init(31), data_gen(32);
  models::DcganGenerator g(kToy, init);
  models::DcganEncoder e(kToy, init);
  std::vector<Tensor> params = e.parameters();
  for (const Tensor& p : g.parameters()) params.push_back(p);
  optim::Adam opt(params, {.lr = 1e-3, .beta1 = 0.5, .beta2 = 0.999});
  AutoencoderStep step(g, e, opt);
  const Tensor x = toy_batch(8, data_gen);
  double first = 0, last = 0;
  for (int s = 0; s < 40; ++s) {
    const train::StepLosses l = step.step(x);
    ASSERT_TRUE(std::isfinite(l.read("ae_l1")));
    if (s == 0) first = l.read("ae_l1");
    last = l.read("ae_l1");
  }
  EXPECT_LT(last, 0.6 * first) << "first " << first << " last " << last;
}

TEST(AnomalyBaselines, TopFractionMeanByHand) {
  const std::vector<float> map{5, 1, 9, 2, 7, 3, 8, 4, 6, 0};
  const std::vector<uint8_t> organ{1, 1, 0, 1, 1, 1, 1, 1, 1, 1};  // 9 inside, 9 excluded
  EXPECT_DOUBLE_EQ(top_fraction_mean(map.data(), organ.data(), 10, 0.01), 8.0);  // k = 1
  EXPECT_DOUBLE_EQ(top_fraction_mean(map.data(), organ.data(), 10, 0.3), (8.0 + 7 + 6) / 3);  // k = ceil(2.7)
  const std::vector<uint8_t> none(10, 0);
  EXPECT_EQ(top_fraction_mean(map.data(), none.data(), 10, 0.01), 0.0);
}

// Hand-made slices, 16x16, organ = the central 12x12, normal tissue 0 +- 0.1 (a fixed pattern),
// a 3x3 lesion of `lesion_value` in every even slice.
LesionSlices hand_made_slices(int64_t count, float lesion_value) {
  LesionSlices s;
  s.count = count;
  s.height = s.width = 16;
  const int64_t hw = 256;
  s.images.assign(static_cast<size_t>(count * hw), -1.0f);
  s.organ.assign(s.images.size(), 0);
  s.lesion.assign(s.images.size(), 0);
  s.has_lesion.assign(static_cast<size_t>(count), 0);
  s.lesion_diameter_px.assign(static_cast<size_t>(count), 0.0);
  for (int64_t i = 0; i < count; ++i) {
    for (int64_t y = 2; y < 14; ++y) {
      for (int64_t x = 2; x < 14; ++x) {
        const size_t p = static_cast<size_t>(i * hw + y * 16 + x);
        s.organ[p] = 1;
        s.images[p] = 0.1f * static_cast<float>((x + 3 * y + static_cast<int64_t>(i)) % 5 - 2) / 2;
      }
    }
    if (i % 2 != 0) continue;
    s.has_lesion[static_cast<size_t>(i)] = 1;
    s.lesion_diameter_px[static_cast<size_t>(i)] = 3;
    for (int64_t y = 6; y < 9; ++y) {
      for (int64_t x = 5 + i % 3; x < 8 + i % 3; ++x) {
        const size_t p = static_cast<size_t>(i * hw + y * 16 + x);
        s.images[p] = lesion_value;
        s.lesion[p] = 1;
      }
    }
  }
  return s;
}

TEST(AnomalyBaselines, ThresholdFindsABrightLesionWithTheValidationThreshold) {
  IntensityThreshold t;
  t.set(0.0, 0.05);  // normal tissue: median 0, robust sd 0.05
  AnomalyNets nets;
  nets.method = AnomalyMethod::Threshold;
  nets.threshold = &t;
  // Validation lesions are bright (0.9); test lesions dimmer (0.5) but still far above normal.
  const LesionSlices val = hand_made_slices(6, 0.9f), test = hand_made_slices(6, 0.5f);
  const auto score = [&](const LesionSlices& s) {
    return score_slices(nets, s.images.data(), s.organ.data(), s.count, s.height, s.width, 4, Device::cpu());
  };
  const AnomalyMaps val_maps = score(val), test_maps = score(test);
  EXPECT_EQ(val_maps.maps[0], 0.0f) << "outside the organ the map is 0";
  const std::optional<double> threshold = best_dice_threshold(val, val_maps);
  ASSERT_TRUE(threshold.has_value());
  EXPECT_NEAR(*threshold, 0.9 / 0.05, 1e-3) << "the validation lesions' score";
  const AnomalyEvaluation e = evaluate_anomaly_maps(test, test_maps, threshold);
  EXPECT_DOUBLE_EQ(e.metrics["image_auroc"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(e.metrics["pixel_auprc"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(e.metrics["best_dice"].get<double>(), 1.0);
  // The threshold is validation's: the dimmer test lesions fall below it.
  EXPECT_DOUBLE_EQ(e.metrics["dice_at_val_threshold"].get<double>(), 0.0);
  EXPECT_DOUBLE_EQ(e.metrics["val_threshold"].get<double>(), *threshold);
  // Chosen on the test data itself it would have been perfect: it was not.
  const AnomalyEvaluation on_val = evaluate_anomaly_maps(val, val_maps, threshold);
  EXPECT_DOUBLE_EQ(on_val.metrics["dice_at_val_threshold"].get<double>(), 1.0);
}

TEST(AnomalyBaselines, MetricsPerSizeBucketByHand) {
  // 4 slices of 20x20 (bucket split 2 px): 0 and 3 normal, 1 a small lesion (1 px), 2 a large
  // one (2 px drawn 3 px wide). Every map pixel 0 except those named.
  LesionSlices s;
  s.count = 4;
  s.height = s.width = 20;
  const size_t hw = 400;
  s.images.assign(4 * hw, 0.0f);
  s.organ.assign(4 * hw, 1);
  s.lesion.assign(4 * hw, 0);
  s.has_lesion = {0, 1, 1, 0};
  s.lesion_diameter_px = {0, 1, 3, 0};
  AnomalyMaps m;
  m.maps.assign(4 * hw, 0.0f);
  m.slice_scores = {0.1, 0.5, 0.9, 0.6};
  s.lesion[1 * hw + 10] = 1;
  m.maps[1 * hw + 10] = 0.8f;
  s.lesion[2 * hw + 50] = s.lesion[2 * hw + 51] = 1;
  m.maps[2 * hw + 50] = 0.95f;
  m.maps[2 * hw + 51] = 0.7f;
  m.maps[3 * hw + 7] = 0.9f;  // a false positive in a normal slice
  const AnomalyEvaluation e = evaluate_anomaly_maps(s, m, 0.75);
  const nlohmann::json& j = e.metrics;
  EXPECT_DOUBLE_EQ(j["size_bucket_split_px"].get<double>(), 2.0);
  EXPECT_EQ(j["lesion_slices_small"].get<int64_t>(), 1);
  EXPECT_EQ(j["lesion_slices_large"].get<int64_t>(), 1);
  // Small bucket = slices 0, 1, 3: slice scores 0.1, 0.5 (lesion), 0.6.
  EXPECT_DOUBLE_EQ(j["image_auroc_small"].get<double>(), 0.5);
  EXPECT_DOUBLE_EQ(j["image_auroc_large"].get<double>(), 1.0);
  // Small: 0.9 (negative) then 0.8 (positive): AP = 1 * 1/2; best Dice 2*1/(2+1).
  EXPECT_NEAR(j["pixel_auprc_small"].get<double>(), 0.5, 1e-12);
  EXPECT_NEAR(j["best_dice_small"].get<double>(), 2.0 / 3, 1e-12);
  // Large: 0.95 (pos), 0.9 (neg), 0.7 (pos): AP = 0.5 * 1 + 0.5 * 2/3; best Dice at 0.7: 4/5.
  EXPECT_NEAR(j["pixel_auprc_large"].get<double>(), 0.5 + 1.0 / 3, 1e-6);
  EXPECT_NEAR(j["best_dice_large"].get<double>(), 0.8, 1e-12);
  // At the validation threshold 0.75: small {0.9, 0.8} -> 2/3; large {0.95, 0.9} -> 2/4.
  EXPECT_NEAR(j["dice_at_val_threshold_small"].get<double>(), 2.0 / 3, 1e-12);
  EXPECT_NEAR(j["dice_at_val_threshold_large"].get<double>(), 0.5, 1e-12);
  // All slices: AUROC of {0.1, 0.6} vs {0.5, 0.9} = 3/4.
  EXPECT_DOUBLE_EQ(j["image_auroc"].get<double>(), 0.75);
  EXPECT_DOUBLE_EQ(e.score, 0.75);
  // A bucket without lesions has no image AUROC.
  s.has_lesion = {0, 1, 0, 0};
  s.lesion[2 * hw + 50] = s.lesion[2 * hw + 51] = 0;
  const AnomalyEvaluation no_large = evaluate_anomaly_maps(s, m, std::nullopt);
  EXPECT_TRUE(no_large.metrics["image_auroc_large"].is_null());
  EXPECT_TRUE(no_large.metrics["pixel_auprc_large"].is_null());
  EXPECT_FALSE(no_large.metrics.contains("dice_at_val_threshold"));
}

TEST(AnomalyRun, EpochStepsSetTheBudgetWhateverTheTrainSplitsSize) {
  // The table's budgets are in steps (scripts/experiments/anomaly.sh): an epoch of
  // --epoch-steps K steps, each stage-1 step on --n-critic batches of the endless stream.
  const fs::path out = fs::path(tiny_dataset()).parent_path() / "runs_epoch_steps";
  AnomalyRunConfig c = tiny_run(1, "s1", out);
  c.epoch_steps = 7;  // more batches (7 x n_critic 2) than the tiny train split has in one pass
  ASSERT_EQ(run_anomaly_training(c), 0);
  const auto train = lines_of_kind(out / "s1" / "metrics.jsonl", "train");
  ASSERT_EQ(train.size(), 14u) << "2 epochs of 7 steps, logged every step";
  EXPECT_EQ(train.back()["step"].get<int64_t>(), 14);
  EXPECT_EQ(lines_of_kind(out / "s1" / "metrics.jsonl", "val").size(), 2u);
  // Both flags set the length of an epoch: refused before anything is written.
  AnomalyRunConfig both = tiny_run(1, "both", out);
  both.epoch_steps = 3;
  both.max_train_batches = 2;
  EXPECT_THROW(run_anomaly_training(both), Error);
  EXPECT_FALSE(fs::exists(out / "both"));
}

TEST(AnomalyRun, BaselinesRunOnTheSameDataAndReloadForDetection) {
  const fs::path out = fs::path(tiny_dataset()).parent_path() / "runs_baselines";
  AnomalyRunConfig th = tiny_run(1, "threshold", out);
  th.method = "threshold";
  th.epochs = 5;  // ignored: nothing to train
  ASSERT_EQ(run_anomaly_training(th), 0);
  AnomalyRunConfig ae = tiny_run(1, "ae", out);
  ae.method = "ae";
  ae.lr = 1e-3;
  ASSERT_EQ(run_anomaly_training(ae), 0);
  for (const char* name : {"threshold", "ae"}) {
    const auto tests = lines_of_kind(out / name / "metrics.jsonl", "test");
    ASSERT_EQ(tests.size(), 1u) << name;
    EXPECT_EQ(tests[0]["method"], name);
    for (const char* k : {"image_auroc", "pixel_auroc", "pixel_auprc", "best_dice", "dice_at_val_threshold",
                          "pixel_auprc_small", "pixel_auprc_large", "best_dice_small", "best_dice_large",
                          "dice_at_val_threshold_small", "dice_at_val_threshold_large"}) {
      ASSERT_TRUE(tests[0].contains(k)) << name << ": " << k << " missing in " << tests[0].dump();
      if (tests[0][k].is_null()) continue;
      const double v = tests[0][k].get<double>();
      EXPECT_TRUE(v >= 0 && v <= 1) << name << ": " << k << " = " << v;
    }
  }
  EXPECT_EQ(lines_of_kind(out / "threshold" / "metrics.jsonl", "val").size(), 1u) << "one epoch";
  // The same seed twice gives identical numbers.
  AnomalyRunConfig ae_again = ae;
  ae_again.name = "ae_again";
  ASSERT_EQ(run_anomaly_training(ae_again), 0);
  EXPECT_EQ(lines_of_kind(out / "ae" / "metrics.jsonl", "test")[0].dump(),
            lines_of_kind(out / "ae_again" / "metrics.jsonl", "test")[0].dump());
  const auto ae_train = lines_of_kind(out / "ae" / "metrics.jsonl", "train");
  ASSERT_GE(ae_train.size(), 2u);
  EXPECT_LT(ae_train.back()["ae_l1"].get<double>(), ae_train.front()["ae_l1"].get<double>());

  // Reloaded detectors score like the run did.
  const LoadedAnomalyModel t = load_anomaly_model(out / "threshold", Device::cpu());
  EXPECT_EQ(t.nets.method, AnomalyMethod::Threshold);
  EXPECT_GT(t.threshold->scale(), 0.0);
  EXPECT_EQ(t.size, 32);
  const LoadedAnomalyModel a = load_anomaly_model(out / "ae", Device::cpu());
  EXPECT_EQ(a.nets.method, AnomalyMethod::Autoencoder);
  EXPECT_EQ(a.size, 32);
  data::SliceDataset ds(tiny_dataset(), "test");
  const LesionSlices test = make_lesion_slices(ds, th.lesion_seed + 1);
  const AnomalyMaps maps = score_slices(a.nets, test.images.data(), test.organ.data(), test.count, 32, 32, 3,
                                        Device::cpu());
  const auto tests = lines_of_kind(out / "ae" / "metrics.jsonl", "test");
  EXPECT_NEAR(evaluate_anomaly_maps(test, maps, std::nullopt).metrics["pixel_auprc"].get<double>(),
              tests[0]["pixel_auprc"].get<double>(), 1e-6);
  // A folder without a run is named in the error.
  try {
    load_anomaly_model(out / "nowhere", Device::cpu());
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("nowhere"), std::string::npos) << e.what();
  }
}

// ---- the lung-phantom variant: normal training subjects, held-out subjects with lesions

TEST(AnomalyPhantom, LesionMaskIsOnTheGridAndOnlyWithLesions) {
  data::PhantomOptions po = data::phantom_options_for_grid({64, 64, 16});
  po.lesions = 2;
  const data::Phantom with = data::make_lung_phantom(5, po);
  ASSERT_EQ(with.lesion_mask.dims, with.ct.dims);
  EXPECT_EQ(with.lesion_mask.affine, with.ct.affine);
  int64_t lesion = 0, outside_body = 0;
  for (size_t i = 0; i < with.lesion_mask.voxels.size(); ++i) {
    const float v = with.lesion_mask.voxels[i];
    ASSERT_TRUE(v == 0.0f || v == 1.0f);
    lesion += v > 0;
    outside_body += v > 0 && with.ct.voxels[i] < -950;  // air: no lesion there
  }
  EXPECT_GT(lesion, 0);
  EXPECT_LT(outside_body, lesion / 10 + 1);
  po.lesions = 0;
  const data::Phantom without = data::make_lung_phantom(5, po);
  EXPECT_TRUE(std::all_of(without.lesion_mask.voxels.begin(), without.lesion_mask.voxels.end(),
                          [](float v) { return v == 0.0f; }));
}

// 4 phantom subjects prepared for anomaly detection: train subjects without lesions, val/test
// with the phantom's own lesions and their masks in /<split>/lesions.
const std::string& tiny_anomaly_phantom() {
  static const std::string path = [] {
    const fs::path dir = test::process_temp_dir("anomaly_ph");
    data::PhantomOptions po = data::phantom_options_for_grid({64, 64, 16});
    po.lesions = 3;
    data::PrepareOptions opts;
    opts.size = 32;
    opts.labels = {3, 4};
    opts.fractions = {0.5, 0.25, 0.25};
    opts.seed = 2;
    opts.progress = false;
    const std::string out = (dir / "phantom_anomaly.h5").string();
    data::prepare_slices(data::phantom_anomaly_subjects(4, 11, po, opts.fractions, opts.seed), opts, out);
    return out;
  }();
  return path;
}

TEST(AnomalyPhantom, PreparedLesionMasksAreOnTheGridAndOnlyInHeldOutSubjects) {
  const std::string& path = tiny_anomaly_phantom();
  std::array<int64_t, 3> lesion_pixels{0, 0, 0};
  for (int s = 0; s < 3; ++s) {
    data::SliceDataset ds(path, data::kSplitNames[s]);
    ASSERT_TRUE(ds.has_lesions()) << data::kSplitNames[s];
    ASSERT_GT(ds.size(), 0);
    std::vector<uint8_t> l(static_cast<size_t>(ds.height() * ds.width()));
    for (int64_t i = 0; i < ds.size(); ++i) {
      ds.read_lesions(i, l.data());
      for (uint8_t v : l) {
        ASSERT_LE(v, 1);
        lesion_pixels[static_cast<size_t>(s)] += v;
      }
    }
  }
  EXPECT_EQ(lesion_pixels[0], 0) << "training subjects are normal";
  EXPECT_GT(lesion_pixels[1], 0) << "validation subjects have lesions";
  EXPECT_GT(lesion_pixels[2], 0) << "test subjects have lesions";

  // The anomaly task takes them as they are: no synthetic lesion inserted, images untouched.
  data::SliceDataset val(path, "val");
  const LesionSlices a = make_lesion_slices(val, 1), b = make_lesion_slices(val, 2);
  EXPECT_EQ(a.lesion, b.lesion) << "the lesion seed must not matter for the dataset's own lesions";
  const auto lesion_slices = std::count(a.has_lesion.begin(), a.has_lesion.end(), uint8_t{1});
  EXPECT_GT(lesion_slices, 0);
  EXPECT_LT(lesion_slices, a.count) << "slices without lesions are the normal class";
  std::vector<float> image(static_cast<size_t>(a.height * a.width));
  for (int64_t i = 0; i < a.count; ++i) {
    val.read(i, image.data(), nullptr);
    ASSERT_TRUE(std::equal(image.begin(), image.end(), a.images.begin() + i * a.height * a.width)) << i;
    if (a.has_lesion[static_cast<size_t>(i)]) {
      EXPECT_GT(a.lesion_diameter_px[static_cast<size_t>(i)], 0.0);
    }
  }
  // A file without lesion masks says so, naming the file.
  data::SliceDataset plain(tiny_dataset(), "val");
  EXPECT_FALSE(plain.has_lesions());
  std::vector<uint8_t> l(static_cast<size_t>(plain.height() * plain.width()));
  try {
    plain.read_lesions(0, l.data());
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(tiny_dataset()), std::string::npos) << e.what();
  }
}

TEST(AnomalyPhantom, SubjectsWithAndWithoutLesionMasksAreRefused) {
  data::PhantomOptions po = data::phantom_options_for_grid({32, 32, 4});
  po.lesions = 1;
  auto subjects = data::phantom_anomaly_subjects(3, 1, po, {0.4, 0.3, 0.3}, 0);
  subjects[1].load_lesions = nullptr;
  data::PrepareOptions opts;
  opts.size = 16;
  opts.labels = {3, 4};
  opts.progress = false;
  const fs::path out = test::process_temp_dir("anomaly_mixed") / "mixed.h5";
  EXPECT_THROW(data::prepare_slices(subjects, opts, out.string()), Error);
  EXPECT_FALSE(fs::exists(out));
  po.lesions = 0;
  EXPECT_THROW(data::phantom_anomaly_subjects(3, 1, po, {0.4, 0.3, 0.3}, 0), Error);
}

// ---- detect_anomaly: a volume in, a map on its grid out

TEST(AnomalyDetect, WritesAMapOnTheInputGridAndRefusesBadInput) {
  const fs::path dir = fs::path(tiny_anomaly_phantom()).parent_path();
  // A threshold detector trained on the phantom's normal subjects (the cheapest one to train).
  AnomalyRunConfig th = tiny_run(1, "detector", dir / "runs");
  th.data = tiny_anomaly_phantom();
  th.method = "threshold";
  ASSERT_EQ(run_anomaly_training(th), 0);
  const auto tests = lines_of_kind(dir / "runs" / "detector" / "metrics.jsonl", "test");
  ASSERT_EQ(tests.size(), 1u);
  EXPECT_GT(tests[0]["lesion_slices"].get<int64_t>(), 0) << "the phantom's own lesions are the test's";

  // A new subject with lesions, written as NIfTI with its lung and lesion masks.
  data::PhantomOptions po = data::phantom_options_for_grid({64, 64, 16});
  po.lesions = 3;
  data::Phantom ph = data::make_lung_phantom(99, po);
  const std::string ct = (dir / "subject_ct.nii.gz").string(), lungs = (dir / "subject_lungs.nii.gz").string(),
                    lesions = (dir / "subject_lesions.nii.gz").string();
  data::write_nifti(ct, ph.ct, data::NiftiOut::Float32);
  data::write_nifti(lungs, ph.lungs, data::NiftiOut::Float32);
  data::write_nifti(lesions, ph.lesion_mask, data::NiftiOut::Float32);

  DetectOptions o;
  o.model = (dir / "runs" / "detector").string();
  o.input = ct;
  o.organ_mask = lungs;
  o.lesions = lesions;
  o.out = (dir / "detected").string();
  o.device = "cpu";
  const nlohmann::json report = run_detect_anomaly(o);
  const data::Volume map = data::read_nifti(o.out + "/anomaly_map.nii.gz");
  EXPECT_EQ(map.dims, ph.ct.dims);
  for (int r = 0; r < 3; ++r) {
    for (int c = 0; c < 4; ++c) EXPECT_NEAR(map.affine[r][c], ph.ct.affine[r][c], 1e-4) << r << "," << c;
  }
  double inside = 0, outside = 0;
  for (size_t i = 0; i < map.voxels.size(); ++i) {
    ASSERT_TRUE(std::isfinite(map.voxels[i]));
    (ph.lungs.voxels[i] > 0.5f ? inside : outside) += map.voxels[i];
  }
  EXPECT_GT(inside, 0.0) << "the map is empty";
  EXPECT_LT(outside, 0.25 * inside) << "the map should live in the lungs (up to the interpolated rim)";
  for (const char* f : {"scores.csv", "report.json", "overlays.png"}) EXPECT_TRUE(fs::exists(fs::path(o.out) / f)) << f;
  {
    std::ifstream in(fs::path(o.out) / "scores.csv");
    std::string line;
    int64_t lines = 0;
    while (std::getline(in, line)) ++lines;
    EXPECT_EQ(lines, static_cast<int64_t>(report["slices"].size()) + 1);
  }
  ASSERT_TRUE(report.contains("metrics"));
  EXPECT_GT(report["metrics"]["lesion_slices"].get<int64_t>(), 0);
  EXPECT_TRUE(report["metrics"].contains("pixel_auprc_small"));

  // Bad input: a clear error naming the file or flag, and nothing written.
  const auto refused = [&](DetectOptions bad, const std::string& needle) {
    bad.out = (dir / "refused").string();
    try {
      run_detect_anomaly(bad);
      ADD_FAILURE() << "no error for " << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
    EXPECT_FALSE(fs::exists(dir / "refused")) << needle;
    for (const auto& entry : fs::directory_iterator(dir)) {
      EXPECT_EQ(entry.path().filename().string().find("refused.tmp"), std::string::npos) << "left " << entry.path();
    }
  };
  DetectOptions no_model = o;
  no_model.model = (dir / "no_such_run").string();
  refused(no_model, "no_such_run");
  DetectOptions not_a_run = o;
  not_a_run.model = dir.string();  // a folder, but no checkpoints
  refused(not_a_run, "--model");
  // A lesion mask (and an organ mask) on another grid.
  data::Phantom other = data::make_lung_phantom(99, data::phantom_options_for_grid({32, 32, 8}));
  const std::string other_mask = (dir / "other_grid_mask.nii.gz").string();
  data::write_nifti(other_mask, other.lungs, data::NiftiOut::Float32);
  DetectOptions bad_lesions = o;
  bad_lesions.lesions = other_mask;
  refused(bad_lesions, "other_grid_mask.nii.gz");
  DetectOptions bad_organ = o;
  bad_organ.organ_mask = other_mask;
  refused(bad_organ, "other_grid_mask.nii.gz");
  // An MRI-like volume (no air) for a CT detector.
  data::Volume mri = ph.ct;
  for (float& v : mri.voxels) v += 1100.0f;
  const std::string mri_path = (dir / "not_ct.nii.gz").string();
  data::write_nifti(mri_path, mri, data::NiftiOut::Float32);
  DetectOptions wrong_modality = o;
  wrong_modality.input = mri_path;
  refused(wrong_modality, "not_ct.nii.gz");
  DetectOptions missing_input = o;
  missing_input.input = (dir / "missing.nii.gz").string();
  refused(missing_input, "missing.nii.gz");
  // An existing output is kept unless --overwrite.
  DetectOptions again = o;
  try {
    run_detect_anomaly(again);
    ADD_FAILURE() << "overwrote " << o.out;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--overwrite"), std::string::npos) << e.what();
  }
  again.overwrite = true;
  EXPECT_NO_THROW(run_detect_anomaly(again));
  EXPECT_TRUE(fs::exists(fs::path(o.out) / "anomaly_map.nii.gz"));

  // A prepared file as input: its test split, its own lesions; no voxel grid, so no NIfTI.
  DetectOptions prepared;
  prepared.model = o.model;
  prepared.input = tiny_anomaly_phantom();
  prepared.split = "test";
  prepared.out = (dir / "detected_h5").string();
  prepared.device = "cpu";
  const nlohmann::json r = run_detect_anomaly(prepared);
  EXPECT_FALSE(fs::exists(fs::path(prepared.out) / "anomaly_map.nii.gz"));
  EXPECT_TRUE(fs::exists(fs::path(prepared.out) / "scores.csv"));
  data::SliceDataset test_split(tiny_anomaly_phantom(), "test");
  EXPECT_EQ(static_cast<int64_t>(r["slices"].size()), test_split.size());
  ASSERT_TRUE(r.contains("metrics"));
  // The same slices and lesions as the run's own test, so the same pixel AUPRC.
  EXPECT_NEAR(r["metrics"]["pixel_auprc"].get<double>(), tests[0]["pixel_auprc"].get<double>(), 1e-9);
  // Slices of another size than the detector's are refused, naming the file.
  const std::string small = (dir / "slices16.h5").string();
  data::PrepareOptions po16;
  po16.size = 16;
  po16.labels = {3, 4};
  po16.progress = false;
  data::prepare_slices(data::phantom_subjects(3, 7, data::phantom_options_for_grid({48, 48, 12})), po16, small);
  DetectOptions wrong_size = prepared;
  wrong_size.input = small;
  refused(wrong_size, "slices16.h5");
}

}  // namespace
}  // namespace rg::app
