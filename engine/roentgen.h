// Everything a program built on the engine needs, in one include.
#pragma once

#include "engine/autograd.h"
#include "engine/layout.h"
#include "engine/nn/init.h"
#include "engine/nn/layers.h"
#include "engine/nn/module.h"
#include "engine/ops/gradient_penalty.h"
#include "engine/ops/ops.h"
#include "engine/optim/lr_schedule.h"
#include "engine/optim/optimizer.h"
#include "engine/rng.h"
#include "engine/tensor.h"
