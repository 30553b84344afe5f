#include "engine/dist/sync_batch_norm.h"

#include <cmath>

#include "engine/dispatch.h"
#include "engine/nn/layers.h"
#include "engine/ops/op_utils.h"
#include "engine/ops/ops.h"

namespace rg::dist {

using namespace ops_detail;

namespace {

// x viewed as [rows][c] (NHWC: every dimension but the last is a "row").
struct RowsC {
  int64_t rows = 0, c = 0;
};

class SyncBatchNormBackward final : public Node {
 public:
  SyncBatchNormBackward(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                        std::vector<double> mean, std::vector<double> invstd, double count,
                        Communicator& comm)
      : Node("sync_batch_norm"), x_(x.detach()),
        gamma_(gamma.defined() ? gamma.detach() : Tensor()), x_dtype_(x.dtype()),
        gamma_dtype_(gamma.defined() ? gamma.dtype() : x.dtype()),
        beta_dtype_(beta.defined() ? beta.dtype() : x.dtype()), mean_(std::move(mean)),
        invstd_(std::move(invstd)), count_(count), comm_(comm) {}

  std::vector<Tensor> backward(const Tensor& g) override {
    const DType cdt = compute_dtype(x_dtype_, x_.device(), "sync_batch_norm");
    Tensor xc = kernel_input(x_, cdt), dy = kernel_input(g, cdt);
    const RowsC s{x_.numel() / x_.size(-1), x_.size(-1)};
    const int64_t c = s.c;
    // Local sums: [0, c) sum(dy), [c, 2c) sum(dy * xhat).
    std::vector<double> sums(2 * c, 0.0);
    dispatch_compute(cdt, "sync_batch_norm", [&](auto tag) {
      using T = decltype(tag);
      const T* xp = xc.data<T>();
      const T* dp = dy.data<T>();
      for (int64_t r = 0; r < s.rows; ++r) {
        for (int64_t k = 0; k < c; ++k) {
          const double d = static_cast<double>(dp[r * c + k]);
          const double xhat = (static_cast<double>(xp[r * c + k]) - mean_[k]) * invstd_[k];
          sums[k] += d;
          sums[c + k] += d * xhat;
        }
      }
    });
    Tensor dgamma, dbeta;
    if (needs_input_grad(1)) {
      dgamma = Tensor::from_vector(std::vector<double>(sums.begin() + c, sums.end()), {c})
                   .to(gamma_dtype_);
    }
    if (needs_input_grad(2)) {
      dbeta = Tensor::from_vector(std::vector<double>(sums.begin(), sums.begin() + c), {c})
                  .to(beta_dtype_);
    }
    Tensor dx;
    if (needs_input_grad(0)) {
      comm_.all_reduce_sum(sums);  // global sums: the statistics depend on every rank's x
      std::vector<double> gamma_v = gamma_.defined() ? gamma_.to_vector<double>()
                                                     : std::vector<double>(c, 1.0);
      dx = Tensor::empty(x_.shape(), cdt);
      dispatch_compute(cdt, "sync_batch_norm", [&](auto tag) {
        using T = decltype(tag);
        const T* xp = xc.data<T>();
        const T* dp = dy.data<T>();
        T* out = dx.data<T>();
        std::vector<double> mean_dy(c), mean_dyx(c), scale(c);
        for (int64_t k = 0; k < c; ++k) {
          mean_dy[k] = sums[k] / count_;
          mean_dyx[k] = sums[c + k] / count_;
          scale[k] = gamma_v[k] * invstd_[k];
        }
        for (int64_t r = 0; r < s.rows; ++r) {
          for (int64_t k = 0; k < c; ++k) {
            const double xhat = (static_cast<double>(xp[r * c + k]) - mean_[k]) * invstd_[k];
            out[r * c + k] = static_cast<T>(
                scale[k] * (static_cast<double>(dp[r * c + k]) - mean_dy[k] - xhat * mean_dyx[k]));
          }
        }
      });
      dx = kernel_output(dx, x_dtype_);
    }
    return {dx, dgamma, dbeta};
  }
  void release_saved() override { x_ = gamma_ = Tensor(); }

 private:
  Tensor x_, gamma_;
  DType x_dtype_, gamma_dtype_, beta_dtype_;
  std::vector<double> mean_, invstd_;
  double count_;
  Communicator& comm_;
};

}  // namespace

Tensor sync_batch_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                       Tensor running_mean, Tensor running_var, bool training, double momentum,
                       double eps, Communicator& comm) {
  if (!training) return batch_norm(x, gamma, beta, running_mean, running_var, false, momentum, eps);
  const char* op = "sync_batch_norm";
  check_defined(x, op, "x");
  require_floating(x, op, "x");
  require_cpu(op, {&x, &gamma, &beta});
  RG_CHECK(x.dim() >= 2, op, ": input must be [N, ..., C], got shape ", shape_str(x.shape()));
  const RowsC s{x.numel() / std::max<int64_t>(1, x.size(-1)), x.size(-1)};
  const int64_t c = s.c;
  for (const Tensor* t : {&gamma, &beta, static_cast<const Tensor*>(&running_mean),
                          static_cast<const Tensor*>(&running_var)}) {
    if (!t->defined()) continue;
    check_same_device(x, *t, op);
    RG_CHECK(t->dim() == 1 && t->size(0) == c, op, ": per-channel tensor of shape ",
             shape_str(t->shape()), " does not match ", c, " channels of input ", shape_str(x.shape()));
  }
  RG_CHECK(running_mean.defined() == running_var.defined(),
           op, ": running_mean and running_var must be given together");

  const DType cdt = compute_dtype(x.dtype(), x.device(), op);
  Tensor xc = kernel_input(x, cdt);
  // Pass 1: global per-channel sum and count -> mean.
  std::vector<double> sums(c + 1, 0.0);
  dispatch_compute(cdt, op, [&](auto tag) {
    using T = decltype(tag);
    const T* xp = xc.data<T>();
    for (int64_t r = 0; r < s.rows; ++r) {
      for (int64_t k = 0; k < c; ++k) sums[k] += static_cast<double>(xp[r * c + k]);
    }
  });
  sums[c] = static_cast<double>(s.rows);
  comm.all_reduce_sum(sums);
  const double count = sums[c];
  RG_CHECK(count > 1, op, ": training needs more than one value per channel over all ranks, got "
           "input shape ", shape_str(x.shape()), " on each of ", comm.world_size(), " ranks");
  std::vector<double> mean(c);
  for (int64_t k = 0; k < c; ++k) mean[k] = sums[k] / count;
  // Pass 2: global sum of squared deviations -> biased variance.
  std::vector<double> ssd(c, 0.0);
  dispatch_compute(cdt, op, [&](auto tag) {
    using T = decltype(tag);
    const T* xp = xc.data<T>();
    for (int64_t r = 0; r < s.rows; ++r) {
      for (int64_t k = 0; k < c; ++k) {
        const double d = static_cast<double>(xp[r * c + k]) - mean[k];
        ssd[k] += d * d;
      }
    }
  });
  comm.all_reduce_sum(ssd);
  std::vector<double> var(c), invstd(c);
  for (int64_t k = 0; k < c; ++k) {
    var[k] = ssd[k] / count;
    invstd[k] = 1.0 / std::sqrt(var[k] + eps);
  }
  const std::vector<double> gamma_v =
      gamma.defined() ? gamma.to_vector<double>() : std::vector<double>(c, 1.0);
  const std::vector<double> beta_v =
      beta.defined() ? beta.to_vector<double>() : std::vector<double>(c, 0.0);
  Tensor y = Tensor::empty(x.shape(), cdt);
  dispatch_compute(cdt, op, [&](auto tag) {
    using T = decltype(tag);
    const T* xp = xc.data<T>();
    T* yp = y.data<T>();
    for (int64_t r = 0; r < s.rows; ++r) {
      for (int64_t k = 0; k < c; ++k) {
        const double xhat = (static_cast<double>(xp[r * c + k]) - mean[k]) * invstd[k];
        yp[r * c + k] = static_cast<T>(xhat * gamma_v[k] + beta_v[k]);
      }
    }
  });
  if (running_mean.defined()) {
    NoGradGuard no_grad;
    std::vector<double> rm = running_mean.to_vector<double>(), rv = running_var.to_vector<double>();
    const double unbias = count / (count - 1.0);
    for (int64_t k = 0; k < c; ++k) {
      rm[k] = (1.0 - momentum) * rm[k] + momentum * mean[k];
      rv[k] = (1.0 - momentum) * rv[k] + momentum * var[k] * unbias;
    }
    running_mean.copy_(Tensor::from_vector(rm, {c}));
    running_var.copy_(Tensor::from_vector(rv, {c}));
  }
  y = kernel_output(y, x.dtype());
  if (any_requires_grad({&x, &gamma, &beta})) {
    record(y,
           std::make_shared<SyncBatchNormBackward>(x, gamma, beta, std::move(mean),
                                                   std::move(invstd), count, comm),
           {&x, &gamma, &beta});
  }
  return y;
}

int convert_sync_batch_norm(nn::Module& root, Communicator* comm) {
  int switched = 0;
  root.apply([&](nn::Module& m) {
    if (auto* bn = dynamic_cast<nn::BatchNorm2d*>(&m)) {
      bn->set_sync(comm);
      ++switched;
    }
  });
  return switched;
}

}  // namespace rg::dist
