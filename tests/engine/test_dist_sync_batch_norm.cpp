// SyncBatchNorm: finite-difference gradients at world size 1, equality with batch_norm, and the
// global statistics with a communicator that plays a second rank holding the same shard.
#include <gtest/gtest.h>

#include "engine/dist/communicator.h"
#include "engine/dist/sync_batch_norm.h"
#include "tests/engine/test_helpers.h"

namespace rg {
namespace {

using testing::project;
using testing::random_tensor;

// World of 2 whose other rank holds exactly this rank's values (sums double).
class MirrorCommunicator final : public dist::Communicator {
 public:
  int calls = 0;
  int rank() const override { return 0; }
  int world_size() const override { return 2; }
  int local_rank() const override { return 0; }
  std::string name() const override { return "mirror"; }
  void all_reduce_sum(Tensor& t) override { mul_(t, 2.0); }
  std::unique_ptr<dist::PendingReduce> start_all_reduce_sum(Tensor& t) override {
    mul_(t, 2.0);
    return dist::LocalCommunicator().start_all_reduce_sum(t);
  }
  void broadcast(Tensor&, int) override {}
  void all_reduce_sum(std::vector<double>& v) override {
    ++calls;
    for (double& x : v) x *= 2;
  }
  void barrier() override {}
  [[noreturn]] void abort(int, const std::string& m) override { throw Error(m); }
};

TEST(SyncBatchNorm, GradientsMatchFiniteDifferencesAtWorldSizeOne) {
  dist::LocalCommunicator comm;
  testing::expect_gradients_match(
      [&](const std::vector<Tensor>& in) {
        return project(dist::sync_batch_norm(in[0], in[1], in[2], Tensor(), Tensor(), true, 0.1,
                                             1e-5, comm),
                       14);
      },
      {random_tensor({3, 2, 2, 4}, 1), random_tensor({4}, 2), random_tensor({4}, 3)});
}

TEST(SyncBatchNorm, EqualsBatchNormAtWorldSizeOne) {
  dist::LocalCommunicator comm;
  Tensor x = random_tensor({4, 3, 3, 5}, 7, false, DType::F32);
  Tensor g = random_tensor({5}, 8, false, DType::F32), b = random_tensor({5}, 9, false, DType::F32);
  Tensor rm1 = Tensor::zeros({5}), rv1 = Tensor::ones({5}), rm2 = Tensor::zeros({5}),
         rv2 = Tensor::ones({5});
  Tensor y1 = dist::sync_batch_norm(x, g, b, rm1, rv1, true, 0.1, 1e-5, comm);
  Tensor y2 = batch_norm(x, g, b, rm2, rv2, true, 0.1, 1e-5);
  testing::expect_all_close(y1, y2.to_vector<double>(), 1e-5);
  testing::expect_all_close(rm1, rm2.to_vector<double>(), 1e-6);
  testing::expect_all_close(rv1, rv2.to_vector<double>(), 1e-6);
  // Eval mode is batch_norm's eval mode.
  Tensor e1 = dist::sync_batch_norm(x, g, b, rm1, rv1, false, 0.1, 1e-5, comm);
  Tensor e2 = batch_norm(x, g, b, rm2, rv2, false, 0.1, 1e-5);
  testing::expect_all_close(e1, e2.to_vector<double>(), 1e-6);
}

// Two ranks with the same shard x normalize like one process with batch concat(x, x): the
// count, the running variance's unbiasing and the input gradient all use the global batch.
TEST(SyncBatchNorm, UsesGlobalStatisticsAndGradients) {
  MirrorCommunicator comm;
  Tensor x = random_tensor({2, 2, 2, 3}, 21);
  Tensor g = random_tensor({3}, 22), b = random_tensor({3}, 23);
  Tensor rm = Tensor::zeros({3}, DType::F64), rv = Tensor::ones({3}, DType::F64);
  Tensor y = dist::sync_batch_norm(x, g, b, rm, rv, true, 0.5, 1e-5, comm);
  Tensor r = random_tensor(y.shape(), 24, false);
  sum(mul(y, r)).backward();
  EXPECT_EQ(comm.calls, 3);  // two in the forward, one in the backward

  Tensor x2 = x.detach().clone().set_requires_grad(true);
  Tensor g2 = g.detach().clone().set_requires_grad(true);
  Tensor b2 = b.detach().clone().set_requires_grad(true);
  Tensor rm2 = Tensor::zeros({3}, DType::F64), rv2 = Tensor::ones({3}, DType::F64);
  Tensor both = concat({x2, x2}, 0);
  Tensor y2 = batch_norm(both, g2, b2, rm2, rv2, true, 0.5, 1e-5);
  sum(mul(y2, concat({r, r}, 0))).backward();

  testing::expect_all_close(y, y2.slice(0, 0, 2).to_vector<double>(), 1e-9);
  testing::expect_all_close(rm, rm2.to_vector<double>(), 1e-12);
  testing::expect_all_close(rv, rv2.to_vector<double>(), 1e-12);
  // x2 feeds both halves: its gradient is twice this rank's input gradient.
  testing::expect_all_close(mul(x.grad(), 2.0), x2.grad().to_vector<double>(), 1e-9);
  // dgamma, dbeta are this rank's share (GradientSync averages them over ranks).
  testing::expect_all_close(mul(g.grad(), 2.0), g2.grad().to_vector<double>(), 1e-9);
  testing::expect_all_close(mul(b.grad(), 2.0), b2.grad().to_vector<double>(), 1e-9);
}

TEST(SyncBatchNorm, ModuleSwitchKeepsNamesAndUsesTheCommunicator) {
  MirrorCommunicator comm;
  nn::Sequential seq({std::make_shared<nn::BatchNorm2d>(3), std::make_shared<nn::ReLU>(),
                      std::make_shared<nn::BatchNorm2d>(3)});
  const auto names_before = seq.named_parameters().size() + seq.named_buffers().size();
  EXPECT_EQ(dist::convert_sync_batch_norm(seq, &comm), 2);
  EXPECT_EQ(seq.named_parameters().size() + seq.named_buffers().size(), names_before);
  EXPECT_EQ(seq.named_buffers()[0].first, "0.running_mean");
  Tensor x = random_tensor({2, 2, 2, 3}, 31, false, DType::F32);
  seq.forward(x);
  EXPECT_EQ(comm.calls, 4);
  seq.eval();
  seq.forward(x);
  EXPECT_EQ(comm.calls, 4);  // eval mode: running statistics, no communication
  seq.train();
  EXPECT_EQ(dist::convert_sync_batch_norm(seq, nullptr), 2);
  seq.forward(x);
  EXPECT_EQ(comm.calls, 4);
}

TEST(SyncBatchNorm, RejectsBadShapes) {
  dist::LocalCommunicator comm;
  Tensor x = random_tensor({1, 1, 1, 3}, 41, false, DType::F32);
  EXPECT_THROW(dist::sync_batch_norm(x, Tensor(), Tensor(), Tensor(), Tensor(), true, 0.1, 1e-5, comm),
               Error);  // one value per channel
  Tensor y = random_tensor({2, 2, 2, 3}, 42, false, DType::F32);
  EXPECT_THROW(dist::sync_batch_norm(y, Tensor::ones({4}), Tensor(), Tensor(), Tensor(), true, 0.1,
                                     1e-5, comm),
               Error);
}

}  // namespace
}  // namespace rg
