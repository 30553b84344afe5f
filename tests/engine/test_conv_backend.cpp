// The conv backend setting and the autotune cache (engine/conv_backend.h): CUDA-free, so they
// are tested here on the CPU with fake timing callbacks.
#include "engine/conv_backend.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "engine/error.h"

namespace rg {
namespace {

// Restores RG_CONV_BACKEND and the process-wide setting after a test.
class BackendEnvGuard {
 public:
  BackendEnvGuard() {
    if (const char* v = std::getenv("RG_CONV_BACKEND")) saved_ = v;
    reset_conv_backend();
  }
  ~BackendEnvGuard() {
    if (saved_) {
      setenv("RG_CONV_BACKEND", saved_->c_str(), 1);
    } else {
      unsetenv("RG_CONV_BACKEND");
    }
    reset_conv_backend();
  }

 private:
  std::optional<std::string> saved_;
};

kernels::Conv2dShape shape(int64_t hw, int64_t c_in, int64_t c_out) {
  kernels::Conv2dShape s;
  s.n = 16;
  s.h = hw;
  s.w = hw;
  s.c_in = c_in;
  s.c_out = c_out;
  s.kh = 4;
  s.kw = 4;
  s.stride_h = 2;
  s.stride_w = 2;
  s.pad_h = 1;
  s.pad_w = 1;
  return s;
}

ConvTuneKey key(int64_t hw = 128, ConvDirection dir = ConvDirection::Forward,
                DType dtype = DType::F32, bool tf32 = false) {
  return make_conv_tune_key(0, dir, shape(hw, 64, 128), dtype, tf32);
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(ConvBackend, ParsesTheThreeNames) {
  EXPECT_EQ(parse_conv_backend("own", "--conv-backend"), ConvBackend::Own);
  EXPECT_EQ(parse_conv_backend("cudnn", "--conv-backend"), ConvBackend::Cudnn);
  EXPECT_EQ(parse_conv_backend("auto", "--conv-backend"), ConvBackend::Auto);
  EXPECT_EQ(parse_conv_backend("CuDNN", "--conv-backend"), ConvBackend::Cudnn);
  for (ConvBackend b : {ConvBackend::Own, ConvBackend::Cudnn, ConvBackend::Auto}) {
    EXPECT_EQ(parse_conv_backend(conv_backend_name(b), "x"), b);
  }
}

TEST(ConvBackend, BadNameNamesTheSourceAndTheValidValues) {
  for (const char* bad : {"", "cublas", "own ", "fast"}) {
    const std::string msg = error_of([&] { parse_conv_backend(bad, "--conv-backend"); });
    EXPECT_NE(msg.find("--conv-backend"), std::string::npos) << msg;
    EXPECT_NE(msg.find("own, cudnn, auto"), std::string::npos) << msg;
    EXPECT_NE(msg.find(std::string("\"") + bad + "\""), std::string::npos) << msg;
  }
}

TEST(ConvBackend, DefaultsToAutoWithoutTheEnvironmentVariable) {
  BackendEnvGuard guard;
  unsetenv("RG_CONV_BACKEND");
  reset_conv_backend();
  EXPECT_EQ(conv_backend(), ConvBackend::Auto);
}

TEST(ConvBackend, ReadsTheEnvironmentVariable) {
  BackendEnvGuard guard;
  setenv("RG_CONV_BACKEND", "own", 1);
  reset_conv_backend();
  EXPECT_EQ(conv_backend(), ConvBackend::Own);
  // Read once: a later change of the environment does not switch backends mid-run.
  setenv("RG_CONV_BACKEND", "cudnn", 1);
  EXPECT_EQ(conv_backend(), ConvBackend::Own);
  reset_conv_backend();
  EXPECT_EQ(conv_backend(), ConvBackend::Cudnn);
}

TEST(ConvBackend, BadEnvironmentValueNamesTheVariable) {
  BackendEnvGuard guard;
  setenv("RG_CONV_BACKEND", "tensorrt", 1);
  reset_conv_backend();
  const std::string msg = error_of([] { conv_backend(); });
  EXPECT_NE(msg.find("RG_CONV_BACKEND"), std::string::npos) << msg;
  EXPECT_NE(msg.find("tensorrt"), std::string::npos) << msg;
  EXPECT_NE(msg.find("own, cudnn, auto"), std::string::npos) << msg;
  // Still an error on the next call (nothing was cached), until the program sets a backend.
  EXPECT_THROW(conv_backend(), Error);
  set_conv_backend(ConvBackend::Own);
  EXPECT_EQ(conv_backend(), ConvBackend::Own);
}

TEST(ConvBackend, SetOverridesTheEnvironment) {
  BackendEnvGuard guard;
  setenv("RG_CONV_BACKEND", "own", 1);
  set_conv_backend(ConvBackend::Cudnn);
  EXPECT_EQ(conv_backend(), ConvBackend::Cudnn);
  set_conv_backend(ConvBackend::Auto);
  EXPECT_EQ(conv_backend(), ConvBackend::Auto);
}

TEST(ConvTuneKey, EqualityAndHashCoverEveryField) {
  const ConvTuneKey base = key();
  EXPECT_EQ(base, key());
  EXPECT_EQ(ConvTuneKeyHash{}(base), ConvTuneKeyHash{}(key()));
  std::vector<ConvTuneKey> variants;
  for (int field = 0; field < 16; ++field) {
    ConvTuneKey k = base;
    kernels::Conv2dShape& s = k.shape;
    switch (field) {
      case 0:
        k.device = 1;
        break;
      case 1:
        k.direction = ConvDirection::BackwardData;
        break;
      case 2:
        k.dtype = DType::BF16;
        break;
      case 3:
        k.tf32 = true;
        break;
      case 4:
        s.n += 1;
        break;
      case 5:
        s.h += 1;
        break;
      case 6:
        s.w += 1;
        break;
      case 7:
        s.c_in += 1;
        break;
      case 8:
        s.c_out += 1;
        break;
      case 9:
        s.kh += 1;
        break;
      case 10:
        s.kw += 1;
        break;
      case 11:
        s.stride_h += 1;
        break;
      case 12:
        s.stride_w += 1;
        break;
      case 13:
        s.pad_h += 1;
        break;
      case 14:
        s.pad_w += 1;
        break;
      case 15:
        k.direction = ConvDirection::BackwardWeight;
        break;
    }
    EXPECT_FALSE(k == base) << "field " << field;
    variants.push_back(k);
  }
  // Distinct keys hash differently here (not required in general, but FNV over these fields
  // should not collide on single-field changes).
  for (const ConvTuneKey& k : variants) EXPECT_NE(ConvTuneKeyHash{}(k), ConvTuneKeyHash{}(base));
}

TEST(ConvTuneKey, Tf32OnlyCountsForFloat32) {
  EXPECT_FALSE(key(128, ConvDirection::Forward, DType::BF16, true).tf32);
  EXPECT_EQ(key(128, ConvDirection::Forward, DType::BF16, true),
            key(128, ConvDirection::Forward, DType::BF16, false));
  EXPECT_TRUE(key(128, ConvDirection::Forward, DType::F32, true).tf32);
}

TEST(ConvTuneKey, DescribeNamesTheCase) {
  const std::string d = describe(key(128, ConvDirection::BackwardWeight, DType::F32, true));
  EXPECT_NE(d.find("cuda:0"), std::string::npos) << d;
  EXPECT_NE(d.find("backward_weight"), std::string::npos) << d;
  EXPECT_NE(d.find("tf32"), std::string::npos) << d;
  EXPECT_NE(d.find("128x128x64 -> 128"), std::string::npos) << d;
  EXPECT_NE(d.find("k4x4 s2x2 p1x1"), std::string::npos) << d;
}

TEST(ConvAutotuneCache, ChoosesTheFasterAndTimesEachKeyOnce) {
  ConvAutotuneCache cache;
  int own_calls = 0, cudnn_calls = 0;
  auto own = [&] {
    ++own_calls;
    return 2.0;
  };
  auto cudnn = [&] {
    ++cudnn_calls;
    return 1.5;
  };
  EXPECT_EQ(cache.choose(key(128), own, cudnn), ConvBackend::Cudnn);
  EXPECT_EQ(cache.choose(key(128), own, cudnn), ConvBackend::Cudnn);
  EXPECT_EQ(cache.choose(key(128), own, cudnn), ConvBackend::Cudnn);
  EXPECT_EQ(own_calls, 1);
  EXPECT_EQ(cudnn_calls, 1);

  // Another key is timed on its own; here our kernel wins.
  auto fast_own = [&] {
    ++own_calls;
    return 0.25;
  };
  EXPECT_EQ(cache.choose(key(64), fast_own, cudnn), ConvBackend::Own);
  EXPECT_EQ(cache.choose(key(64), fast_own, cudnn), ConvBackend::Own);
  EXPECT_EQ(own_calls, 2);
  EXPECT_EQ(cudnn_calls, 2);
  EXPECT_EQ(cache.size(), 2u);

  const auto r = cache.lookup(key(128));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->winner, ConvBackend::Cudnn);
  EXPECT_DOUBLE_EQ(r->own_ms, 2.0);
  EXPECT_DOUBLE_EQ(r->cudnn_ms, 1.5);
  EXPECT_FALSE(cache.lookup(key(32)).has_value());
}

TEST(ConvAutotuneCache, UnsupportedGoesToTheOther) {
  ConvAutotuneCache cache;
  auto unsupported = [] { return -1.0; };
  auto slow = [] { return 100.0; };
  EXPECT_EQ(cache.choose(key(128), slow, unsupported), ConvBackend::Own);
  EXPECT_EQ(cache.choose(key(64), unsupported, slow), ConvBackend::Cudnn);
  // Both unsupported: our kernels (they must then report the problem themselves).
  EXPECT_EQ(cache.choose(key(32), unsupported, unsupported), ConvBackend::Own);
  // NaN and infinity are not times.
  EXPECT_EQ(cache.choose(key(16), slow, [] { return std::nan(""); }), ConvBackend::Own);
  EXPECT_EQ(cache.choose(key(8), slow, [] { return HUGE_VAL; }), ConvBackend::Own);
  const auto r = cache.lookup(key(128));
  ASSERT_TRUE(r.has_value());
  EXPECT_DOUBLE_EQ(r->cudnn_ms, -1.0);
  EXPECT_DOUBLE_EQ(r->own_ms, 100.0);
  EXPECT_DOUBLE_EQ(cache.lookup(key(16))->cudnn_ms, -1.0);
}

TEST(ConvAutotuneCache, TieGoesToOwn) {
  ConvAutotuneCache cache;
  auto same = [] { return 1.0; };
  EXPECT_EQ(cache.choose(key(), same, same), ConvBackend::Own);
}

TEST(ConvAutotuneCache, KeysDifferingInDirectionDtypeOrMathAreSeparate) {
  ConvAutotuneCache cache;
  int calls = 0;
  auto own = [&] {
    ++calls;
    return 1.0;
  };
  auto cudnn = [] { return 2.0; };
  cache.choose(key(128, ConvDirection::Forward), own, cudnn);
  cache.choose(key(128, ConvDirection::BackwardData), own, cudnn);
  cache.choose(key(128, ConvDirection::BackwardWeight), own, cudnn);
  cache.choose(key(128, ConvDirection::Forward, DType::BF16), own, cudnn);
  cache.choose(key(128, ConvDirection::Forward, DType::F32, true), own, cudnn);
  // bf16 with and without the tf32 flag is one case.
  cache.choose(key(128, ConvDirection::Forward, DType::BF16, true), own, cudnn);
  EXPECT_EQ(calls, 5);
  EXPECT_EQ(cache.size(), 5u);
}

TEST(ConvAutotuneCache, ThrowingCallbackLeavesTheKeyUnmeasured) {
  ConvAutotuneCache cache;
  auto boom = []() -> double { throw std::runtime_error("device lost"); };
  auto fine = [] { return 1.0; };
  EXPECT_THROW(cache.choose(key(), boom, fine), std::runtime_error);
  EXPECT_FALSE(cache.lookup(key()).has_value());
  EXPECT_EQ(cache.choose(key(), fine, [] { return 0.5; }), ConvBackend::Cudnn);
}

TEST(ConvAutotuneCache, ConcurrentCallersOfOneKeyTimeItOnce) {
  ConvAutotuneCache cache;
  std::atomic<int> own_calls{0}, cudnn_calls{0};
  auto own = [&] {
    ++own_calls;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    return 3.0;
  };
  auto cudnn = [&] {
    ++cudnn_calls;
    return 1.0;
  };
  std::vector<std::thread> threads;
  std::atomic<int> cudnn_wins{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      // Half the threads share one key, the others use their own keys.
      const ConvTuneKey k = t % 2 == 0 ? key(128) : key(100 + t);
      if (cache.choose(k, own, cudnn) == ConvBackend::Cudnn) ++cudnn_wins;
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(cudnn_wins.load(), 8);
  EXPECT_EQ(own_calls.load(), 5);  // key(128) once, plus 4 distinct keys
  EXPECT_EQ(cudnn_calls.load(), 5);
  EXPECT_EQ(cache.size(), 5u);
}

TEST(ConvAutotuneCache, ReportListsTimesAndWinners) {
  ConvAutotuneCache cache;
  cache.choose(
      key(128), [] { return 2.0; }, [] { return 1.0; });
  cache.choose(
      key(64, ConvDirection::BackwardData), [] { return 1.0; }, [] { return -1.0; });
  const std::string report = cache.report();
  EXPECT_NE(report.find("own 2.0000 ms, cudnn 1.0000 ms -> cudnn"), std::string::npos) << report;
  EXPECT_NE(report.find("own 1.0000 ms, cudnn unsupported -> own"), std::string::npos) << report;
  EXPECT_EQ(cache.entries().size(), 2u);
  cache.clear();
  EXPECT_EQ(cache.size(), 0u);
  EXPECT_EQ(cache.report(), "");
}

TEST(ConvAutotuneCache, ProcessWideCacheIsOneObject) {
  EXPECT_EQ(&conv_autotune_cache(), &conv_autotune_cache());
}

}  // namespace
}  // namespace rg
