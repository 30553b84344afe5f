// Modality translation: the CycleGAN step on a toy pair of domains, unpaired subjects, the
// paired-grid checks, tiny train_translate runs (pix2pix and CycleGAN: run directory, resume,
// falling loss) and the volume translation (input grid, HU, bad inputs).
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <cstring>
#include <iterator>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "apps/translate/cyclegan_step.h"
#include "apps/translate/translate_run.h"
#include "apps/translate/translate_volume.h"
#include "data/nifti.h"
#include "data/phantom.h"
#include "data/prepare.h"
#include "data/slice_dataset.h"
#include "data/volume_io.h"
#include "engine/roentgen.h"
#include "models/patchgan.h"
#include "models/resnet_generator.h"
#include "engine/checkpoint.h"
#include "models/pix2pix_names.h"
#include "train/checkpoint.h"
#include "tests/translate/tiny_translation.h"

namespace rg::app {
namespace {

namespace fs = std::filesystem;
using train::GanMode;

fs::path scratch(const std::string& name) {
  const fs::path p = fs::temp_directory_path() / ("rg_translate_" + name + "_" + std::to_string(getpid()));
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

// ---- the CycleGAN step on toy domains: A = bright discs on dark, B = the same discs inverted.
void toy_domains(Tensor& a, Tensor& b) {
  const int64_t n = 4, s = 16;
  a = Tensor::empty({n, s, s, 1});
  b = Tensor::empty({n, s, s, 1});
  for (int64_t i = 0; i < n; ++i)
    for (int64_t y = 0; y < s; ++y)
      for (int64_t x = 0; x < s; ++x) {
        const double r = 3.0 + static_cast<double>(i);
        const bool in = (x - 8) * (x - 8) + (y - 7) * (y - 7) < r * r;
        a.data<float>()[(i * s + y) * s + x] = in ? 0.6f : -0.6f;
        b.data<float>()[((n - 1 - i) * s + y) * s + x] = in ? -0.5f : 0.5f;  // unpaired order
      }
}

TEST(CycleGanStep, BothCycleLossesFallOnToyDomains) {
  Tensor a, b;
  toy_domains(a, b);
  Generator init(1), pool(2);
  models::ResnetConfig rc;
  rc.ngf = 4;
  rc.n_blocks = 1;
  models::ResnetGenerator g_a(rc, init), g_b(rc, init);
  models::PatchGanConfig dc;
  dc.in_channels = 1;
  dc.ndf = 4;
  dc.n_layers = 2;
  dc.norm = models::NormKind::Instance;
  models::PatchDiscriminator d_a(dc, init), d_b(dc, init);
  std::vector<Tensor> gp = g_a.parameters(), more = g_b.parameters();
  gp.insert(gp.end(), more.begin(), more.end());
  std::vector<Tensor> dp = d_a.parameters(), dmore = d_b.parameters();
  dp.insert(dp.end(), dmore.begin(), dmore.end());
  optim::Adam opt_g(gp, {.lr = 2e-3, .beta1 = 0.5, .beta2 = 0.999});
  optim::Adam opt_d(dp, {.lr = 2e-4, .beta1 = 0.5, .beta2 = 0.999});
  CycleGanStep step(g_a, g_b, d_a, d_b, opt_g, opt_d, CycleGanConfig{.pool_size = 3}, pool);
  train::StepLosses first = step.step(a, b), last;
  for (int i = 0; i < 60; ++i) last = step.step(a, b);
  for (const char* k : {"g_adv_a", "g_adv_b", "cycle_a", "cycle_b", "idt_a", "idt_b", "g_total", "d_a", "d_b", "d_loss"}) {
    ASSERT_TRUE(last.contains(k)) << k;
    EXPECT_TRUE(std::isfinite(last.read(k))) << k;
  }
  EXPECT_LT(last.read("cycle_a"), 0.5 * first.read("cycle_a"));
  EXPECT_LT(last.read("cycle_b"), 0.5 * first.read("cycle_b"));
  // Mismatched batches are refused.
  EXPECT_THROW(step.step(a, b.slice(0, 0, 2)), Error);
}

TEST(Translate, UnpairedSlicesComeFromDisjointSubjects) {
  std::vector<int32_t> subjects;
  for (int32_t s : {0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 5, 5}) subjects.push_back(s);
  const auto [a, b] = unpaired_slices(subjects, 7);
  EXPECT_EQ(a.size() + b.size(), subjects.size());
  std::set<int32_t> sa, sb;
  for (int64_t i : a) sa.insert(subjects[static_cast<size_t>(i)]);
  for (int64_t i : b) sb.insert(subjects[static_cast<size_t>(i)]);
  for (int32_t s : sa) EXPECT_FALSE(sb.count(s)) << "subject " << s << " in both domains";
  EXPECT_EQ(sa.size(), 2u);
  EXPECT_EQ(sb.size(), 3u);
  EXPECT_EQ(unpaired_slices(subjects, 7), unpaired_slices(subjects, 7));
  EXPECT_THROW(unpaired_slices({4, 4, 4}, 1), Error);
}

// ---- the tiny translation dataset (tests/translate/tiny_translation.h) shared by the run tests.
const data::TranslationFiles& tiny_files() {
  static const data::TranslationFiles files = test_data::write_tiny_translation(scratch("data").string());
  return files;
}

TranslateRunConfig tiny_run(TranslateModel model, const fs::path& out, const std::string& name) {
  return test_data::tiny_translate_run(model, tiny_files(), out.string(), name);
}

std::vector<nlohmann::json> lines(const fs::path& run) {
  std::vector<nlohmann::json> out;
  std::ifstream in(run / "metrics.jsonl");
  std::string line;
  while (std::getline(in, line)) out.push_back(nlohmann::json::parse(line));
  return out;
}

// The mean of `key` over the first and the last `k` train lines.
std::pair<double, double> first_last(const std::vector<nlohmann::json>& ls, const std::string& key, size_t k) {
  std::vector<double> v;
  for (const auto& j : ls)
    if (j.value("kind", "") == "train" && j.contains(key)) v.push_back(j[key].get<double>());
  EXPECT_GE(v.size(), 2 * k) << key;
  if (v.size() < 2 * k) return {0, 0};
  double f = 0, l = 0;
  for (size_t i = 0; i < k; ++i) {
    f += v[i];
    l += v[v.size() - 1 - i];
  }
  return {f / k, l / k};
}

void expect_run_directory(const fs::path& run) {
  EXPECT_TRUE(fs::exists(run / "config.json"));
  EXPECT_TRUE(fs::exists(run / "summary.json"));
  EXPECT_TRUE(fs::exists(run / "checkpoints" / "best.safetensors"));
  EXPECT_TRUE(fs::exists(run / "checkpoints" / "latest.safetensors"));
  EXPECT_TRUE(fs::exists(run / "samples" / "epoch_001.png"));
  EXPECT_TRUE(fs::exists(run / "samples" / "test.png"));
  bool test = false;
  for (const auto& j : lines(run)) {
    if (j.value("kind", "") != "test") continue;
    test = true;
    EXPECT_GT(j.at("mae_hu").get<double>(), 0.0);
    EXPECT_LT(j.at("mae_hu").get<double>(), 2000.0);
    EXPECT_TRUE(j.contains("lesion_dice"));
    EXPECT_TRUE(j.contains("invented_lesion_pixels"));
    // The volume: pixels x a positive voxel volume (0 exactly when no pixel was invented).
    const double mm3 = j.at("invented_lesion_mm3").get<double>();
    const int64_t px = j.at("invented_lesion_pixels").get<int64_t>();
    EXPECT_GE(mm3, 0.0);
    EXPECT_EQ(mm3 > 0, px > 0);
    EXPECT_TRUE(j.at("tissue_mae_hu").contains("bone"));
    EXPECT_TRUE(j.at("tissue_mae_hu").contains("halo"));
  }
  EXPECT_TRUE(test);
}

TEST(TranslateRun, Pix2PixWritesItsRunResumesAndLearns) {
  const fs::path out = scratch("p2p");
  // Interrupted after 3 steps, then resumed to the end.
  TranslateRunConfig c = tiny_run(TranslateModel::Pix2Pix, out, "p2p");
  c.max_steps = 3;
  ASSERT_EQ(run_translate_training(c), 0);
  EXPECT_TRUE(fs::exists(out / "p2p" / "checkpoints" / "latest.safetensors"));
  c.max_steps = 0;
  c.resume = true;
  ASSERT_EQ(run_translate_training(c), 0);
  expect_run_directory(out / "p2p");
  const auto ls = lines(out / "p2p");
  int64_t last_step = 0, steps = 0;
  for (const auto& j : ls)
    if (j.value("kind", "") == "train") {
      EXPECT_GT(j.at("step").get<int64_t>(), last_step);  // the resume continued, no repeats
      last_step = j.at("step").get<int64_t>();
      ++steps;
    }
  EXPECT_GE(steps, 10);
  const auto [f, l] = first_last(ls, "g_l1", 3);
  EXPECT_LT(l, f) << "g_l1 did not fall";
  const auto meta = train::read_checkpoint_json(out / "p2p" / "checkpoints", "best", "translate");
  EXPECT_EQ(meta.at("model"), "pix2pix");
  EXPECT_EQ(meta.at("generator_module"), "G");
}

const fs::path& cyclegan_run() {
  static const fs::path run = [] {
    const fs::path out = scratch("cyc");
    TranslateRunConfig c = tiny_run(TranslateModel::CycleGan, out, "cyc");
    c.epochs = 4;
    EXPECT_EQ(run_translate_training(c), 0);
    return out / "cyc";
  }();
  return run;
}

TEST(TranslateRun, CycleGanWritesItsRunAndItsCycleLossesFall) {
  const fs::path& run = cyclegan_run();
  expect_run_directory(run);
  const auto ls = lines(run);
  for (const char* k : {"cycle_a", "cycle_b"}) {
    const auto [f, l] = first_last(ls, k, 3);
    EXPECT_LT(l, f) << k << " did not fall";
  }
  const auto meta = train::read_checkpoint_json(run / "checkpoints", "best", "translate");
  EXPECT_EQ(meta.at("generator").at("model"), "resnet");
  EXPECT_EQ(meta.at("run").at("unpaired"), true);
}

TEST(TranslateRun, FilesOnDifferentGridsAreRefusedBeforeWriting) {
  const fs::path out = scratch("bad");
  // A second dataset prepared at another size.
  data::PhantomOptions o;
  o.dims = {48, 48, 6};
  o.spacing = {6.0, 6.0, 10.0};
  const auto other = data::prepare_phantom_translation((out / "d").string(), "other", 4, 3, 16, 0, o, {}, false);
  TranslateRunConfig c = tiny_run(TranslateModel::Pix2Pix, out, "bad");
  c.target = other.ct;
  try {
    run_translate_training(c);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("different slice grids"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(other.ct), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(out / "bad"));
  c = tiny_run(TranslateModel::Pix2Pix, out, "bad");
  c.source = (out / "missing_mr.h5").string();
  EXPECT_THROW(run_translate_training(c), Error);
  c = tiny_run(TranslateModel::CycleGan, out, "bad");
  c.generator = "unet";
  EXPECT_THROW(run_translate_training(c), Error);
  EXPECT_FALSE(fs::exists(out / "bad"));
}

TEST(TranslateVolume, OutputLiesOnTheInputGridInHu) {
  const fs::path dir = scratch("volume");
  data::PhantomOptions o;
  o.dims = {40, 36, 5};
  o.spacing = {7.0, 8.0, 10.0};
  data::Phantom ph = data::make_lung_phantom(99, o);
  data::Volume mr = data::render_phantom_mr(ph.tissue, 99);
  const std::string in = (dir / "mr.nii.gz").string(), out = (dir / "ct.nii.gz").string();
  data::write_nifti(in, mr);
  TranslateVolumeOptions t;
  t.checkpoint = (cyclegan_run() / "checkpoints" / "best.safetensors").string();
  t.input = in;
  t.output = out;
  t.device = "cpu";
  const auto report = run_translate_volume(t);
  const data::Volume ct = data::read_volume(out);
  EXPECT_EQ(ct.dims, mr.dims);
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 4; ++c) EXPECT_NEAR(ct.affine[r][c], mr.affine[r][c], 1e-3);
  EXPECT_EQ(report.at("slices"), 5);
  EXPECT_FALSE(report.contains("mae_hu_body"));
  // With the real CT as reference: an MAE in HU.
  const std::string ref = (dir / "ct_ref.nii.gz").string();
  data::write_nifti(ref, ph.ct);
  t.reference = ref;
  t.output = (dir / "ct_b.nii.gz").string();
  const auto scored = run_translate_volume(t);
  EXPECT_GT(scored.at("mae_hu_body").get<double>(), 0.0);
  EXPECT_LT(scored.at("mae_hu_body").get<double>(), 2000.0);
  // A reference on another grid is refused before anything is written.
  data::Volume other = ph.ct;
  other.affine[0][3] += 5.0;
  const std::string ref2 = (dir / "ct_shifted.nii.gz").string();
  data::write_nifti(ref2, other);
  t.reference = ref2;
  t.output = (dir / "ct_c.nii.gz").string();
  EXPECT_THROW(run_translate_volume(t), Error);
  EXPECT_FALSE(fs::exists(t.output));
  t.reference.clear();
  t.output = out;
  for (float v : ct.voxels) {
    ASSERT_GE(v, -1000.0f - 1e-3f);
    ASSERT_LE(v, 1000.0f + 1e-3f);
  }
  // Bad inputs: clear errors, nothing written.
  const std::string out2 = (dir / "ct2.nii.gz").string();
  t.output = out2;
  t.input = (dir / "missing.nii.gz").string();
  EXPECT_THROW(run_translate_volume(t), Error);
  t.input = in;
  t.output = (dir / "ct.png").string();
  EXPECT_THROW(run_translate_volume(t), Error);
  t.output = out2;
  t.checkpoint = (dir / "mr.nii.gz").string();  // not a checkpoint
  EXPECT_THROW(run_translate_volume(t), Error);
  {
    std::ofstream(dir / "truncated.nii.gz") << "\x1f\x8b";
  }
  t.checkpoint = (cyclegan_run() / "checkpoints" / "best.safetensors").string();
  t.input = (dir / "truncated.nii.gz").string();
  EXPECT_THROW(run_translate_volume(t), Error);
  EXPECT_FALSE(fs::exists(out2));
}

// Two volumes of the same grid as one 4-D NIfTI-1 (.nii): the first file's header with dim[0] = 4,
// dim[4] = 2, then both data blocks.
void write_4d(const std::string& path, const data::Volume& a, const data::Volume& b, const fs::path& dir) {
  const std::string pa = (dir / "a.nii").string(), pb = (dir / "b.nii").string();
  data::write_nifti(pa, a);
  data::write_nifti(pb, b);
  auto bytes = [](const std::string& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  };
  std::string ha = bytes(pa);
  const std::string hb = bytes(pb);
  const int16_t four = 4, two = 2;
  std::memcpy(&ha[40], &four, 2);
  std::memcpy(&ha[48], &two, 2);
  std::ofstream out(path, std::ios::binary);
  out << ha << hb.substr(352);
}

TEST(TranslateChannels, TwoSourceFilesBecomeTwoInputChannels) {
  const fs::path out = scratch("channels");
  TranslateRunConfig c = tiny_run(TranslateModel::Pix2Pix, out, "two");
  c.source_channels = {tiny_files().tissue};  // any file on the same grid serves as a 2nd contrast
  c.max_steps = 2;
  ASSERT_EQ(run_translate_training(c), 0);
  const auto meta = train::read_checkpoint_json(out / "two" / "checkpoints", "latest", "translate");
  EXPECT_EQ(meta.at("generator").at("in_channels"), 2);
  EXPECT_EQ(meta.at("source_channels_prepared").size(), 2u);
  EXPECT_EQ(meta.at("discriminator").at("in_channels"), 3);

  // translate: a 4-D NIfTI (2 volumes) or two files give the two channels; one alone is refused.
  data::PhantomOptions o;
  o.dims = {40, 36, 5};
  o.spacing = {7.0, 8.0, 10.0};
  const data::Phantom ph = data::make_lung_phantom(98, o);
  const data::Volume mr = data::render_phantom_mr(ph.tissue, 98);
  const std::string in4d = (out / "mr_tissue.nii").string(), in3d = (out / "mr.nii.gz").string(),
                    tissue = (out / "tissue.nii.gz").string();
  write_4d(in4d, mr, ph.tissue, out);
  data::write_nifti(in3d, mr);
  data::write_nifti(tissue, ph.tissue);
  TranslateVolumeOptions t;
  t.checkpoint = (out / "two" / "checkpoints" / "latest.safetensors").string();
  t.device = "cpu";
  t.input = in4d;
  t.output = (out / "ct_4d.nii.gz").string();
  EXPECT_EQ(run_translate_volume(t).at("channels"), 2);
  t.input = in3d;
  t.input_channels = {tissue};
  t.output = (out / "ct_files.nii.gz").string();
  run_translate_volume(t);
  EXPECT_EQ(data::read_volume(t.output).voxels, data::read_volume((out / "ct_4d.nii.gz").string()).voxels);

  // prepare_data nifti --volume 1: the 4-D file's second contrast prepares exactly as the same
  // contrast in a file of its own (the training channel files of a multi-contrast volume).
  {
    data::PrepareOptions po;
    po.modality = data::Modality::MRI;
    po.crop = data::CropMode::None;
    po.size = 16;
    po.progress = false;
    const std::string from_4d = (out / "vol1.h5").string(), from_3d = (out / "tissue.h5").string();
    data::prepare_slices(data::volume_pair_subjects({in4d}, {tissue}, 1), po, from_4d);
    data::prepare_slices(data::volume_pair_subjects({tissue}, {tissue}), po, from_3d);
    data::SliceDataset a(from_4d, "train"), b(from_3d, "train");
    ASSERT_EQ(a.size(), b.size());
    ASSERT_GT(a.size(), 0);
    std::vector<float> ia(16 * 16), ib(16 * 16);
    std::vector<float> ma(16 * 16), mb(16 * 16);
    for (int64_t i = 0; i < a.size(); ++i) {
      a.read(i, ia.data(), ma.data());
      b.read(i, ib.data(), mb.data());
      ASSERT_EQ(ia, ib) << i;
    }
    // Out of range, and a volume of a file that is not NIfTI: errors naming the file.
    try {
      data::prepare_slices(data::volume_pair_subjects({in4d}, {tissue}, 2), po, (out / "vol2.h5").string());
      ADD_FAILURE() << "no error for volume 2 of a 2-volume file";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("mr_tissue.nii"), std::string::npos) << e.what();
    }
    EXPECT_FALSE(fs::exists(out / "vol2.h5"));
    EXPECT_THROW(data::volume_pair_subjects({(out / "vol1.h5").string()}, {tissue}, 1), Error);
  }
  t.input_channels.clear();
  t.output = (out / "ct_missing.nii.gz").string();
  try {
    run_translate_volume(t);
    ADD_FAILURE() << "no error for a missing channel";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("channel is missing"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(t.output));
  // Training refuses a missing channel file.
  c.source_channels = {(out / "nope.h5").string()};
  c.name = "three";
  EXPECT_THROW(run_translate_training(c), Error);
  EXPECT_FALSE(fs::exists(out / "three"));
}

// --full-res-width: the U-Net's full-resolution ends reach the checkpoint, `translate` rebuilds
// them from it (a volume comes out on the input grid), and the ResNet generator refuses the flag.
TEST(TranslateRun, FullResolutionEndsReachTheCheckpointAndTranslate) {
  const fs::path out = scratch("full_res");
  TranslateRunConfig c = tiny_run(TranslateModel::Pix2Pix, out, "fr");
  c.full_res_width = 3;
  c.max_steps = 2;
  ASSERT_EQ(run_translate_training(c), 0);
  const auto meta = train::read_checkpoint_json(out / "fr" / "checkpoints", "latest", "translate");
  EXPECT_EQ(meta.at("generator").at("full_res_width"), 3);
  EXPECT_EQ(meta.at("run").at("full_res_width"), 3);

  data::PhantomOptions o;
  o.dims = {40, 36, 5};
  o.spacing = {7.0, 8.0, 10.0};
  const data::Phantom ph = data::make_lung_phantom(97, o);
  const std::string in = (out / "mr.nii.gz").string();
  data::write_nifti(in, data::render_phantom_mr(ph.tissue, 97));
  TranslateVolumeOptions t;
  t.checkpoint = (out / "fr" / "checkpoints" / "latest.safetensors").string();
  t.device = "cpu";
  t.input = in;
  t.output = (out / "ct.nii.gz").string();
  EXPECT_EQ(run_translate_volume(t).at("slices"), 5);
  EXPECT_EQ(data::read_volume(t.output).dims, ph.tissue.dims);

  c = tiny_run(TranslateModel::CycleGan, out, "fr_resnet");
  c.full_res_width = 3;
  EXPECT_THROW(run_translate_training(c), Error);
  EXPECT_FALSE(fs::exists(out / "fr_resnet"));
}

TEST(TranslateExport, CycleGanGeneratorsGetTheReferenceNames) {
  const fs::path ck = cyclegan_run() / "checkpoints" / "best.safetensors";
  const SafetensorsFile f = load_safetensors(ck.string());
  const fs::path dir = scratch("export");
  models::ResnetConfig rc;
  rc.ngf = 4;
  rc.n_blocks = 1;
  const std::string out = (dir / "netG_B.safetensors").string();
  models::write_pix2pix_safetensors(out, f, rc, "G_B.");
  const SafetensorsFile back = load_safetensors(out);
  std::set<std::string> keys;
  for (const auto& [k, t] : back.tensors) keys.insert(k);
  // resnet with 1 block: model.1, .4, .7, model.10.conv_block.{1,5}, model.11, .14, .18.
  const std::set<std::string> expect = {
      "model.1.weight", "model.1.bias", "model.4.weight", "model.4.bias", "model.7.weight", "model.7.bias",
      "model.10.conv_block.1.weight", "model.10.conv_block.1.bias", "model.10.conv_block.5.weight",
      "model.10.conv_block.5.bias", "model.11.weight", "model.11.bias", "model.14.weight", "model.14.bias",
      "model.18.weight", "model.18.bias"};
  EXPECT_EQ(keys, expect);
  EXPECT_EQ(back.metadata.at("pix2pix"), "--netG resnet(n_blocks=1) --ngf 4 --norm instance --input_nc 1 --output_nc 1 --no_dropout");
  // The export app writes all four networks of a CycleGAN checkpoint.
  std::error_code ec;
  const fs::path app = fs::read_symlink("/proc/self/exe", ec).parent_path().parent_path() / "bin" / "export";
  if (ec || !fs::exists(app)) GTEST_SKIP() << "export app not built (" << app << ")";
  const std::string cmd = app.string() + " --checkpoint " + ck.string() + " --out " + (dir / "app").string() + " > /dev/null";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  for (const char* n : {"netG_A", "netG_B", "netD_A", "netD_B", "export"})
    EXPECT_TRUE(fs::exists(dir / "app" / (std::string(n) + (std::string(n) == "export" ? ".json" : ".safetensors")))) << n;
}

}  // namespace
}  // namespace rg::app
