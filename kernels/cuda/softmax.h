// CUDA kernels of softmax, log-softmax and the fused cross-entropy loss, with the
// parameters and semantics of kernels/cpu/softmax.h (read it for masks, fully masked
// rows, ignored targets). float32 only; work is queued on `stream`.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cpu/softmax.h"

namespace caption::kernels::cuda {

using cpu::SoftmaxKind;

// y [outer, dim, inner] from x; mask (int32, nonzero = keep, indexed by flat element
// index modulo mask_numel) may be null.
void softmax_forward(SoftmaxKind kind, const float* x, const int32_t* mask, int64_t mask_numel,
                     float* y, int64_t outer, int64_t dim, int64_t inner, cudaStream_t stream);
void softmax_backward(SoftmaxKind kind, const float* y, const float* grad_y, float* grad_x,
                      int64_t outer, int64_t dim, int64_t inner, cudaStream_t stream);

// loss[0] = scale * sum over valid rows of (lse[r] - logits[r, target[r]]), summed in
// double in row order (as on the CPU); lse [rows] gets each valid row's log-sum-exp (0
// for ignored rows). row_loss is scratch of `rows` floats. I is int32_t or int64_t.
template <typename I>
void cross_entropy_forward(const float* logits, const I* targets, float* loss, float* lse,
                           float* row_loss, int64_t rows, int64_t classes, int64_t ignore_index,
                           float scale, cudaStream_t stream);
// grad_logits[r, c] = g * (exp(logits[r, c] - lse[r]) - [c == target[r]]) for valid
// rows, 0 for ignored rows, with g = grad_loss[0] * scale (grad_loss on the device).
template <typename I>
void cross_entropy_backward(const float* logits, const I* targets, const float* lse,
                            const float* grad_loss, float scale, float* grad_logits, int64_t rows,
                            int64_t classes, int64_t ignore_index, cudaStream_t stream);

}  // namespace caption::kernels::cuda
