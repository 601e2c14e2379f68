// Every tensor-level op, by family.
#pragma once

#include "engine/ops/elementwise.h"
#include "engine/ops/linear.h"
#include "engine/ops/reduce.h"
#include "engine/ops/conv.h"
#include "engine/ops/norm.h"
#include "engine/ops/pool.h"
#include "engine/ops/softmax.h"
#include "engine/ops/indexing.h"
#include "engine/ops/lstm.h"
#include "engine/ops/attention.h"
#include "engine/ops/optim.h"
#include "engine/ops/nhwc.h"
