// The engine's public surface in one include: tensors, autograd, random numbers, the
// op table and every tensor-level op.
#pragma once

#include "engine/allocator.h"
#include "engine/autocast.h"
#include "engine/autograd.h"
#include "engine/device.h"
#include "engine/dtype.h"
#include "engine/error.h"
#include "engine/op_table.h"
#include "engine/ops/ops.h"
#include "engine/profile.h"
#include "engine/random.h"
#include "engine/tensor.h"
#include "kernels/philox.h"
