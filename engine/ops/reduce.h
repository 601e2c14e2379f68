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

struct MaxLastParams {
  int64_t rows = 0, cols = 0;
};

// The maximum over the last axis and where it is: x [..., N] (N > 0) -> values [...]
// (x's dtype) and indices [...] (int64), as torch.max(x, dim=-1): among equal maxima
// the first index; a NaN counts as the maximum (the first NaN). Not differentiable.
// Greedy decoding reads back these two numbers per row instead of the whole row.
struct MaxResult {
  Tensor values, indices;
};
MaxResult max_last(const Tensor& x);

// Beam search's choice on the device that holds the log-probabilities: the `take` best
// one-token extensions of K hypotheses (kernels/cpu/reduce.h's top_extensions), scored
// base[k] + log_probs[k, v] in double. log_probs [K, V] floating, base [K] float64 on the
// same device; take is clamped to K * V. Returns flat indices k * V + v (int64 [take]),
// the chosen log-probabilities (log_probs' dtype) and their scores (float64: the next
// step's base), best first. Not differentiable. Beam search reads back the first two
// (2 x take numbers per step instead of K x V) and keeps the scores on the device.
struct TopExtensionsParams {
  int64_t hyps = 0, vocab = 0, take = 0;
};
struct TopExtensions {
  Tensor indices, log_probs, scores;
};
TopExtensions top_extensions(const Tensor& log_probs, const Tensor& base, int64_t take);

// Reduces over `axes` (all axes when empty).
Tensor sum(const Tensor& x, const std::vector<int64_t>& axes = {}, KeepDim keep = KeepDim::No);
Tensor mean(const Tensor& x, const std::vector<int64_t>& axes = {}, KeepDim keep = KeepDim::No);

}  // namespace caption
