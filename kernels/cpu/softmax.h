// CPU kernels of the normalised exponentials and the fused cross-entropy loss. Raw
// pointers and sizes, templated on the element type (float for work, double for the
// gradient check); the CUDA kernels (kernels/cuda/softmax.cu) take the same parameters.
//
// Softmax and log-softmax see x as [outer, dim, inner] and normalise over `dim`. They
// subtract the row maximum before exponentiating. An optional int32 mask (nonzero =
// keep) is indexed by the flat element index modulo mask_numel, which is how a mask
// whose shape is a suffix of x's shape broadcasts over x's leading axes. Excluded
// entries give softmax 0 and log-softmax -inf; a row with no kept entry (or whose kept
// entries are all -inf) gives softmax zeros and log-softmax -inf everywhere. Backward
// needs only the forward output: excluded entries are exactly those where softmax is 0
// / log-softmax is -inf, and they receive gradient 0 (never NaN, whatever the upstream
// gradient holds there).
//
// Cross-entropy works on logits [rows, classes] and integer targets [rows]; rows whose
// target equals ignore_index contribute nothing. The forward keeps only the per-row
// log-sum-exp [rows] for backward, which recomputes the probabilities from the logits
// instead of storing [rows, classes] of them. Targets are validated by the op layer.
#pragma once

#include <cstdint>

namespace caption::kernels::cpu {

enum class SoftmaxKind { Softmax, LogSoftmax };

// y [outer, dim, inner] from x [outer, dim, inner]; mask may be null (mask_numel unused).
template <typename T>
void softmax_forward(SoftmaxKind kind, const T* x, const int32_t* mask, int64_t mask_numel, T* y,
                     int64_t outer, int64_t dim, int64_t inner);
// grad_x from the forward output y and grad_y (all [outer, dim, inner]):
//   softmax:     gx = y * (gy - sum_kept(gy * y))
//   log-softmax: gx = gy - exp(y) * sum_kept(gy)   (0 where y == -inf)
template <typename T>
void softmax_backward(SoftmaxKind kind, const T* y, const T* grad_y, T* grad_x, int64_t outer,
                      int64_t dim, int64_t inner);

// loss[0] = scale * sum over valid rows of (lse[r] - logits[r, target[r]]), where
// scale is 1 (sum) or 1 / valid rows (mean). lse [rows] receives each valid row's
// log-sum-exp (0 for ignored rows). I is int32_t or int64_t.
template <typename T, typename I>
void cross_entropy_forward(const T* logits, const I* targets, T* loss, T* lse, int64_t rows,
                           int64_t classes, int64_t ignore_index, T scale);
// grad_logits[r, c] = grad_scale * (exp(logits[r, c] - lse[r]) - [c == target[r]]) for
// valid rows, 0 for ignored rows; grad_scale = grad_loss * scale.
template <typename T, typename I>
void cross_entropy_backward(const T* logits, const I* targets, const T* lse, T grad_scale,
                            T* grad_logits, int64_t rows, int64_t classes, int64_t ignore_index);

}  // namespace caption::kernels::cpu
