// Tensor creation, dtypes, views, copies, printing and argument errors.
#include <cmath>
#include <limits>

#include "engine/allocator.h"
#include "tests/engine/test_helpers.h"

namespace rg {
namespace {

TEST(Tensor, CreationAndProperties) {
  Tensor t = Tensor::zeros({2, 3, 4});
  EXPECT_EQ(t.dim(), 3);
  EXPECT_EQ(t.numel(), 24);
  EXPECT_EQ(t.size(-1), 4);
  EXPECT_EQ(t.strides(), (Shape{12, 4, 1}));
  EXPECT_TRUE(t.is_contiguous());
  EXPECT_EQ(t.dtype(), DType::F32);
  EXPECT_TRUE(t.device().is_cpu());
  for (float v : t.to_vector<float>()) EXPECT_EQ(v, 0.0f);
  Tensor f = Tensor::full({5}, 2.5, DType::BF16);
  for (double v : f.to_vector<double>()) EXPECT_EQ(v, 2.5);
  EXPECT_EQ(Tensor::scalar(3.0).item(), 3.0);
  EXPECT_EQ(Tensor::ones({1, 2, 2, 2, 2}).numel(), 16);  // 5-D volumes
}

TEST(Tensor, RejectsBadShapes) {
  EXPECT_THROW(Tensor::zeros({1, 1, 1, 1, 1, 1}), Error);
  EXPECT_THROW(Tensor::zeros({2, -1}), Error);
  EXPECT_THROW(Tensor::from_vector(std::vector<float>{1, 2, 3}, {2, 2}), Error);
  Tensor t = Tensor::zeros({2, 3});
  EXPECT_THROW(t.reshape({4, 2}), Error);
  EXPECT_THROW(t.permute({0, 0}), Error);
  EXPECT_THROW(t.size(2), Error);
  EXPECT_THROW(t.data<double>(), Error);
  EXPECT_THROW(Tensor().shape(), Error);
}

TEST(Tensor, DtypeConversionsRoundTrip) {
  std::vector<float> values{0.0f, 1.0f, -2.5f, 3.140625f, 65504.0f, 1e-3f};
  Tensor f = Tensor::from_vector(values, {6});
  for (DType dt : {DType::F64, DType::BF16, DType::F16}) {
    std::vector<float> back = f.to(dt).to(DType::F32).to_vector<float>();
    for (size_t i = 0; i < values.size(); ++i) {
      const double tol = dt == DType::BF16 ? 8e-3 : (dt == DType::F16 ? 1e-3 : 0.0);
      EXPECT_NEAR(back[i], values[i], tol * std::abs(values[i])) << dtype_name(dt) << " " << i;
    }
  }
  Tensor i = Tensor::from_vector(std::vector<float>{1.9f, -3.0f, 250.0f}, {3}, DType::I32);
  EXPECT_EQ(i.to_vector<int32_t>(), (std::vector<int32_t>{1, -3, 250}));
  Tensor u = Tensor::from_vector(std::vector<float>{0, 7, 255}, {3}, DType::U8);
  EXPECT_EQ(u.to_vector<uint8_t>(), (std::vector<uint8_t>{0, 7, 255}));
}

TEST(Tensor, HalfAndBFloat16Rounding) {
  // bf16 keeps 8 significant bits: 1 + 2^-8 rounds to even (1), 1 + 3*2^-8 rounds up.
  EXPECT_EQ(static_cast<float>(BFloat16(1.0f + 1.0f / 256)), 1.0f);
  EXPECT_EQ(static_cast<float>(BFloat16(1.0f + 3.0f / 256)), 1.0f + 4.0f / 256);
  EXPECT_TRUE(std::isnan(static_cast<float>(BFloat16(std::numeric_limits<float>::quiet_NaN()))));
  // f16: max finite, overflow to inf, smallest subnormal 2^-24, NaN.
  EXPECT_EQ(static_cast<float>(Half(65504.0f)), 65504.0f);
  EXPECT_TRUE(std::isinf(static_cast<float>(Half(70000.0f))));
  EXPECT_EQ(static_cast<float>(Half(5.9604645e-8f)), 5.9604645e-8f);
  EXPECT_EQ(static_cast<float>(Half(-0.333251953125f)), -0.333251953125f);
  EXPECT_TRUE(std::isnan(static_cast<float>(Half(std::numeric_limits<float>::quiet_NaN()))));
  for (int bits = 0; bits < 0x7c00; bits += 37) {  // every finite positive half survives f32
    Half h;
    h.bits = static_cast<uint16_t>(bits);
    EXPECT_EQ(Half(static_cast<float>(h)).bits, h.bits);
  }
}

TEST(Tensor, ViewsShareStorage) {
  std::vector<float> v(24);
  for (int i = 0; i < 24; ++i) v[i] = static_cast<float>(i);
  Tensor t = Tensor::from_vector(v, {2, 3, 4});
  Tensor r = t.reshape({6, -1});
  EXPECT_EQ(r.shape(), (Shape{6, 4}));
  EXPECT_EQ(r.storage(), t.storage());
  Tensor p = t.permute({2, 0, 1});  // [4, 2, 3]
  EXPECT_FALSE(p.is_contiguous());
  EXPECT_EQ(p.to_vector<float>()[1], 4.0f);  // p[0][0][1] = t[0][1][0]
  Tensor s = t.slice(2, 1, 4, 2);           // columns 1 and 3
  EXPECT_EQ(s.shape(), (Shape{2, 3, 2}));
  EXPECT_EQ(s.to_vector<float>(), (std::vector<float>{1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23}));
  s.fill_(-1.0);  // writes through the view
  EXPECT_EQ(t.to_vector<float>()[1], -1.0f);
  EXPECT_EQ(t.to_vector<float>()[2], 2.0f);
  Tensor c = p.contiguous();
  EXPECT_TRUE(c.is_contiguous());
  EXPECT_NE(c.storage(), t.storage());
  Tensor negative = t.slice(0, -1, 2);
  EXPECT_EQ(negative.shape(), (Shape{1, 3, 4}));
}

TEST(Tensor, LayoutConversions) {
  std::vector<float> v(2 * 3 * 2 * 2);
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i);
  Tensor nchw = Tensor::from_vector(v, {2, 3, 2, 2});
  Tensor nhwc = nchw_to_nhwc(nchw);
  EXPECT_EQ(nhwc.shape(), (Shape{2, 2, 2, 3}));
  // nhwc[0][0][1][2] = nchw[0][2][0][1] = 2*4 + 1 = 9
  EXPECT_EQ(nhwc.to_vector<float>()[1 * 3 + 2], 9.0f);
  EXPECT_EQ(nhwc_to_nchw(nhwc).to_vector<float>(), v);
  EXPECT_EQ(ohwi_to_oihw(oihw_to_ohwi(nchw)).to_vector<float>(), v);
  EXPECT_THROW(nchw_to_nhwc(Tensor::zeros({2, 3})), Error);
}

TEST(Tensor, PrintingIsReadable) {
  Tensor t = Tensor::from_vector(std::vector<float>{1, 2, 3, 4, 5, 6}, {2, 3});
  const std::string s = t.str();
  EXPECT_NE(s.find("shape=[2, 3]"), std::string::npos) << s;
  EXPECT_NE(s.find("dtype=f32"), std::string::npos) << s;
  EXPECT_NE(s.find("6"), std::string::npos) << s;
  Tensor big = Tensor::zeros({100});
  EXPECT_NE(big.str().find("..."), std::string::npos);
}

TEST(Tensor, CopyConvertsAndChecksShape) {
  Tensor dst = Tensor::zeros({2, 2}, DType::BF16);
  dst.copy_(Tensor::from_vector(std::vector<double>{1, 2, 3, 4}, {2, 2}));
  EXPECT_EQ(dst.to_vector<float>(), (std::vector<float>{1, 2, 3, 4}));
  EXPECT_THROW(dst.copy_(Tensor::zeros({4})), Error);
}

TEST(Tensor, CudaDeviceErrorsAreClear) {
  if (cuda_device_count() > 0) GTEST_SKIP() << "a GPU is present; this checks the no-GPU message";
  try {
    Tensor::zeros({2}, DType::F32, Device::cuda(0));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cuda:0"), std::string::npos) << e.what();
  }
  EXPECT_EQ(Device::parse("cuda:1"), Device::cuda(1));
  EXPECT_THROW(Device::parse("gpu"), Error);
}

TEST(Tensor, DeviceRoundTripOnGpu) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device: device copies not exercised";
  Tensor host = testing::random_tensor({3, 4, 5}, 9, false, DType::F32);
  Tensor dev = host.to(Device::cuda(0));
  Tensor dev2 = dev.clone();  // device-to-device
  EXPECT_EQ(dev2.to(Device::cpu()).to_vector<float>(), host.to_vector<float>());
}

}  // namespace
}  // namespace rg

namespace rg {
namespace {

TEST(Allocator, StatisticsTrackUseAndPeak) {
  Allocator& a = cpu_allocator();
  a.reset_peak();
  const size_t before = a.stats().in_use;
  {
    Tensor t = Tensor::empty({1024, 256});  // 1 MiB
    EXPECT_GE(a.stats().in_use, before + (1u << 20));
  }
  EXPECT_EQ(a.stats().in_use, before);
  EXPECT_GE(a.stats().peak, before + (1u << 20));
}

TEST(Allocator, PinnedHostTensorsAreOrdinaryCpuTensors) {
  // Page-locked when a GPU is present; either way a CPU tensor that reads and writes normally.
  Tensor t = Tensor::empty_pinned({3, 5});
  EXPECT_TRUE(t.device().is_cpu());
  t.fill_(2.5);
  for (float v : t.to_vector<float>()) EXPECT_EQ(v, 2.5f);
}

}  // namespace
}  // namespace rg
