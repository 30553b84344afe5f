// CUDA convolution kernels (kernels/cuda/conv.h) against the CPU reference instantiated for
// double, on the seg256 shapes (U-Net unet_256 and PatchGAN n_layers=3) and on awkward ones, in
// each direction and each math path (fp32 FMA, TF32 and bf16 tensor cores). The reference sees
// the same inputs as the kernel: for bf16, the values after rounding to bf16.
//
// The largest seg256 layers run at a reduced spatial size (named "at<size>") with their real
// channel counts, so the double reference stays fast on a small CPU.
#include <gtest/gtest.h>

#include <cstdint>
#include <ostream>
#include <string>
#include <tuple>
#include <vector>

#include "kernels/conv.h"
#include "kernels/cuda/conv.h"
#include "tests/gpu/gpu_test_util.h"

namespace {

using rg::kernels::Conv2dShape;
using rg::kernels::cuda::bf16;
using rg::kernels::cuda::ConvMath;
namespace cpu = rg::kernels::cpu;
namespace kcuda = rg::kernels::cuda;
using namespace rg::gpu_test;

struct ConvCase {
  std::string name;  // a gtest parameter name: letters, digits, underscores
  Conv2dShape shape;
  bool bias = false;  // forward with a bias, backward-weight with dbias
};

// gtest prints parameters in test listings and failures.
void PrintTo(const ConvCase& c, std::ostream* os) {
  const Conv2dShape& s = c.shape;
  *os << c.name << " (n " << s.n << ", " << s.h << "x" << s.w << "x" << s.c_in << " -> " << s.c_out
      << ", kernel " << s.kh << "x" << s.kw << ", stride " << s.stride_h << ", pad " << s.pad_h
      << (c.bias ? ", bias" : "") << ")";
}

Conv2dShape conv_shape(int64_t n, int64_t h, int64_t w, int64_t c_in, int64_t c_out, int64_t kh,
                       int64_t kw, int64_t stride, int64_t pad) {
  Conv2dShape s;
  s.n = n;
  s.h = h;
  s.w = w;
  s.c_in = c_in;
  s.c_out = c_out;
  s.kh = kh;
  s.kw = kw;
  s.stride_h = s.stride_w = stride;
  s.pad_h = s.pad_w = pad;
  return s;
}

// pix2pix down conv: 4x4 stride 2 pad 1, size -> size / 2.
Conv2dShape down(int64_t size, int64_t c_in, int64_t c_out) {
  return conv_shape(1, size, size, c_in, c_out, 4, 4, 2, 1);
}

// pix2pix up conv ConvTranspose2d(c_in_t -> c_out_t), size -> 2 * size, as the engine runs it:
// the adjoint convolution [2*size, 2*size, c_out_t] -> [size, size, c_in_t] (its backward-data
// is the transposed conv's forward).
Conv2dShape up(int64_t size, int64_t c_in_t, int64_t c_out_t) {
  return conv_shape(1, 2 * size, 2 * size, c_out_t, c_in_t, 4, 4, 2, 1);
}

std::vector<ConvCase> conv_cases() {
  return {
      // G = unet_256 down path (ngf 64): conv 4x4 s2 p1.
      {"G_down0_1to64_256", down(256, 1, 64)},
      {"G_down1_64to128_at64", down(64, 64, 128)},
      {"G_down2_128to256_at32", down(32, 128, 256)},
      {"G_down3_256to512_at16", down(16, 256, 512)},
      {"G_down4_512to512_16", down(16, 512, 512)},
      {"G_down5_512to512_8", down(8, 512, 512)},
      {"G_down6_512to512_4", down(4, 512, 512)},
      {"G_down7_512to512_2", down(2, 512, 512)},  // innermost: 2x2 -> 1x1
      // G up path: ConvTranspose 4x4 s2 p1 (skip concat doubles the input channels). up4
      // (1024 -> 512, 8 -> 16) reduced would repeat up5.
      {"G_up7_512to512_1", up(1, 512, 512)},  // innermost: 1x1 -> 2x2
      {"G_up6_1024to512_2", up(2, 1024, 512)},
      {"G_up5_1024to512_4", up(4, 1024, 512)},
      {"G_up3_1024to256_at4", up(4, 1024, 256)},
      {"G_up2_512to128_at8", up(8, 512, 128)},
      {"G_up1_256to64_at16", up(16, 256, 64)},
      {"G_up0_128to1_128", up(128, 128, 1)},  // outermost: 128x128 -> 256x256, 1 channel
      // D = PatchGAN n_layers=3 (ndf 64): 4x4 pad 1.
      {"D_c0_2to64_256", down(256, 2, 64), true},
      {"D_c1_64to128_at64", down(64, 64, 128)},
      {"D_c2_128to256_at32", down(32, 128, 256)},
      {"D_c3_256to512_s1_at8", conv_shape(1, 8, 8, 256, 512, 4, 4, 1, 1)},
      {"D_c4_512to1_s1_31", conv_shape(1, 31, 31, 512, 1, 4, 4, 1, 1), true},
      // Awkward shapes: tails in every dimension, scalar (unvectorized) paths, odd sizes.
      {"cin1_k3p1_odd_n3", conv_shape(3, 9, 11, 1, 8, 3, 3, 1, 1), true},
      {"cin3_k4s2p1_odd_n3", conv_shape(3, 9, 11, 3, 16, 4, 4, 2, 1)},
      {"cout1_k3p1_odd", conv_shape(1, 9, 11, 13, 1, 3, 3, 1, 1), true},
      {"c7to13_k3p1_odd_n3", conv_shape(3, 9, 11, 7, 13, 3, 3, 1, 1), true},
      {"c13to7_k4s2p1_odd", conv_shape(1, 9, 11, 13, 7, 4, 4, 2, 1)},
      {"k3s2p1_odd", conv_shape(1, 9, 7, 8, 8, 3, 3, 2, 1)},
      {"k1_s1_n3", conv_shape(3, 5, 7, 16, 24, 1, 1, 1, 0), true},
      {"k1_s2_odd", conv_shape(2, 9, 7, 8, 12, 1, 1, 2, 0)},  // phases without taps
      {"k4s2p1_2x2_to_1x1_n3", conv_shape(3, 2, 2, 64, 64, 4, 4, 2, 1)},
      {"k4s2p1_2x2_to_1x1_c5to7", conv_shape(1, 2, 2, 5, 7, 4, 4, 2, 1), true},
      // Enough blocks for the 128x128 tiles, with tails in m, n and k.
      {"big_tiles_c24to136_n2", conv_shape(2, 66, 66, 24, 136, 3, 3, 1, 1), true},
      {"big_tiles_c136to8", conv_shape(1, 92, 92, 136, 8, 3, 3, 1, 1)},
      // The same tiles at a tenth of the work: forward (136 output channels) and backward-data
      // (136 input channels) over 8464 pixels, with tails in m and n.
      {"big_tiles_k1_c24to136", conv_shape(1, 92, 92, 24, 136, 1, 1, 1, 0), true},
      {"big_tiles_k1_c136to24", conv_shape(1, 92, 92, 136, 24, 1, 1, 1, 0)},
  };
}

// RG_GPU_TEST_SMALL: only the shapes of at most 2^25 multiply-adds per direction (every
// awkward shape, the outer and innermost seg256 layers, both tile sizes), so that the
// sanitizers and the CPU emulation get through them.
std::vector<ConvCase> selected(std::vector<ConvCase> cases) {
  if (small_test_set()) {
    std::erase_if(cases, [](const ConvCase& c) { return c.shape.macs() > (int64_t{1} << 25); });
  }
  return cases;
}

enum class Precision { Fp32, Tf32, Bf16 };

const char* precision_name(Precision p);

void PrintTo(Precision p, std::ostream* os) {
  *os << precision_name(p);
}

const char* precision_name(Precision p) {
  switch (p) {
    case Precision::Fp32:
      return "fp32";
    case Precision::Tf32:
      return "tf32";
    case Precision::Bf16:
      return "bf16";
  }
  return "?";
}

double tolerance(Precision p) {
  switch (p) {
    case Precision::Fp32:
      return kTolFp32;
    case Precision::Tf32:
      return kTolTf32;
    case Precision::Bf16:
      return kTolBf16;
  }
  return 0.0;
}

ConvMath math_of(Precision p) {
  return p == Precision::Tf32 ? ConvMath::Tf32 : ConvMath::Fp32;
}

// Random values as the kernel gets them (T) and as the reference gets them (double, after the
// rounding to T).
template <typename T>
struct Input {
  std::vector<T> values;
  std::vector<double> exact;
};

template <typename T>
Input<T> random_input(size_t n, uint32_t seed) {
  Input<T> in;
  in.values = convert<T>(random_floats(n, seed));
  const std::vector<float> rounded = to_floats(in.values);
  in.exact.assign(rounded.begin(), rounded.end());
  return in;
}

// Where the tensors live in their allocations: `guard` poisoned elements on both sides (to catch
// stray writes) and the data `offset` elements past an aligned address (1 defeats the 16-byte
// vector paths).
struct Placement {
  size_t guard = 0;
  size_t offset = 0;
};

template <typename T>
class PlacedArray {
 public:
  PlacedArray(size_t n, Placement p)
      : n_(n), lead_(p.guard + p.offset), buf_(n + 2 * p.guard + p.offset) {}
  T* get() { return buf_.get() + lead_; }
  void upload(const std::vector<T>& host) {
    EXPECT_EQ(host.size(), n_);
    EXPECT_EQ(cudaMemcpy(get(), host.data(), n_ * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
  }
  std::vector<float> download() const {
    const std::vector<T> all = buf_.download();
    return to_floats(std::vector<T>(all.begin() + lead_, all.begin() + lead_ + n_));
  }
  // Every byte outside [lead, lead + n) still holds DeviceBuffer's 0xFF poison.
  ::testing::AssertionResult untouched_outside() const {
    const std::vector<T> all = buf_.download();
    const auto* bytes = reinterpret_cast<const unsigned char*>(all.data());
    const size_t lo = lead_ * sizeof(T), hi = (lead_ + n_) * sizeof(T);
    for (size_t i = 0; i < all.size() * sizeof(T); ++i) {
      if ((i < lo || i >= hi) && bytes[i] != 0xFF) {
        return ::testing::AssertionFailure()
               << "byte " << i << " of the allocation was written (output bytes " << lo << ".."
               << hi << ")";
      }
    }
    return ::testing::AssertionSuccess();
  }

 private:
  size_t n_, lead_;
  DeviceBuffer<T> buf_;
};

// A stream of its own: the kernels must not depend on the legacy default stream. Created
// blocking, so the poisoning memsets and uploads (legacy stream) are ordered before the launch.
class TestStream {
 public:
  TestStream() { EXPECT_EQ(cudaStreamCreate(&stream_), cudaSuccess); }
  ~TestStream() { cudaStreamDestroy(stream_); }
  TestStream(const TestStream&) = delete;
  TestStream& operator=(const TestStream&) = delete;
  cudaStream_t get() const { return stream_; }
  void synchronize() const { EXPECT_EQ(cudaStreamSynchronize(stream_), cudaSuccess); }

 private:
  cudaStream_t stream_ = nullptr;
};

size_t input_count(const Conv2dShape& s) {
  return s.n * s.h * s.w * s.c_in;
}
size_t weight_count(const Conv2dShape& s) {
  return s.c_out * s.kh * s.kw * s.c_in;
}
size_t output_count(const Conv2dShape& s) {
  return s.n * s.out_h() * s.out_w() * s.c_out;
}

template <typename T>
void check_forward(const ConvCase& c, Precision prec, Placement place) {
  const Conv2dShape& s = c.shape;
  const Input<T> x = random_input<T>(input_count(s), 11);
  const Input<T> w = random_input<T>(weight_count(s), 12);
  const std::vector<float> bias = random_floats(static_cast<size_t>(s.c_out), 13);
  const std::vector<double> bias_exact(bias.begin(), bias.end());
  std::vector<double> want(output_count(s));
  cpu::conv2d_forward<double>(s, x.exact.data(), w.exact.data(),
                              c.bias ? bias_exact.data() : nullptr, want.data());

  PlacedArray<T> x_dev(x.values.size(), place), w_dev(w.values.size(), place);
  PlacedArray<T> y_dev(want.size(), place);
  PlacedArray<float> bias_dev(bias.size(), place);
  x_dev.upload(x.values);
  w_dev.upload(w.values);
  bias_dev.upload(bias);
  RG_TEST_CUDA(cudaDeviceSynchronize());
  TestStream stream;
  kcuda::conv2d_forward<T>(s, x_dev.get(), w_dev.get(), c.bias ? bias_dev.get() : nullptr,
                           y_dev.get(), math_of(prec), stream.get());
  stream.synchronize();
  RG_TEST_CUDA(cudaGetLastError());
  EXPECT_TRUE(all_close(y_dev.download(), want, tolerance(prec), "forward y"));
  if (place.guard > 0) {
    EXPECT_TRUE(y_dev.untouched_outside()) << "forward y";
  }
}

template <typename T>
void check_backward_data(const ConvCase& c, Precision prec, Placement place) {
  const Conv2dShape& s = c.shape;
  const Input<T> dy = random_input<T>(output_count(s), 21);
  const Input<T> w = random_input<T>(weight_count(s), 22);
  std::vector<double> want(input_count(s));
  cpu::conv2d_backward_data<double>(s, dy.exact.data(), w.exact.data(), want.data());

  PlacedArray<T> dy_dev(dy.values.size(), place), w_dev(w.values.size(), place);
  PlacedArray<T> dx_dev(want.size(), place);
  dy_dev.upload(dy.values);
  w_dev.upload(w.values);
  RG_TEST_CUDA(cudaDeviceSynchronize());
  TestStream stream;
  kcuda::conv2d_backward_data<T>(s, dy_dev.get(), w_dev.get(), dx_dev.get(), math_of(prec),
                                 stream.get());
  stream.synchronize();
  RG_TEST_CUDA(cudaGetLastError());
  EXPECT_TRUE(all_close(dx_dev.download(), want, tolerance(prec), "backward-data dx"));
  if (place.guard > 0) {
    EXPECT_TRUE(dx_dev.untouched_outside()) << "backward-data dx";
  }
}

template <typename T>
void check_backward_weight(const ConvCase& c, Precision prec, Placement place) {
  const Conv2dShape& s = c.shape;
  const Input<T> x = random_input<T>(input_count(s), 31);
  const Input<T> dy = random_input<T>(output_count(s), 32);
  std::vector<double> want_dw(weight_count(s)), want_db(static_cast<size_t>(s.c_out));
  cpu::conv2d_backward_weight<double>(s, x.exact.data(), dy.exact.data(), want_dw.data(),
                                      c.bias ? want_db.data() : nullptr);

  PlacedArray<T> x_dev(x.values.size(), place), dy_dev(dy.values.size(), place);
  PlacedArray<float> dw_dev(want_dw.size(), place), db_dev(want_db.size(), place);
  x_dev.upload(x.values);
  dy_dev.upload(dy.values);
  RG_TEST_CUDA(cudaDeviceSynchronize());
  TestStream stream;
  kcuda::conv2d_backward_weight<T>(s, x_dev.get(), dy_dev.get(), dw_dev.get(),
                                   c.bias ? db_dev.get() : nullptr, math_of(prec), stream.get());
  stream.synchronize();
  RG_TEST_CUDA(cudaGetLastError());
  EXPECT_TRUE(all_close(dw_dev.download(), want_dw, tolerance(prec), "backward-weight dw"));
  if (c.bias) {
    // Plain fp32 sums of the (rounded) dy values in every math path.
    EXPECT_TRUE(all_close(db_dev.download(), want_db, kTolFp32, "backward-weight dbias"));
  }
  if (place.guard > 0) {
    EXPECT_TRUE(dw_dev.untouched_outside()) << "backward-weight dw";
    EXPECT_TRUE(db_dev.untouched_outside()) << "backward-weight dbias";
  }
}

// Runs check<T> with T = bf16 for Precision::Bf16, float otherwise.
#define RG_CONV_DISPATCH(check, c, prec, place) \
  do {                                          \
    if ((prec) == Precision::Bf16) {            \
      check<bf16>((c), (prec), (place));        \
    } else {                                    \
      check<float>((c), (prec), (place));       \
    }                                           \
  } while (0)

// ---- Every shape, direction and math path -------------------------------------------------

class GpuConv : public ::testing::TestWithParam<std::tuple<ConvCase, Precision>> {};

TEST_P(GpuConv, Forward) {
  RG_SKIP_WITHOUT_GPU();
  const auto& [c, prec] = GetParam();
  RG_CONV_DISPATCH(check_forward, c, prec, Placement{});
}

TEST_P(GpuConv, BackwardData) {
  RG_SKIP_WITHOUT_GPU();
  const auto& [c, prec] = GetParam();
  RG_CONV_DISPATCH(check_backward_data, c, prec, Placement{});
}

TEST_P(GpuConv, BackwardWeight) {
  RG_SKIP_WITHOUT_GPU();
  const auto& [c, prec] = GetParam();
  RG_CONV_DISPATCH(check_backward_weight, c, prec, Placement{});
}

std::string case_name(const ConvCase& c, Precision prec) {
  return c.name + "_" + precision_name(prec);
}

INSTANTIATE_TEST_SUITE_P(Shapes, GpuConv,
                         ::testing::Combine(::testing::ValuesIn(selected(conv_cases())),
                                            ::testing::Values(Precision::Fp32, Precision::Tf32,
                                                              Precision::Bf16)),
                         [](const ::testing::TestParamInfo<GpuConv::ParamType>& info) {
                           return case_name(std::get<0>(info.param), std::get<1>(info.param));
                         });

// ---- No writes outside the outputs; unaligned pointers take the scalar paths --------------

class GpuConvPlacement : public ::testing::TestWithParam<std::tuple<ConvCase, Precision, bool>> {};

TEST_P(GpuConvPlacement, WritesOnlyTheOutputs) {
  RG_SKIP_WITHOUT_GPU();
  const auto& [c, prec, unaligned] = GetParam();
  const Placement place{64, unaligned ? size_t{1} : size_t{0}};
  RG_CONV_DISPATCH(check_forward, c, prec, place);
  RG_CONV_DISPATCH(check_backward_data, c, prec, place);
  RG_CONV_DISPATCH(check_backward_weight, c, prec, place);
}

std::vector<ConvCase> placement_cases() {
  return {
      {"cin1_k4s2p1", conv_shape(1, 16, 16, 1, 64, 4, 4, 2, 1), true},
      {"cout1_k4s1p1_odd", conv_shape(1, 9, 11, 64, 1, 4, 4, 1, 1), true},
      {"c7to13_k3p1_odd_n3", conv_shape(3, 9, 11, 7, 13, 3, 3, 1, 1), true},
      {"k4s2p1_2x2_to_1x1", conv_shape(2, 2, 2, 64, 64, 4, 4, 2, 1), true},
      {"k4s2p1_c64to128", conv_shape(2, 16, 16, 64, 128, 4, 4, 2, 1), true},
      {"big_tiles_c24to136_n2", conv_shape(2, 66, 66, 24, 136, 3, 3, 1, 1), true},
  };
}

INSTANTIATE_TEST_SUITE_P(Guarded, GpuConvPlacement,
                         ::testing::Combine(::testing::ValuesIn(selected(placement_cases())),
                                            ::testing::Values(Precision::Fp32, Precision::Tf32,
                                                              Precision::Bf16),
                                            ::testing::Bool()),
                         [](const ::testing::TestParamInfo<GpuConvPlacement::ParamType>& info) {
                           return case_name(std::get<0>(info.param), std::get<1>(info.param)) +
                                  (std::get<2>(info.param) ? "_unaligned" : "_aligned");
                         });

// ---- Determinism: split-K partials are summed in a fixed order, never with atomics ---------

template <typename T>
void check_repeatable(Precision prec) {
  const ConvMath math = math_of(prec);
  TestStream stream;
  // Layers whose reduction is split: the innermost down conv (forward), its transposed
  // counterpart (backward-data) and the outermost down conv (backward-weight).
  {
    const Conv2dShape s = down(2, 512, 512);
    PlacedArray<T> x(input_count(s), {}), w(weight_count(s), {});
    PlacedArray<T> y1(output_count(s), {}), y2(output_count(s), {});
    x.upload(random_input<T>(input_count(s), 41).values);
    w.upload(random_input<T>(weight_count(s), 42).values);
    RG_TEST_CUDA(cudaDeviceSynchronize());
    kcuda::conv2d_forward<T>(s, x.get(), w.get(), nullptr, y1.get(), math, stream.get());
    kcuda::conv2d_forward<T>(s, x.get(), w.get(), nullptr, y2.get(), math, stream.get());
    stream.synchronize();
    EXPECT_EQ(y1.download(), y2.download()) << "forward";
  }
  {
    const Conv2dShape s = up(1, 512, 512);
    PlacedArray<T> dy(output_count(s), {}), w(weight_count(s), {});
    PlacedArray<T> dx1(input_count(s), {}), dx2(input_count(s), {});
    dy.upload(random_input<T>(output_count(s), 43).values);
    w.upload(random_input<T>(weight_count(s), 44).values);
    RG_TEST_CUDA(cudaDeviceSynchronize());
    kcuda::conv2d_backward_data<T>(s, dy.get(), w.get(), dx1.get(), math, stream.get());
    kcuda::conv2d_backward_data<T>(s, dy.get(), w.get(), dx2.get(), math, stream.get());
    stream.synchronize();
    EXPECT_EQ(dx1.download(), dx2.download()) << "backward-data";
  }
  {
    const Conv2dShape s = down(256, 1, 64);
    PlacedArray<T> x(input_count(s), {}), dy(output_count(s), {});
    PlacedArray<float> dw1(weight_count(s), {}), dw2(weight_count(s), {});
    PlacedArray<float> db1(static_cast<size_t>(s.c_out), {}), db2(static_cast<size_t>(s.c_out), {});
    x.upload(random_input<T>(input_count(s), 45).values);
    dy.upload(random_input<T>(output_count(s), 46).values);
    RG_TEST_CUDA(cudaDeviceSynchronize());
    kcuda::conv2d_backward_weight<T>(s, x.get(), dy.get(), dw1.get(), db1.get(), math,
                                     stream.get());
    kcuda::conv2d_backward_weight<T>(s, x.get(), dy.get(), dw2.get(), db2.get(), math,
                                     stream.get());
    stream.synchronize();
    EXPECT_EQ(dw1.download(), dw2.download()) << "backward-weight dw";
    EXPECT_EQ(db1.download(), db2.download()) << "backward-weight dbias";
  }
  RG_TEST_CUDA(cudaGetLastError());
}

class GpuConvDeterminism : public ::testing::TestWithParam<Precision> {};

TEST_P(GpuConvDeterminism, RepeatedRunsAreBitwiseEqual) {
  RG_SKIP_WITHOUT_GPU();
  if (GetParam() == Precision::Bf16) {
    check_repeatable<bf16>(GetParam());
  } else {
    check_repeatable<float>(GetParam());
  }
}

INSTANTIATE_TEST_SUITE_P(Precisions, GpuConvDeterminism,
                         ::testing::Values(Precision::Fp32, Precision::Tf32, Precision::Bf16),
                         [](const ::testing::TestParamInfo<Precision>& info) {
                           return std::string(precision_name(info.param));
                         });

}  // namespace
