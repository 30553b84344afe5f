// Mask -> image synthesis: a tiny GAN overfits a few masks, every GAN mode trains, a training
// run writes its metrics, pictures and a kind "synth" checkpoint, synthesize's output
// round-trips through the loader, the same seed gives the same contents, and bad input gives a
// clear error and writes nothing.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "train/paired_gan.h"
#include "apps/synth/synth_run.h"
#include "apps/synth/synthesize.h"
#include "tests/apps/tiny_phantom.h"
#include "data/label_map.h"
#include "data/loader.h"
#include "data/png_io.h"
#include "data/prepare.h"
#include "data/slice_dataset.h"
#include "data/slice_writer.h"
#include "engine/roentgen.h"
#include "models/patchgan.h"
#include "models/unet.h"
#include "train/checkpoint.h"

namespace rg::app {
namespace {

namespace fs = std::filesystem;
using train::GanMode;

// 4 pairs of 32x32: a disc mask, and an image that is bright inside the disc with a horizontal
// gradient, dark outside.
void make_pairs(Tensor& mask, Tensor& image) {
  const int64_t n = 4, s = 32;
  mask = Tensor::empty({n, s, s, 1});
  image = Tensor::empty({n, s, s, 1});
  float* m = mask.data<float>();
  float* im = image.data<float>();
  for (int64_t b = 0; b < n; ++b) {
    const double cx = 10 + 4 * b, cy = 18 - 2 * b, r = 5 + b;
    for (int64_t y = 0; y < s; ++y)
      for (int64_t x = 0; x < s; ++x) {
        const bool in = (x - cx) * (x - cx) + (y - cy) * (y - cy) <= r * r;
        const int64_t i = (b * s + y) * s + x;
        m[i] = in ? 1.0f : 0.0f;
        im[i] = in ? 0.2f + 0.02f * static_cast<float>(x) : -0.7f;
      }
  }
}

double l1_of(models::UnetGenerator& g, const Tensor& mask, const Tensor& image) {
  NoGradGuard no_grad;
  g.eval();
  const Tensor fake = g.forward(mask);
  g.train();
  return l1_loss(fake, image).item();
}

struct TinySynth {
  models::UnetGenerator g;
  models::PatchDiscriminator d;
  optim::Adam opt_g, opt_d;
  Generator rng{5};
  rg::train::PairedGanStep step;
  static models::UnetConfig gconfig() {
    models::UnetConfig c;
    c.num_downs = 5;
    c.ngf = 8;
    c.head = models::UnetConfig::Head::Tanh;
    return c;
  }
  static models::PatchGanConfig dconfig(bool spectral_norm) {
    models::PatchGanConfig c;
    c.in_channels = 2;
    c.ndf = 8;
    c.n_layers = 2;
    c.spectral_norm = spectral_norm;
    return c;
  }
  TinySynth(GanMode mode, Generator& init, bool spectral_norm = false)
      : g(gconfig(), init),
        d(dconfig(spectral_norm), init),
        opt_g(g.parameters(), {.lr = 2e-3, .beta1 = 0.5, .beta2 = 0.999}),
        opt_d(d.parameters(), {.lr = 2e-4, .beta1 = 0.5, .beta2 = 0.999}),
        step(g, mode == GanMode::None ? nullptr : &d, opt_g, mode == GanMode::None ? nullptr : &opt_d,
             rg::train::PairedGanConfig{.mode = mode, .lambda_l1 = 100.0}, rng) {}
};

TEST(SynthGan, TinyGanOverfitsAFewMasks) {
  Tensor mask, image;
  make_pairs(mask, image);
  Generator init(11);
  TinySynth t(GanMode::Vanilla, init);
  const double before = l1_of(t.g, mask, image);
  for (int i = 0; i < 150; ++i) t.step.step(mask, image);
  const double after = l1_of(t.g, mask, image);
  // Start: ~0.5 (tanh(0) = 0 against images at -0.7 and 0.2..0.9). Overfit: well under 0.1.
  EXPECT_GT(before, 0.3);
  EXPECT_LT(after, 0.08) << "L1 before " << before;
}

TEST(SynthGan, EveryGanModeTrainsWithFiniteLosses) {
  Tensor mask, image;
  make_pairs(mask, image);
  for (const bool spectral_norm : {false, true}) {
    for (const std::string& name : train::gan_mode_names()) {
      const GanMode mode = train::parse_gan_mode(name);
      Generator init(3);
      TinySynth t(mode, init, spectral_norm);
      train::StepLosses l;
      for (int i = 0; i < 3; ++i) l = t.step.step(mask, image);
      const std::string what = name + (spectral_norm ? " with spectral norm" : "");
      for (const auto& [k, v] : l.read()) EXPECT_TRUE(std::isfinite(v)) << what << " " << k;
      EXPECT_TRUE(l.contains("g_l1")) << what;
      EXPECT_EQ(l.contains("d_loss"), mode != GanMode::None) << what;
      EXPECT_EQ(l.contains("d_penalty"), mode == GanMode::WganGp) << what;
    }
  }
}

TEST(SynthGan, BadShapesAreRefused) {
  Tensor mask, image;
  make_pairs(mask, image);
  Generator init(3);
  TinySynth t(GanMode::Vanilla, init);
  const Tensor wrong = Tensor::zeros({4, 16, 16, 1});
  EXPECT_THROW(t.step.step(mask, wrong), Error);
}

// A tiny prepared file of disc masks and their images (32x32; 16 train, 4 val, 4 test slices),
// written with data/slice_writer.h, optionally with label maps (background, body, mask). (The
// 48x48x12 phantom the segmentation tests prepare has empty lung masks at 32x32, useless for
// synthesis.)
std::string write_discs(const std::string& name, bool with_labels) {
  const fs::path dir = fs::temp_directory_path() / ("rg_synth_" + std::to_string(getpid()));
  fs::create_directories(dir);
  data::SlicesFile f;
  f.height = f.width = 32;
  f.subjects = {"discs"};
  if (with_labels) f.label_classes = data::label_class_names(false);
  const int counts[3] = {16, 4, 4};
  int k = 0;
  for (int s = 0; s < 3; ++s) {
    data::SlicesSplit& x = f.splits[static_cast<size_t>(s)];
    for (int i = 0; i < counts[s]; ++i, ++k) {
      const double cx = 8 + (k * 5) % 16, cy = 8 + (k * 3) % 16, r = 4 + k % 4;
      for (int y = 0; y < 32; ++y)
        for (int xx = 0; xx < 32; ++xx) {
          const bool in = (xx - cx) * (xx - cx) + (y - cy) * (y - cy) <= r * r;
          const bool body = xx >= 2 && xx < 30 && y >= 2 && y < 30;
          x.masks.push_back(in ? 1 : 0);
          x.images.push_back(in ? 0.2f + 0.02f * static_cast<float>(xx) : (body ? -0.5f : -1.0f));
          if (with_labels) x.labels.push_back(in ? data::kLabelMask : body ? data::kLabelBody : data::kLabelBackground);
        }
      x.subject.push_back(0);
      x.slice.push_back(k);
    }
  }
  const std::string out = (dir / name).string();
  data::write_slices_file(out, f);
  return out;
}

const std::string& tiny_dataset() {
  static const std::string path = write_discs("tiny.h5", false);
  return path;
}

const std::string& tiny_labeled_dataset() {
  static const std::string path = write_discs("tiny_labels.h5", true);
  return path;
}

// Removes this process's scratch folder after the last test.
class ScratchCleanup : public ::testing::Environment {
 public:
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(fs::temp_directory_path() / ("rg_synth_" + std::to_string(getpid())), ec);
  }
};
[[maybe_unused]] ::testing::Environment* const kCleanup =
    ::testing::AddGlobalTestEnvironment(new ScratchCleanup);

fs::path scratch(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("rg_synth_" + std::to_string(getpid())) / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

SynthRunConfig tiny_run(const std::string& name, const fs::path& out) {
  SynthRunConfig c;
  c.data = tiny_dataset();
  c.name = name;
  c.out_dir = out.string();
  c.epochs = 1;
  c.epochs_decay = 1;
  test_data::set_tiny_networks(c);
  c.max_train_batches = 3;
  c.device = "cpu";
  return c;
}

// One trained run shared by the synthesize tests.
const fs::path& trained_run() {
  static const fs::path run = [] {
    const fs::path out = scratch("runs");
    EXPECT_EQ(run_synth_training(tiny_run("tiny", out)), 0);
    return out / "tiny";
  }();
  return run;
}

TEST(SynthRun, WritesMetricsPicturesAndASynthCheckpoint) {
  const fs::path& run = trained_run();
  EXPECT_TRUE(fs::exists(run / "checkpoints" / "best.safetensors"));
  EXPECT_TRUE(fs::exists(run / "samples" / "epoch_001.png"));
  EXPECT_TRUE(fs::exists(run / "samples" / "test.png"));
  std::ifstream in(run / "metrics.jsonl");
  std::string line;
  int vals = 0;
  bool test = false;
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line);
    if (j.value("kind", "") == "val") {
      ++vals;
      EXPECT_GT(j.at("mae").get<double>(), 0.0);
      EXPECT_TRUE(std::isfinite(j.at("psnr").get<double>()));
      EXPECT_LE(j.at("ssim").get<double>(), 1.0);
    }
    if (j.value("kind", "") == "test") test = true;
  }
  EXPECT_EQ(vals, 2);
  EXPECT_TRUE(test);
  const auto meta = train::read_checkpoint_json(run / "checkpoints", "best", "synth");
  EXPECT_EQ(meta.at("slice_size"), nlohmann::json({32, 32}));
  EXPECT_THROW(train::read_checkpoint_json(run / "checkpoints", "best", "seg"), Error);
}

std::vector<float> all_values(const std::string& path, std::vector<float>* masks) {
  data::SliceDataset ds(path, "train");
  const size_t hw = static_cast<size_t>(ds.height() * ds.width());
  std::vector<float> images(static_cast<size_t>(ds.size()) * hw);
  masks->assign(images.size(), 0.0f);
  for (int64_t i = 0; i < ds.size(); ++i)
    ds.read(i, images.data() + static_cast<size_t>(i) * hw, masks->data() + static_cast<size_t>(i) * hw);
  return images;
}

TEST(Synthesize, OutputRoundTripsThroughTheLoader) {
  const fs::path out = scratch("synthesize_roundtrip");
  SynthesizeConfig c;
  c.checkpoint = (trained_run() / "checkpoints" / "best.safetensors").string();
  c.out = (out / "synthetic.h5").string();
  c.count = 10;
  c.seed = 1;
  c.device = "cpu";
  c.progress = false;
  const SynthesizeSummary s = synthesize(c);
  EXPECT_EQ(s.pairs, 10);
  EXPECT_TRUE(fs::exists(out / "synthetic.png"));
  EXPECT_GT(data::read_png((out / "synthetic.png").string()).width, 0);
  data::LoaderOptions o;
  o.batch_size = 5;
  o.workers = 0;
  data::Loader loader(c.out, o);
  EXPECT_EQ(loader.dataset_size(), 10);
  EXPECT_EQ(loader.height(), 32);
  int batches = 0;
  while (auto b = loader.next()) {
    ++batches;
    for (float v : b->image.to_vector<float>()) ASSERT_TRUE(v >= -1.0f && v <= 1.0f);
    for (float v : b->mask.to_vector<float>()) ASSERT_TRUE(v == 0.0f || v == 1.0f);
  }
  EXPECT_EQ(batches, 2);
  EXPECT_EQ(data::SliceDataset(c.out, "val").size(), 0);
  // The run's own masks were the source: the training split of the tiny file.
  EXPECT_EQ(s.source_masks, data::read_slices_info(tiny_dataset()).counts[0]);
}

TEST(Synthesize, SameSeedSameContentsOtherSeedOtherMasks) {
  const fs::path out = scratch("synthesize_determinism");
  SynthesizeConfig c;
  c.checkpoint = trained_run().string();  // a run directory works too
  c.count = 6;
  c.device = "cpu";
  c.progress = false;
  c.seed = 7;
  c.out = (out / "a.h5").string();
  synthesize(c);
  c.out = (out / "b.h5").string();
  synthesize(c);
  c.seed = 8;
  c.out = (out / "c.h5").string();
  synthesize(c);
  std::vector<float> ma, mb, mc;
  const auto ia = all_values((out / "a.h5").string(), &ma);
  const auto ib = all_values((out / "b.h5").string(), &mb);
  const auto ic = all_values((out / "c.h5").string(), &mc);
  EXPECT_EQ(ia, ib);
  EXPECT_EQ(ma, mb);
  EXPECT_NE(ma, mc);
}

void expect_error_naming(const SynthesizeConfig& c, const std::string& needle) {
  try {
    synthesize(c);
    FAIL() << "expected an error naming " << needle;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(c.out)) << c.out;
  EXPECT_FALSE(fs::exists(c.out + ".tmp"));
  EXPECT_FALSE(fs::exists(fs::path(c.out).replace_extension(".png")));
}

TEST(Synthesize, BadInputNamesTheFileAndWritesNothing) {
  const fs::path out = scratch("synthesize_bad");
  SynthesizeConfig c;
  c.device = "cpu";
  c.progress = false;
  c.out = (out / "never.h5").string();
  c.checkpoint = (out / "missing" / "best.safetensors").string();
  expect_error_naming(c, "--checkpoint");
  expect_error_naming(c, c.checkpoint);

  // A 20x20 PNG mask for a generator trained on 32x32 slices.
  c.checkpoint = (trained_run() / "checkpoints" / "best.safetensors").string();
  const std::string png = (out / "small_mask.png").string();
  data::Image8 small;
  small.width = small.height = 20;
  small.channels = 1;
  small.pixels.assign(400, 0);
  small.pixels[210] = 255;
  data::write_png(png, small);
  c.masks = png;
  expect_error_naming(c, png);
  expect_error_naming(c, "--masks");

  c.masks = (out / "no_such_masks.h5").string();
  expect_error_naming(c, c.masks);

  // A file that is neither HDF5 nor PNG.
  const std::string junk = (out / "junk.h5").string();
  std::ofstream(junk) << "not a mask";
  c.masks = junk;
  expect_error_naming(c, junk);
}

TEST(Synthesize, A32x32PngMaskWorks) {
  const fs::path out = scratch("synthesize_png");
  data::Image8 m;
  m.width = m.height = 32;
  m.channels = 1;
  m.pixels.assign(32 * 32, 0);
  for (int y = 10; y < 20; ++y)
    for (int x = 8; x < 24; ++x) m.pixels[static_cast<size_t>(y * 32 + x)] = 255;
  const std::string png = (out / "mask.png").string();
  data::write_png(png, m);
  SynthesizeConfig c;
  c.checkpoint = trained_run().string();
  c.masks = png;
  c.deform = false;
  c.count = 2;
  c.device = "cpu";
  c.progress = false;
  c.out = (out / "from_png.h5").string();
  synthesize(c);
  std::vector<float> masks;
  all_values(c.out, &masks);
  ASSERT_EQ(masks.size(), 2u * 32 * 32);
  // Undeformed: the mask is the PNG's.
  for (int y = 0; y < 32; ++y)
    for (int x = 0; x < 32; ++x)
      EXPECT_EQ(masks[static_cast<size_t>(y * 32 + x)], (y >= 10 && y < 20 && x >= 8 && x < 24) ? 1.0f : 0.0f);
}

std::vector<nlohmann::json> lines_of_kind(const fs::path& jsonl, const std::string& kind) {
  std::ifstream in(jsonl);
  std::vector<nlohmann::json> out;
  std::string line;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line);
    if (j.value("kind", "") == kind) out.push_back(j);
  }
  return out;
}

// Interrupted after 4 steps and resumed, a run logs the losses and test metrics of an
// uninterrupted one exactly (the loop's resume with the synthesis task's state).
// Runs `straight` (in out/straight), then the same cut after 4 steps and resumed (out/resumed):
// their training losses and test MAE must be equal.
void expect_resume_reproduces(SynthRunConfig straight, const fs::path& out) {
  straight.name = "straight";
  ASSERT_EQ(run_synth_training(straight), 0);
  SynthRunConfig cut = straight;
  cut.name = "resumed";
  cut.interrupt_after_steps = 4;
  ASSERT_EQ(run_synth_training(cut), 130);
  cut.interrupt_after_steps = 0;
  cut.resume = true;
  ASSERT_EQ(run_synth_training(cut), 0);
  const auto a = lines_of_kind(out / "straight" / "metrics.jsonl", "train");
  const auto b = lines_of_kind(out / "resumed" / "metrics.jsonl", "train");
  ASSERT_EQ(a.size(), 6u);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].at("g_l1"), b[i].at("g_l1")) << i;
    EXPECT_EQ(a[i].at("d_loss"), b[i].at("d_loss")) << i;
  }
  EXPECT_EQ(lines_of_kind(out / "straight" / "metrics.jsonl", "test").at(0).at("mae"),
            lines_of_kind(out / "resumed" / "metrics.jsonl", "test").at(0).at("mae"));
}

TEST(SynthRun, ResumeReproducesAnUninterruptedRun) {
  const fs::path out = scratch("resume");
  expect_resume_reproduces(tiny_run("straight", out), out);
}

TEST(SynthRun, LabelConditionedRunAndSynthesizeCarryTheLabelMaps) {
  const fs::path out = scratch("labels");
  SynthRunConfig c = tiny_run("labels", out);
  c.data = tiny_labeled_dataset();
  c.label_condition = true;
  ASSERT_EQ(run_synth_training(c), 0);
  const auto meta = train::read_checkpoint_json(out / "labels" / "checkpoints", "best", "synth");
  EXPECT_EQ(meta.at("condition"), "labels");
  EXPECT_EQ(meta.at("label_classes"), nlohmann::json(data::label_class_names(false)));
  EXPECT_EQ(meta.at("generator").at("in_channels"), 3);
  EXPECT_EQ(lines_of_kind(out / "labels" / "metrics.jsonl", "val").size(), 2u);

  SynthesizeConfig sc;
  sc.checkpoint = (out / "labels").string();
  sc.count = 12;
  sc.seed = 3;
  sc.device = "cpu";
  sc.progress = false;
  sc.out = (out / "a.h5").string();
  synthesize(sc);
  sc.out = (out / "b.h5").string();
  synthesize(sc);
  data::SliceDataset a((out / "a.h5").string(), "train"), b((out / "b.h5").string(), "train");
  ASSERT_EQ(a.label_classes(), data::label_class_names(false));
  ASSERT_EQ(a.size(), 12);
  std::vector<float> image(32 * 32), mask(32 * 32), image_b(32 * 32);
  std::vector<uint8_t> la(32 * 32), lb(32 * 32);
  int64_t classes_seen[3] = {0, 0, 0};
  for (int64_t i = 0; i < a.size(); ++i) {
    a.read(i, image.data(), mask.data());
    a.read_labels(i, la.data());
    b.read(i, image_b.data(), nullptr);
    b.read_labels(i, lb.data());
    EXPECT_EQ(la, lb) << "same seed, same label maps";
    EXPECT_EQ(image, image_b) << "same seed, same images";
    for (size_t p = 0; p < la.size(); ++p) {
      ASSERT_EQ(la[p] == data::kLabelMask, mask[p] == 1.0f) << "pair " << i << " pixel " << p;
      ++classes_seen[la[p]];
    }
  }
  for (int64_t n : classes_seen) EXPECT_GT(n, 0);
  // The synthetic file feeds a label-conditioned run in turn (train_seg reads it as any file).
  data::LoaderOptions lo;
  lo.batch_size = 4;
  lo.workers = 0;
  lo.labels = true;
  EXPECT_EQ(data::Loader((out / "a.h5").string(), lo).dataset_size(), 12);

  // A PNG mask cannot condition a label-map generator: refused, nothing written.
  data::Image8 png;
  png.width = png.height = 32;
  png.channels = 1;
  png.pixels.assign(32 * 32, 255);
  sc.masks = (out / "mask.png").string();
  data::write_png(sc.masks, png);
  sc.out = (out / "from_png.h5").string();
  expect_error_naming(sc, "label maps");
  // Nor can a prepared file without label maps.
  sc.masks = tiny_dataset();
  expect_error_naming(sc, "no label maps");
}

TEST(SynthRun, LabelConditionNeedsAFileWithLabelMaps) {
  const fs::path out = scratch("labels_missing");
  SynthRunConfig c = tiny_run("no_labels", out);
  c.label_condition = true;  // tiny_dataset() has none
  try {
    run_synth_training(c);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--condition labels"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(tiny_dataset()), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(out / "no_labels"));
}

TEST(SynthRun, SpectralNormDiscriminatorIsCheckpointedAndResumesExactly) {
  const fs::path out = scratch("spectral_norm");
  SynthRunConfig c = tiny_run("straight", out);
  c.spectral_norm = true;
  // The power-iteration vectors are buffers in the checkpoint, so a resumed run matches.
  expect_resume_reproduces(c, out);
  const auto meta = train::read_checkpoint_json(out / "straight" / "checkpoints", "best", "synth");
  EXPECT_EQ(meta.at("discriminator").at("spectral_norm"), true);
  SynthRunConfig none = tiny_run("no_d", out);
  none.spectral_norm = true;
  none.gan_mode = GanMode::None;
  EXPECT_THROW(run_synth_training(none), Error);
}

TEST(SynthRun, BadConfigurationIsRefused) {
  const fs::path out = scratch("bad_config");
  SynthRunConfig c = tiny_run("bad", out);
  c.data = (out / "none.h5").string();
  EXPECT_THROW(run_synth_training(c), Error);
  c = tiny_run("bad", out);
  c.num_downs = 6;  // 32 / 2^6 is not whole
  EXPECT_THROW(run_synth_training(c), Error);
  c = tiny_run("bad", out);
  c.train_fraction = 0;
  EXPECT_THROW(run_synth_training(c), Error);
}

}  // namespace
}  // namespace rg::app
