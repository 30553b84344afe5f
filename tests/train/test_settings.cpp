// Typed run settings: every accepted name parses to its type and back, the lists the flags check
// against are the parsers' own, and a bad value names the flag and the valid values.
#include <gtest/gtest.h>

#include "engine/error.h"
#include "engine/math_mode.h"
#include "train/settings.h"

namespace rg::train {
namespace {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

TEST(Settings, EveryListedNameParsesAndRoundTrips) {
  for (const std::string& n : precision_names()) EXPECT_EQ(precision_name(parse_precision(n)), n);
  for (const std::string& n : lr_policy_names()) EXPECT_EQ(lr_policy_name(parse_lr_policy(n)), n);
  for (const std::string& n : norm_names()) EXPECT_EQ(models::norm_kind_name(parse_norm(n)), n);
  for (const std::string& n : conv_backend_names()) {
    EXPECT_EQ(conv_backend_name(parse_conv_backend(n, "--conv-backend")), n);
  }
  EXPECT_EQ(parse_precision("BF16"), Precision::Bf16);  // case does not matter
}

TEST(Settings, BadValuesNameTheFlagAndTheChoices) {
  const std::string e = error_of([] { parse_precision("fp16", "--precision"); });
  EXPECT_NE(e.find("--precision"), std::string::npos) << e;
  EXPECT_NE(e.find("'fp16'"), std::string::npos) << e;
  EXPECT_NE(e.find("fp32, tf32 or bf16"), std::string::npos) << e;
  EXPECT_NE(error_of([] { parse_lr_policy("step"); }).find("--lr-policy"), std::string::npos);
  EXPECT_NE(error_of([] { parse_norm("group"); }).find("batch, instance or none"), std::string::npos);
  EXPECT_NE(error_of([] { resolve_device("gpu7"); }).find("--device"), std::string::npos);
}

TEST(Settings, PrecisionSetsTheMathModeAndTheActivationDtype) {
  std::string note;
  EXPECT_EQ(apply_precision(Precision::Tf32, Device::cpu(), &note), DType::F32);
  EXPECT_EQ(float32_math(), Float32Math::Tf32);
  EXPECT_NE(note.find("fp32"), std::string::npos) << "tf32 on a CPU must say it computes in fp32";
  EXPECT_EQ(apply_precision(Precision::Bf16, Device::cpu()), DType::BF16);
  EXPECT_EQ(float32_math(), Float32Math::Exact);
  EXPECT_EQ(apply_precision(Precision::Fp32, Device::cpu()), DType::F32);
}

TEST(Settings, DevicesResolve) {
  EXPECT_TRUE(resolve_device("cpu").is_cpu());
  const Device a = resolve_device("auto");
  EXPECT_EQ(a.is_cuda(), cuda_device_count() > 0);
  if (cuda_device_count() == 0) {
    EXPECT_NE(error_of([] { resolve_device("cuda:0"); }).find("0 CUDA device"), std::string::npos);
  }
}

TEST(Settings, LearningRateSchedulesFollowTheirPolicy) {
  auto linear = make_lr_schedule(LrPolicy::Linear, 1.0, 2, 2);
  EXPECT_DOUBLE_EQ(linear->lr_at(0), 1.0);
  EXPECT_DOUBLE_EQ(linear->lr_at(1), 1.0);
  EXPECT_LT(linear->lr_at(3), linear->lr_at(2));
  auto cosine = make_lr_schedule(LrPolicy::Cosine, 1.0, 2, 2);
  EXPECT_DOUBLE_EQ(cosine->lr_at(0), 1.0);
  EXPECT_LT(cosine->lr_at(3), cosine->lr_at(1));
}

}  // namespace
}  // namespace rg::train
