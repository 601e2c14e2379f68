// Sum and mean over axes.
#pragma once

#include <vector>

#include "engine/tensor.h"

namespace caption {

enum class KeepDim { No, Yes };

// The reduction kernel sees [outer, reduce, inner]: the op layer permutes the reduced
// axes into the middle when they are not already contiguous there.
struct ReduceParams {
  int64_t outer = 1, reduce = 1, inner = 1;
  double scale = 1.0;  // 1 for sum, 1/reduce for mean
};

// Reduces over `axes` (all axes when empty).
Tensor sum(const Tensor& x, const std::vector<int64_t>& axes = {}, KeepDim keep = KeepDim::No);
Tensor mean(const Tensor& x, const std::vector<int64_t>& axes = {}, KeepDim keep = KeepDim::No);

}  // namespace caption
