// GradientSync: bucketing, launch order during backward, frozen parameters, repeated use, and
// the averaging, with the LocalCommunicator and a recording communicator that plays a world of
// two ranks holding identical gradients (every sum is twice the local value).
#include <gtest/gtest.h>

#include "engine/dist/communicator.h"
#include "engine/dist/data_parallel.h"
#include "tests/engine/test_helpers.h"

namespace rg {
namespace {

using dist::GradientSync;

// World of 2 whose other rank always holds the same values as this one. Records every
// collective; non-blocking reductions complete (double the buffer) only in wait().
class RecordingCommunicator final : public dist::Communicator {
 public:
  struct Call {
    std::string kind;
    int64_t numel;
  };
  std::vector<Call> calls;
  int waits = 0;

  int rank() const override { return 0; }
  int world_size() const override { return 2; }
  int local_rank() const override { return 0; }
  std::string name() const override { return "recording"; }
  void all_reduce_sum(Tensor& t) override {
    calls.push_back({"all_reduce", t.numel()});
    mul_(t, 2.0);
  }
  std::unique_ptr<dist::PendingReduce> start_all_reduce_sum(Tensor& t) override {
    dist::check_reducible(t, "start_all_reduce_sum");
    calls.push_back({"start", t.numel()});
    return std::make_unique<Pending>(t, *this);
  }
  void broadcast(Tensor& t, int) override { calls.push_back({"broadcast", t.numel()}); }
  void all_reduce_sum(std::vector<double>& v) override {
    calls.push_back({"scalars", static_cast<int64_t>(v.size())});
    for (double& x : v) x *= 2;
  }
  void barrier() override {}
  [[noreturn]] void abort(int, const std::string& message) override { throw Error(message); }

 private:
  class Pending final : public dist::PendingReduce {
   public:
    Pending(Tensor t, RecordingCommunicator& c) : t_(std::move(t)), c_(c) {}
    ~Pending() override { wait(); }
    void wait() override {
      if (done_) return;
      mul_(t_, 2.0);
      done_ = true;
      ++c_.waits;
    }
    bool test() override { return done_; }

   private:
    Tensor t_;
    RecordingCommunicator& c_;
    bool done_ = false;
  };
};

Tensor param(const Shape& shape, uint64_t seed, DType dtype = DType::F32) {
  return testing::random_tensor(shape, seed, true, dtype);
}

// Bytes as MiB, for bucket caps in tests.
double mib(double bytes) { return bytes / (1024.0 * 1024.0); }

TEST(DistGradientSync, BucketsInReverseRegistrationOrderUnderTheCap) {
  dist::LocalCommunicator comm;
  std::vector<Tensor> ps{param({256}, 1), param({256}, 2), param({256}, 3), param({100}, 4)};
  // 1 KiB per 256-float parameter; a 2 KiB cap fits two.
  GradientSync sync(ps, comm, {.bucket_cap_mib = mib(2048)});
  ASSERT_EQ(sync.bucket_count(), 2u);
  EXPECT_EQ(sync.bucket_members(0), (std::vector<size_t>{3, 2}));
  EXPECT_EQ(sync.bucket_members(1), (std::vector<size_t>{1, 0}));
  EXPECT_EQ(sync.bucket_numel(0), 356);
  EXPECT_EQ(sync.bucket_numel(1), 512);
  // A parameter larger than the cap gets a bucket of its own.
  GradientSync big({param({1024}, 5), param({8}, 6)}, comm, {.bucket_cap_mib = mib(64)});
  ASSERT_EQ(big.bucket_count(), 2u);
  EXPECT_EQ(big.bucket_members(0), (std::vector<size_t>{1}));
  EXPECT_EQ(big.bucket_members(1), (std::vector<size_t>{0}));
}

TEST(DistGradientSync, OneDtypePerBucket) {
  dist::LocalCommunicator comm;
  GradientSync sync({param({4}, 1), param({4}, 2, DType::F64), param({4}, 3, DType::F64)}, comm);
  ASSERT_EQ(sync.bucket_count(), 2u);
  EXPECT_EQ(sync.bucket_members(0), (std::vector<size_t>{2, 1}));
  EXPECT_EQ(sync.bucket_members(1), (std::vector<size_t>{0}));
}

TEST(DistGradientSync, RejectsBadArguments) {
  dist::LocalCommunicator comm;
  EXPECT_THROW(GradientSync({param({4}, 1)}, comm, {.bucket_cap_mib = 0}), Error);
  EXPECT_THROW(GradientSync({param({4}, 1, DType::BF16)}, comm), Error);
  Tensor non_leaf = mul(param({4}, 1), 2.0);
  EXPECT_THROW(GradientSync({non_leaf}, comm), Error);
}

// loss = sum(b * sum(a * x)): backward reaches a before b (see the check below), while b's
// bucket comes first; the buckets must still be launched in bucket order.
struct TwoParamModel {
  Tensor a = param({3}, 11), b = param({5}, 12);
  Tensor x = testing::random_tensor({3}, 13, false, DType::F32);
  Tensor loss() const { return sum(mul(b, sum(mul(a, x)))); }
};

TEST(DistGradientSync, LaunchesDuringBackwardInBucketOrderAndAverages) {
  TwoParamModel m;
  // Reference gradients without synchronization.
  m.loss().backward();
  const std::vector<float> ga = m.a.grad().to_vector<float>(), gb = m.b.grad().to_vector<float>();
  m.a.zero_grad();
  m.b.zero_grad();

  std::vector<char> order;
  m.a.add_post_accumulate_hook([&](const Tensor&) { order.push_back('a'); });
  m.b.add_post_accumulate_hook([&](const Tensor&) { order.push_back('b'); });
  RecordingCommunicator comm;
  GradientSync sync({m.a, m.b}, comm, {.bucket_cap_mib = mib(4)});  // one parameter per bucket
  ASSERT_EQ(sync.bucket_count(), 2u);
  EXPECT_EQ(sync.bucket_members(0), (std::vector<size_t>{1}));  // b
  m.loss().backward();
  EXPECT_EQ(order, (std::vector<char>{'a', 'b'}));  // a's gradient arrives first
  // Both launched during backward, b's bucket (0) first, before finish().
  ASSERT_EQ(sync.launches().size(), 2u);
  EXPECT_EQ(sync.launches()[0].bucket, 0u);
  EXPECT_EQ(sync.launches()[1].bucket, 1u);
  EXPECT_EQ(sync.launches()[0].phase, GradientSync::Phase::Backward);
  EXPECT_EQ(sync.launches()[1].phase, GradientSync::Phase::Backward);
  ASSERT_EQ(comm.calls.size(), 2u);
  EXPECT_EQ(comm.calls[0].numel, 5);
  EXPECT_EQ(comm.calls[1].numel, 3);
  EXPECT_EQ(comm.waits, 0);
  sync.finish();
  EXPECT_EQ(comm.waits, 2);
  // Sum over two identical ranks divided by two: the local gradient again.
  testing::expect_all_close(m.a.grad(), std::vector<double>(ga.begin(), ga.end()), 1e-6);
  testing::expect_all_close(m.b.grad(), std::vector<double>(gb.begin(), gb.end()), 1e-6);
}

TEST(DistGradientSync, AveragesOverTheWorld) {
  // The other rank's gradient is all ones: finish() must give (local + 1) / 2.
  class PlusOne final : public dist::Communicator {
   public:
    int rank() const override { return 0; }
    int world_size() const override { return 2; }
    int local_rank() const override { return 0; }
    std::string name() const override { return "plus-one"; }
    void all_reduce_sum(Tensor& t) override { t.copy_(add(t, 1.0)); }
    std::unique_ptr<dist::PendingReduce> start_all_reduce_sum(Tensor& t) override {
      all_reduce_sum(t);  // the other rank's gradient is all ones
      return dist::LocalCommunicator().start_all_reduce_sum(t);
    }
    void broadcast(Tensor&, int) override {}
    void all_reduce_sum(std::vector<double>&) override {}
    void barrier() override {}
    [[noreturn]] void abort(int, const std::string& m) override { throw Error(m); }
  } comm;
  Tensor w = param({4}, 21);
  GradientSync sync({w}, comm);
  sum(mul(w, 3.0)).backward();  // local gradient 3 everywhere
  sync.finish();
  testing::expect_all_close(w.grad(), {2.0, 2.0, 2.0, 2.0});  // (3 + 1) / 2
}

TEST(DistGradientSync, FrozenParametersDoNotBlockAndKeepNoGradient) {
  RecordingCommunicator comm;
  Tensor a = param({4}, 31), b = param({4}, 32), c = param({4}, 33);
  // Buckets: [c, b], [a].
  GradientSync sync({a, b, c}, comm, {.bucket_cap_mib = mib(32)});
  ASSERT_EQ(sync.bucket_count(), 2u);
  b.set_requires_grad(false);  // frozen: bucket 0 never fills during backward
  a.set_requires_grad(false);  // bucket 1 gets nothing at all
  sum(add(mul(a, b), c)).backward();
  EXPECT_TRUE(sync.launches().empty());  // bucket 0 waits for b, which never comes
  sync.finish();
  ASSERT_EQ(sync.launches().size(), 1u);  // bucket 1 (no gradients anywhere) is skipped
  EXPECT_EQ(sync.launches()[0].bucket, 0u);
  EXPECT_EQ(sync.launches()[0].phase, GradientSync::Phase::Finish);
  EXPECT_EQ(comm.calls.size(), 1u);
  EXPECT_EQ(comm.calls[0].numel, 8);  // c plus zeros for b
  EXPECT_FALSE(a.grad().defined());
  EXPECT_FALSE(b.grad().defined());
  testing::expect_all_close(c.grad(), {1, 1, 1, 1});
  // A step where nothing got a gradient reduces nothing.
  comm.calls.clear();
  c.zero_grad();
  sync.finish();
  EXPECT_TRUE(comm.calls.empty());
}

TEST(DistGradientSync, RepeatedUseIsRedoneThenLearned) {
  RecordingCommunicator comm;
  Tensor w = param({6}, 41);
  Tensor x1 = testing::random_tensor({6}, 42, false, DType::F32);
  Tensor x2 = testing::random_tensor({6}, 43, false, DType::F32);
  // w used twice in one graph (as D on real and on fake pairs): two accumulations per backward.
  auto loss = [&] { return add(sum(mul(w, x1)), sum(mul(w, x2))); };
  loss().backward();
  const std::vector<float> expected = w.grad().to_vector<float>();
  w.zero_grad();

  GradientSync sync({w}, comm);
  EXPECT_EQ(sync.expected_accumulations(0), 1);
  loss().backward();
  sync.finish();
  // First step: launched after the first accumulation, redone with both.
  ASSERT_EQ(sync.launches().size(), 2u);
  EXPECT_EQ(sync.launches()[0].phase, GradientSync::Phase::Backward);
  EXPECT_EQ(sync.launches()[1].phase, GradientSync::Phase::Redo);
  testing::expect_all_close(w.grad(), std::vector<double>(expected.begin(), expected.end()), 1e-6);
  EXPECT_EQ(sync.expected_accumulations(0), 2);
  // Second step: one launch, during backward, after both accumulations.
  w.zero_grad();
  loss().backward();
  ASSERT_EQ(sync.launches().size(), 1u);
  EXPECT_EQ(sync.launches()[0].phase, GradientSync::Phase::Backward);
  sync.finish();
  testing::expect_all_close(w.grad(), std::vector<double>(expected.begin(), expected.end()), 1e-6);
}

TEST(DistGradientSync, LocalCommunicatorLeavesGradientsAlone) {
  dist::LocalCommunicator comm;
  TwoParamModel m;
  GradientSync sync({m.a, m.b}, comm);
  m.loss().backward();
  const std::vector<float> ga = m.a.grad().to_vector<float>();
  sync.finish();
  testing::expect_all_close(m.a.grad(), std::vector<double>(ga.begin(), ga.end()), 0.0);
}

TEST(DistGradientSync, HooksOutliveTheSyncSafely) {
  RecordingCommunicator comm;
  Tensor w = param({3}, 51);
  { GradientSync sync({w}, comm); }
  sum(w).backward();  // the hook of the destroyed sync does nothing
  EXPECT_TRUE(comm.calls.empty());
}

TEST(DistCommunicator, LocalIsAWorldOfOne) {
  dist::LocalCommunicator comm;
  EXPECT_EQ(comm.world_size(), 1);
  Tensor t = Tensor::from_vector(std::vector<float>{1, 2}, {2});
  comm.all_reduce_sum(t);
  comm.start_all_reduce_sum(t)->wait();
  comm.broadcast(t, 0);
  testing::expect_all_close(t, {1, 2});
  EXPECT_THROW(comm.broadcast(t, 1), Error);
  Tensor bf = Tensor::zeros({2}, DType::BF16);
  EXPECT_THROW(comm.all_reduce_sum(bf), Error);
  Tensor strided = Tensor::zeros({4}).slice(0, 0, 4, 2);
  EXPECT_THROW(comm.all_reduce_sum(strided), Error);
}

TEST(DistCommunicator, InitWithoutLauncherIsLocal) {
  if (dist::launched_by_mpirun()) GTEST_SKIP() << "running under mpirun";
  auto comm = dist::init_from_environment();
  EXPECT_EQ(comm->name(), "local");
  EXPECT_EQ(dist::init_from_environment().get(), comm.get());  // one per process
}

TEST(DistCommunicator, BroadcastModuleStateVisitsParametersAndBuffers) {
  RecordingCommunicator comm;
  nn::BatchNorm2d bn(3);
  dist::broadcast_module_state(bn, comm);
  EXPECT_EQ(comm.calls.size(), 4u);  // weight, bias, running_mean, running_var
}

}  // namespace
}  // namespace rg
