// What a trained segmentation generator says about a batch of slices: the probabilities that
// validation, test (apps/seg/seg_run.h) and whole-volume inference (apps/seg/volume_inference.h)
// all threshold, computed one way for all three.
#pragma once

#include <cstdint>

#include "engine/device.h"
#include "engine/dtype.h"
#include "engine/tensor.h"

namespace rg::models {
class UnetGenerator;
}

namespace rg::app {

// Test-time flip: the training augmentation mirrors slices left-right (data::AugmentOptions
// p_flip_h), so G has learned both orientations. With it on, a slice's probability is the mean
// of G's on the slice and G's on its mirror image, mirrored back: the two predictions' errors
// are partly independent, so the mean is the better estimate (at twice the forward passes).
// Top-bottom flips are not used: training never shows G a slice upside down.

// sigmoid(G(x)) for slices x ([N, H, W, C] float32 on the CPU, C = G's input channels), in eval
// mode under NoGradGuard, with activations in act_dtype on `device`. Returns [N, H, W, 1]
// float32 on the CPU, contiguous. G's train/eval mode is left as eval.
Tensor predict_probabilities(models::UnetGenerator& g, const Tensor& x, DType act_dtype, Device device,
                             bool test_time_flip);

// [N, H, W, C] float32 on the CPU with the W axis reversed (a left-right mirror of each slice,
// all channels alike), as data::flip_horizontal mirrors one image.
Tensor mirror_columns(const Tensor& x);

}  // namespace rg::app
