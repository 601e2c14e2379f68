// CPU kernels of sum and mean over axes. The input is viewed as [outer, reduced, inner]
// blocks after the op layer has moved the reduced axes together, so one kernel covers
// every choice of axes.
#pragma once

#include <cstdint>

namespace caption::kernels::cpu {

// out[o, i] = scale * sum_r x[o, r, i]  for x of shape [outer, reduce, inner].
template <typename T>
void reduce_sum(const T* x, T* out, int64_t outer, int64_t reduce, int64_t inner, T scale);
// grad_x[o, r, i] = scale * grad_out[o, i]
template <typename T>
void reduce_sum_backward(const T* grad_out, T* grad_x, int64_t outer, int64_t reduce,
                         int64_t inner, T scale);

// values[r] = max_c x[r, c], indices[r] = its first c (a NaN is the maximum).
template <typename T>
void max_last(const T* x, T* values, int64_t* indices, int64_t rows, int64_t cols);

}  // namespace caption::kernels::cpu
