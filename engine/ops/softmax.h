// Normalised exponentials and the fused cross-entropy loss: softmax, log_softmax (with
// an optional keep-mask) and cross_entropy over rows with ignored targets.
//
// Masks: an int32 tensor, nonzero = keep, 0 = excluded (as if the input were -inf). Its
// shape is either x's shape or a suffix of it (it then repeats over x's leading axes,
// e.g. a [P] mask for scores [B, P], or [T, P] for [B, T, P]). Excluded entries give
// softmax 0 and log_softmax -inf. A row with nothing kept gives softmax all zeros and
// log_softmax all -inf: -inf (not 0) so that reading a log-probability of a fully masked
// row shows up as an infinite loss instead of passing silently. Gradients are always
// finite: excluded entries receive 0, whatever the upstream gradient holds there.
//
// cross_entropy: the decoder flattens [B, T] logits to N rows and marks padding with
// ignore_index. Backward recomputes the probabilities from the saved logits and per-row
// log-sum-exp instead of keeping [N, V] of them.
#pragma once

#include <cstdint>

#include "engine/tensor.h"

namespace caption {

// x seen as [outer, dim, inner], normalised over dim. mask_numel is 0 without a mask;
// with one, element e of x uses mask[e % mask_numel].
struct SoftmaxParams {
  int64_t outer = 1, dim = 1, inner = 1;
  int64_t mask_numel = 0;
};

Tensor softmax(const Tensor& x, int64_t axis = -1, const Tensor& mask = Tensor());
Tensor log_softmax(const Tensor& x, int64_t axis = -1, const Tensor& mask = Tensor());

enum class Reduction { Mean, Sum };

struct CrossEntropyOptions {
  int64_t ignore_index = -100;  // rows with this target contribute nothing
  Reduction reduction = Reduction::Mean;  // Mean: divided by the number of valid rows
  // >= 0: the number of rows whose target is not ignore_index, given by a caller that
  // built the targets on the host and vouches that each is in range (the decoder does).
  // The op then reads nothing back from the device: otherwise it copies the targets to
  // the host to check and count them, a synchronisation per call on a GPU.
  int64_t known_valid_rows = -1;
};

struct CrossEntropyParams {
  int64_t rows = 0, classes = 0;
  int64_t ignore_index = -100;
  int64_t valid_rows = 0;  // rows whose target is not ignore_index (counted by the op layer)
  double scale = 1.0;      // applied to the summed loss: 1 (Sum), 1/valid_rows (Mean), 0 if none
};

// logits [N, V] float; targets [N] int64 or int32, each in [0, V) or == ignore_index.
// Returns the loss as a scalar tensor (shape []). With no valid row the loss is 0 and
// the gradient 0. A target out of range is refused, naming its value and row.
Tensor cross_entropy(const Tensor& logits, const Tensor& targets, CrossEntropyOptions options = {});

}  // namespace caption
