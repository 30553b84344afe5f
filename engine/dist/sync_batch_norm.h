// Synchronized batch normalization: in training, the per-channel batch statistics are those of
// the *global* batch (every rank's shard), so N ranks with batch B/N each normalize exactly as
// one process with batch B would (docs/scaling.md discusses when to turn it on).
//
// Forward (two passes, in double): all-reduce [sum_c(x), count] -> global mean; all-reduce
// sum_c((x - mean)^2) -> global biased variance. Backward: all-reduce sum_c(dy) and
// sum_c(dy * xhat), then dx = gamma * invstd * (dy - sum(dy)/N - xhat * sum(dy*xhat)/N) with
// the global sums and count N; dgamma and dbeta are this rank's sums (GradientSync averages
// them with the other parameter gradients). Each training forward costs two small blocking
// all-reduces per layer (2C+1 and C doubles) and each backward one (2C doubles); every rank
// must run the same layers in the same order (data parallelism does).
//
// Kept out of engine/ops/ops.h so that the op layer does not depend on the communicators.
#pragma once

#include <cstdint>

#include "engine/dist/communicator.h"
#include "engine/nn/module.h"

namespace rg::dist {

// x NHWC (statistics per channel over every other dimension). Same contract as rg::batch_norm,
// with the batch statistics (and the running-statistics update) taken over all ranks. Eval
// mode (training = false) is rg::batch_norm's eval mode and communicates nothing.
Tensor sync_batch_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                       Tensor running_mean, Tensor running_var, bool training, double momentum,
                       double eps, Communicator& comm);

// Makes every nn::BatchNorm2d under `root` synchronize its training statistics over `comm`
// (nullptr turns it back into a local BatchNorm2d). Names, parameters, buffers and checkpoints
// are unchanged, so pix2pix export keeps working. Returns how many layers were switched.
// `comm` must outlive the modules' use of it.
int convert_sync_batch_norm(nn::Module& root, Communicator* comm);

}  // namespace rg::dist
