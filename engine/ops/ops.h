// Every tensor-level op, by family.
#pragma once

#include "engine/ops/elementwise.h"
#include "engine/ops/linear.h"
#include "engine/ops/reduce.h"
