// seg256 (/work/shared/BENCHMARK.md, docs/performance.md "seg256 end to end"): one training step
// of adversarial segmentation with the engine, G = pix2pix unet_256 (1 -> 1 channel, ngf 64,
// batch norm, no dropout), D = PatchGAN n_layers 3 on (image, mask) pairs, Adam lr 2e-4
// betas (0.5, 0.999) on both:
//
//   logits = G(x), p = sigmoid(logits)
//   D step: L_D = 0.5 (BCE(D(x, m), 1) + BCE(D(x, p.detach()), 0))          -> Adam on D
//   G step: L_G = BCE(D(x, p), 1) + 100 (BCE(logits, m) + softDice(p, m)), D frozen -> Adam on G
//
// The step is train_seg's own (app::SegGanStep in GAN mode vanilla with lambda 100, on the
// training layer's alternating update): its losses stay on the device, so nothing inside a step
// waits for the host, as in the PyTorch reference; the losses are read once, after the row.
//
// Every (batch, precision) row builds fresh networks and optimizers, rotates --input-sets
// random input sets (normal images, Bernoulli(0.5) masks), runs --warmup steps, then times
// --repeats steps one by one (CUDA: timing events on the engine's current stream around each
// step; CPU: steady_clock) and reports the median. Peak memory is the allocator's peak over
// the whole row (networks, optimizer state, inputs, warm-up and timed steps).
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "apps/seg/seg_gan.h"
#include "engine/allocator.h"
#include "engine/roentgen.h"
#include "models/patchgan.h"
#include "models/unet.h"
#include "train/settings.h"

#if __has_include("engine/conv_backend.h")
#include "engine/conv_backend.h"
#define RG_BENCH_HAS_CONV_BACKEND 1
#else
#define RG_BENCH_HAS_CONV_BACKEND 0
#endif

#if RG_WITH_CUDA
#include "engine/cuda/runtime.h"
constexpr bool kBuiltWithCuda = true;
#else
constexpr bool kBuiltWithCuda = false;
#endif

namespace {

using nlohmann::json;
using namespace rg;

struct Options {
  std::string device;  // empty: cuda when a device is present, cpu otherwise
  std::vector<int64_t> batches{1, 16, 64};
  std::vector<std::string> precisions{"fp32", "tf32", "bf16"};
  int warmup = 10;
  int repeats = 20;
  int input_sets = 4;
  int64_t size = 256;
  int64_t ngf = 64;
  int64_t ndf = 64;
  int64_t num_downs = 0;  // 0: log2(size), at most 8 (unet_256 at 256)
  std::string json_path;
  std::string conv_backend = "auto";
  uint64_t seed = 1234;
};

// ---- Work per image
//
// Multiply-accumulates of one forward pass per image, read off the built networks' conv
// weights: a conv's MACs are (output pixels) x (weight elements). In the U-Net, level i's down
// conv produces (S/2^(i+1))^2 pixels and its transposed up conv reads that many, so both count
// (S/2^(i+1))^2 x numel(weight). In the PatchGAN every 4x4 pad-1 conv maps a side r to
// (r - 2)/stride + 1.
//
// nominal FLOP/image = 2 x 3 x (G_fwd + 3 D_fwd): each of the step's four network passes
// (G once, D on the real pair, on the detached fake, on the fake in the G step) counted as a
// forward plus two backward products of the same size. This is BENCHMARK.md's convention
// (unet_256 / ndf 64 at 256: 2 x 3 x (5.95 + 3 x 3.13) GMAC = 92.0 GFLOP) and the one both
// this binary and pytorch_seg256.py use for "achieved TFLOP/s".
//
// executed FLOP/image = what the step has to compute at least: G forward, weight gradients
// and input gradients (none for the first conv: x needs no gradient) = 3 G - G_first; D step
// two forwards, two weight-gradient passes and two input-gradient passes without D's first
// conv (x, m and p.detach() need no gradient) = 6 D - 2 D_first; G step one forward and one
// input-gradient pass, no weight gradients (D frozen) = 2 D. 85.6 GFLOP at 256/64.
struct ConvWork {
  double g_fwd_mac = 0, d_fwd_mac = 0;      // per image, one forward pass
  double g_first_mac = 0, d_first_mac = 0;  // the first conv of each
  double nominal_flop() const { return 6.0 * (g_fwd_mac + 3.0 * d_fwd_mac); }
  double executed_flop() const {
    return 2.0 * ((3.0 * g_fwd_mac - g_first_mac) + (8.0 * d_fwd_mac - 2.0 * d_first_mac));
  }
};

// "<prefix><int><suffix>" -> the int, or -1.
int64_t index_between(const std::string& name, const std::string& prefix,
                      const std::string& suffix) {
  if (name.size() <= prefix.size() + suffix.size() || name.compare(0, prefix.size(), prefix) ||
      name.compare(name.size() - suffix.size(), suffix.size(), suffix)) {
    return -1;
  }
  const std::string mid = name.substr(prefix.size(), name.size() - prefix.size() - suffix.size());
  if (mid.empty() || mid.find_first_not_of("0123456789") != std::string::npos) return -1;
  return std::stoll(mid);
}

ConvWork conv_work(const models::UnetGenerator& g, const models::PatchDiscriminator& d,
                   int64_t size) {
  ConvWork w;
  int64_t counted = 0, all_4d = 0;
  for (const auto& [name, t] : g.named_parameters()) {
    if (t.dim() == 4) all_4d += t.numel();
    int64_t level = index_between(name, "down.", ".conv.weight");
    if (level < 0) level = index_between(name, "up.", ".conv.weight");
    if (level < 0) continue;
    const double side = static_cast<double>(size >> (level + 1));
    const double macs = side * side * static_cast<double>(t.numel());
    w.g_fwd_mac += macs;
    if (name == "down.0.conv.weight") w.g_first_mac = macs;
    counted += t.numel();
  }
  RG_CHECK(counted == all_4d && w.g_first_mac > 0,
           "bench_seg256: the U-Net's conv weights are not all named down.<i>.conv / up.<i>.conv; "
           "update conv_work()");

  // Output side of blocks.0 .. blocks.n_layers, then of the head.
  std::vector<int64_t> sides;
  int64_t side = size;
  for (int64_t k = 0; k <= d.config.n_layers; ++k) {
    side = (side - 2) / (k < d.config.n_layers ? 2 : 1) + 1;
    sides.push_back(side);
  }
  const int64_t head_side = side - 1;
  counted = 0;
  all_4d = 0;
  for (const auto& [name, t] : d.named_parameters()) {
    if (t.dim() == 4) all_4d += t.numel();
    const int64_t k = index_between(name, "blocks.", ".conv.weight");
    double out_side = 0;
    if (k >= 0 && k < static_cast<int64_t>(sides.size())) {
      out_side = static_cast<double>(sides[static_cast<size_t>(k)]);
    } else if (name == "head.weight") {
      out_side = static_cast<double>(head_side);
    } else {
      continue;
    }
    const double macs = out_side * out_side * static_cast<double>(t.numel());
    w.d_fwd_mac += macs;
    if (k == 0) w.d_first_mac = macs;
    counted += t.numel();
  }
  RG_CHECK(counted == all_4d && w.d_first_mac > 0 && head_side > 0,
           "bench_seg256: the PatchGAN's conv weights are not all named blocks.<k>.conv / head; "
           "update conv_work()");
  return w;
}

// ---- The step

struct Networks {
  models::UnetGenerator g;
  models::PatchDiscriminator d;
  optim::Adam opt_g, opt_d;
  Networks(const models::UnetConfig& gc, const models::PatchGanConfig& dc, Generator& init,
           Device device)
      : g(gc, init),
        d(dc, init),
        opt_g(moved(g, device), adam()),
        opt_d(moved(d, device), adam()) {}

 private:
  static optim::AdamOptions adam() {
    return {.lr = 2e-4, .beta1 = 0.5, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.0};
  }
  static std::vector<Tensor> moved(nn::Module& m, Device device) {
    m.to(device);
    return m.parameters();
  }
};

struct InputSet {
  Tensor image, mask;  // [N,S,S,1] in the activation dtype; masks are exact in bf16
};

// ---- One row

struct Row {
  int64_t batch = 0;
  std::string precision;
  std::vector<double> step_ms;
  double ms_median = 0, ms_min = 0, ms_max = 0, wall_ms_mean = 0;
  double images_per_s = 0, tflops = 0, tflops_executed = 0;
  size_t peak_bytes = 0;
  double d_loss = 0, g_loss = 0;
  std::string note, error;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

void synchronize(Device device) {
#if RG_WITH_CUDA
  if (device.is_cuda()) cuda::synchronize_current_stream(device.index);
#else
  (void)device;
#endif
}

Row run_row(const Options& o, Device device, int64_t batch, const std::string& precision,
            const ConvWork& work) {
  Row row;
  row.batch = batch;
  row.precision = precision;
  const DType act = train::apply_precision(train::parse_precision(precision), device, &row.note);

  Allocator& alloc = allocator_for(device);
  synchronize(device);
  alloc.reset_peak();

  models::UnetConfig gc = models::UnetConfig::unet_256();
  gc.num_downs = o.num_downs;
  gc.ngf = o.ngf;
  models::PatchGanConfig dc;
  dc.in_channels = 2;
  dc.ndf = o.ndf;
  dc.n_layers = 3;
  Generator init(o.seed);
  Networks nets(gc, dc, init, device);
  nets.g.train();
  nets.d.train();

  Generator data_gen(o.seed ^ 0x5e9256ULL);
  std::vector<InputSet> sets;
  for (int i = 0; i < o.input_sets; ++i) {
    Tensor image = Tensor::empty({batch, o.size, o.size, 1});
    Tensor mask = Tensor::empty({batch, o.size, o.size, 1});
    normal_(image, 0.0, 1.0, data_gen);
    bernoulli_(mask, 0.5, data_gen);
    sets.push_back({image.to(device).to(act), mask.to(device).to(act)});
  }

  Generator step_gen(o.seed ^ 0x7a11ULL);
  app::SegGanStep seg_step(nets.g, &nets.d, nets.opt_g, &nets.opt_d,
                           {.mode = train::GanMode::Vanilla, .lambda_seg = 100.0}, step_gen);
  train::StepLosses last;
  int64_t step_index = 0;
  auto step = [&] {
    const InputSet& in = sets[static_cast<size_t>(step_index++ % o.input_sets)];
    last = seg_step.step(in.image, in.mask);
  };

  for (int i = 0; i < o.warmup; ++i) step();
  synchronize(device);

  row.step_ms.resize(static_cast<size_t>(o.repeats));
  const auto wall_start = std::chrono::steady_clock::now();
#if RG_WITH_CUDA
  if (device.is_cuda()) {
    const cudaStream_t stream = cuda::current_stream(device.index);
    std::vector<std::unique_ptr<cuda::Event>> starts, ends;
    for (int r = 0; r < o.repeats; ++r) {
      starts.push_back(std::make_unique<cuda::Event>(true));
      ends.push_back(std::make_unique<cuda::Event>(true));
    }
    for (int r = 0; r < o.repeats; ++r) {
      starts[static_cast<size_t>(r)]->record(stream);
      step();
      ends[static_cast<size_t>(r)]->record(stream);
    }
    ends.back()->synchronize();
    for (size_t r = 0; r < row.step_ms.size(); ++r) {
      row.step_ms[r] = static_cast<double>(ends[r]->elapsed_ms(*starts[r]));
    }
  }
#endif
  if (device.is_cpu()) {
    for (size_t r = 0; r < row.step_ms.size(); ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      step();
      row.step_ms[r] =
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    }
  }
  synchronize(device);
  row.wall_ms_mean =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - wall_start)
          .count() /
      o.repeats;

  row.d_loss = last.read("d_loss");
  row.g_loss = last.read("g_total");
  row.peak_bytes = alloc.stats().peak;
  row.ms_median = median(row.step_ms);
  row.ms_min = *std::min_element(row.step_ms.begin(), row.step_ms.end());
  row.ms_max = *std::max_element(row.step_ms.begin(), row.step_ms.end());
  row.images_per_s = static_cast<double>(batch) * 1e3 / row.ms_median;
  row.tflops = work.nominal_flop() * row.images_per_s * 1e-12;
  row.tflops_executed = work.executed_flop() * row.images_per_s * 1e-12;
  if (!std::isfinite(row.d_loss) || !std::isfinite(row.g_loss)) {
    row.error = "non-finite loss after the timed steps";
  }
  return row;
}

std::string fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

std::string general(double v, int significant) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*g", significant, v);
  return buf;
}

json row_json(const Row& r) {
  json j{{"batch", r.batch},
         {"precision", r.precision},
         {"mode", "roentgen"},
         {"ok", r.error.empty()}};
  if (!r.step_ms.empty()) {
    j.update(json{{"ms_median", r.ms_median},
                  {"ms_min", r.ms_min},
                  {"ms_max", r.ms_max},
                  {"wall_ms_mean", r.wall_ms_mean},
                  {"step_ms", r.step_ms},
                  {"images_per_s", r.images_per_s},
                  {"tflops", r.tflops},
                  {"tflops_executed", r.tflops_executed},
                  {"peak_mem_bytes", r.peak_bytes},
                  {"peak_mem_mib", static_cast<double>(r.peak_bytes) / (1024.0 * 1024.0)},
                  {"d_loss", r.d_loss},
                  {"g_loss", r.g_loss}});
  }
  if (!r.note.empty()) j["note"] = r.note;
  if (!r.error.empty()) j["error"] = r.error;
  return j;
}

void print_table(const std::vector<Row>& rows) {
  std::printf("%6s  %-5s  %10s  %10s  %10s  %9s  %11s  %s\n", "batch", "prec", "ms/step", "min ms",
              "images/s", "TFLOP/s", "peak MiB", "note");
  for (const Row& r : rows) {
    if (r.step_ms.empty()) {
      std::printf("%6lld  %-5s  failed: %s\n", static_cast<long long>(r.batch), r.precision.c_str(),
                  r.error.c_str());
      continue;
    }
    std::string note = r.note;
    if (!r.error.empty()) note += (note.empty() ? "" : "; ") + r.error;
    std::printf("%6lld  %-5s  %10s  %10s  %10s  %9s  %11s  %s\n", static_cast<long long>(r.batch),
                r.precision.c_str(), fixed(r.ms_median, 3).c_str(), fixed(r.ms_min, 3).c_str(),
                general(r.images_per_s, 4).c_str(), general(r.tflops, 3).c_str(),
                fixed(static_cast<double>(r.peak_bytes) / (1024.0 * 1024.0), 1).c_str(),
                note.c_str());
  }
}

int64_t default_num_downs(int64_t size) {
  int64_t n = 0;
  while (n < 8 && (int64_t{2} << n) <= size) ++n;
  return n;
}

int run(const Options& opts) {
  Options o = opts;
  const Device device = train::resolve_device(o.device.empty() ? "auto" : o.device);
  RG_CHECK(device.is_cpu() || kBuiltWithCuda, "--device ", device.str(),
           ": this binary was built without CUDA");
  RG_CHECK(o.size >= 32 && (o.size & (o.size - 1)) == 0,
           "--size must be a power of two >= 32, got ", o.size);
  if (o.num_downs == 0) o.num_downs = default_num_downs(o.size);
  RG_CHECK(o.num_downs >= 5 && (o.size % (int64_t{1} << o.num_downs)) == 0, "--num-downs ",
           o.num_downs, " needs 5 .. log2(--size)");
  for (const std::string& p : o.precisions) train::parse_precision(p);  // refuses bad names
  for (int64_t b : o.batches) RG_CHECK(b > 0, "--batch: sizes must be positive, got ", b);

#if RG_BENCH_HAS_CONV_BACKEND
  set_conv_backend(parse_conv_backend(o.conv_backend, "--conv-backend"));
#else
  setenv("RG_CONV_BACKEND", o.conv_backend.c_str(), 1);  // read by an engine without the switch
#endif
#if RG_WITH_CUDA
  if (device.is_cuda()) cuda::set_device(device.index);
#endif

  // The FLOP count of the networks actually benchmarked (built once on the CPU, then dropped).
  ConvWork work;
  int64_t g_params = 0, d_params = 0;
  {
    models::UnetConfig gc = models::UnetConfig::unet_256();
    gc.num_downs = o.num_downs;
    gc.ngf = o.ngf;
    models::PatchGanConfig dc;
    dc.ndf = o.ndf;
    Generator init(o.seed);
    models::UnetGenerator g(gc, init);
    models::PatchDiscriminator d(dc, init);
    work = conv_work(g, d, o.size);
    g_params = g.parameter_count();
    d_params = d.parameter_count();
  }

  std::printf(
      "seg256 on %s: %lldx%lld, G unet num_downs %lld ngf %lld (%.2f M parameters), D n_layers 3 "
      "ndf %lld (%.2f M)\n",
      device.str().c_str(), static_cast<long long>(o.size), static_cast<long long>(o.size),
      static_cast<long long>(o.num_downs), static_cast<long long>(o.ngf), g_params * 1e-6,
      static_cast<long long>(o.ndf), d_params * 1e-6);
  std::printf(
      "conv work per image: G %.4g GMAC, D %.4g GMAC per forward; step %.4g GFLOP nominal "
      "(BENCHMARK.md convention), %.4g GFLOP executed\n",
      work.g_fwd_mac * 1e-9, work.d_fwd_mac * 1e-9, work.nominal_flop() * 1e-9,
      work.executed_flop() * 1e-9);
  std::printf("train_seg's step (app::SegGanStep), conv backend %s, warm-up %d, median of %d, "
              "%d input sets\n", o.conv_backend.c_str(), o.warmup, o.repeats, o.input_sets);
  if (o.repeats < 5) std::printf("note: fewer than 5 repeats: a smoke run, not a measurement\n");
  std::fflush(stdout);

  std::vector<Row> rows;
  for (int64_t batch : o.batches) {
    for (const std::string& precision : o.precisions) {
      Row row;
      try {
        row = run_row(o, device, batch, precision, work);
      } catch (const std::exception& e) {
        row = Row{};
        row.batch = batch;
        row.precision = precision;
        row.error = e.what();
      }
      rows.push_back(row);
      const std::string outcome =
          row.step_ms.empty() ? "failed: " + row.error : fixed(row.ms_median, 3) + " ms/step";
      std::fprintf(stderr, "batch %lld %s: %s\n", static_cast<long long>(batch), precision.c_str(),
                   outcome.c_str());
    }
  }
  std::printf("\n");
  print_table(rows);

  if (!o.json_path.empty()) {
    json j{{"tool", "bench_seg256"},
           {"device", device.str()},
           {"size", o.size},
           {"num_downs", o.num_downs},
           {"ngf", o.ngf},
           {"ndf", o.ndf},
           {"warmup", o.warmup},
           {"repeats", o.repeats},
           {"input_sets", o.input_sets},
           {"step", "app::SegGanStep"},
           {"conv_backend", o.conv_backend},
           {"conv_backend_applied", RG_BENCH_HAS_CONV_BACKEND ? "set_conv_backend" : "env"},
           {"g_params", g_params},
           {"d_params", d_params},
           {"g_fwd_gmac_per_image", work.g_fwd_mac * 1e-9},
           {"d_fwd_gmac_per_image", work.d_fwd_mac * 1e-9},
           {"gflop_per_image", work.nominal_flop() * 1e-9},
           {"gflop_per_image_executed", work.executed_flop() * 1e-9},
           {"rows", json::array()}};
    for (const Row& r : rows) j["rows"].push_back(row_json(r));
#if RG_BENCH_HAS_CONV_BACKEND
    // With --conv-backend auto: each conv case's own and cuDNN times and the winner, measured
    // during the warm-up steps.
    j["conv_autotune"] = conv_autotune_cache().report();
#endif
    std::ofstream out(o.json_path);
    RG_CHECK(out.good(), "--json: cannot write ", o.json_path);
    out << j.dump(2) << "\n";
    RG_CHECK(out.good(), "--json: error writing ", o.json_path);
  }
  const bool all_ok =
      std::all_of(rows.begin(), rows.end(), [](const Row& r) { return r.error.empty(); });
  return all_ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"seg256: one adversarial segmentation training step (BENCHMARK.md)"};
  app.add_option("--device", o.device, "cpu or cuda[:i] (default: cuda when present)");
  app.add_option("--batch", o.batches, "batch sizes, comma separated")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--precision", o.precisions, "fp32 (exact), tf32, bf16; comma separated")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--warmup", o.warmup, "untimed steps per row")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--repeats", o.repeats, "timed steps per row (median; >= 5 for a measurement)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--input-sets", o.input_sets, "random input sets rotated over the steps")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--size", o.size, "image side (power of two >= 32)")->capture_default_str();
  app.add_option("--ngf", o.ngf, "G width")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--ndf", o.ndf, "D width")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--num-downs", o.num_downs, "U-Net levels (default log2(size), at most 8)");
  app.add_option("--json", o.json_path, "write the results as JSON to this file");
  app.add_option("--conv-backend", o.conv_backend, "own, cudnn or auto (CUDA only)")
      ->check(CLI::IsMember(train::conv_backend_names()))
      ->capture_default_str();
  app.add_option("--seed", o.seed, "initialization and input seed")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  try {
    return run(o);
  } catch (const std::exception& e) {
    std::cerr << "bench_seg256: " << e.what() << "\n";
    return 2;
  }
}
