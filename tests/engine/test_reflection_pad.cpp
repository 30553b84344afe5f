// reflection_pad2d: values against a direct index formula, shape errors, gradient check.
#include <gtest/gtest.h>

#include <cstdlib>

#include "tests/engine/test_helpers.h"

namespace rg {
namespace {

using testing::expect_gradients_match;
using testing::project;
using testing::random_tensor;

// PyTorch's reflection index: -k -> k, n-1+k -> n-1-k.
int64_t reflect(int64_t i, int64_t n) {
  if (i < 0) return -i;
  if (i >= n) return 2 * (n - 1) - i;
  return i;
}

TEST(ReflectionPad, ValuesMatchTheMirrorFormula) {
  const int64_t N = 2, H = 5, W = 4, C = 3, pad = 3;
  Tensor x = random_tensor({N, H, W, C}, 11, false);
  Tensor y = reflection_pad2d(x, pad);
  ASSERT_EQ(y.shape(), (Shape{N, H + 2 * pad, W + 2 * pad, C}));
  const std::vector<double> xv = x.to_vector<double>(), yv = y.to_vector<double>();
  const int64_t Hp = H + 2 * pad, Wp = W + 2 * pad;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t i = 0; i < Hp; ++i)
      for (int64_t j = 0; j < Wp; ++j)
        for (int64_t c = 0; c < C; ++c) {
          const int64_t si = reflect(i - pad, H), sj = reflect(j - pad, W);
          ASSERT_EQ(yv[static_cast<size_t>(((n * Hp + i) * Wp + j) * C + c)],
                    xv[static_cast<size_t>(((n * H + si) * W + sj) * C + c)])
              << "at " << n << "," << i << "," << j << "," << c;
        }
}

TEST(ReflectionPad, SmallKnownCase) {
  // One row 1 2 3 padded by 1 -> rows (of the 3x5 result): the middle row mirrored.
  Tensor x = Tensor::empty({1, 1, 3, 1}, DType::F64);
  for (int i = 0; i < 3; ++i) x.data<double>()[i] = i + 1;
  Tensor x2 = concat({x, add(x, 10.0)}, 1);  // rows 1 2 3 / 11 12 13
  testing::expect_all_close(reflection_pad2d(x2, 1),
                            {12, 11, 12, 13, 12, 2, 1, 2, 3, 2, 12, 11, 12, 13, 12, 2, 1, 2, 3, 2});
}

TEST(ReflectionPad, RejectsBadPadAndShape) {
  Tensor x = random_tensor({1, 3, 3, 1}, 12, false);
  EXPECT_THROW(reflection_pad2d(x, 3), Error);   // pad must be < H and < W
  EXPECT_THROW(reflection_pad2d(x, -1), Error);
  EXPECT_THROW(reflection_pad2d(random_tensor({3, 3, 1}, 13, false), 1), Error);
  EXPECT_EQ(reflection_pad2d(x, 0).shape(), x.shape());
}

TEST(GradCheck, ReflectionPad2d) {
  Tensor x = random_tensor({2, 4, 5, 2}, 14);
  expect_gradients_match([&](const std::vector<Tensor>& in) { return project(reflection_pad2d(in[0], 3), 15); },
                         {x});
}

TEST(ReflectionPad, ModuleHasNoParameters) {
  nn::ReflectionPad2d pad(1);
  EXPECT_TRUE(pad.parameters().empty());
  EXPECT_EQ(pad.forward(random_tensor({1, 4, 4, 2}, 16, false)).shape(), (Shape{1, 6, 6, 2}));
}

}  // namespace
}  // namespace rg
