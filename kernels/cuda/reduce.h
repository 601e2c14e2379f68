// CUDA kernels of sum and mean over axes, mirroring kernels/cpu/reduce.h: x is seen as
// [outer, reduce, inner] blocks. float32 only; work is queued on `stream`. Also used
// for linear's bias gradient (column sums) and for summing a shared matmul operand's
// per-batch gradients.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace caption::kernels::cuda {

// out[o, i] = scale * sum_r x[o, r, i]  (deterministic; zeros when reduce == 0).
void reduce_sum(const float* x, float* out, int64_t outer, int64_t reduce, int64_t inner,
                float scale, cudaStream_t stream);
// grad_x[o, r, i] = scale * grad_out[o, i]
void reduce_sum_backward(const float* grad_out, float* grad_x, int64_t outer, int64_t reduce,
                         int64_t inner, float scale, cudaStream_t stream);

// values[r] = max_c x[r, c], indices[r] = its first c (a NaN is the maximum); one
// block per row, a fixed combine order, so the first maximum wins on every device.
void max_last(const float* x, float* values, int64_t* indices, int64_t rows, int64_t cols,
              cudaStream_t stream);

// kernels/cpu/reduce.h's top_extensions: one block, `take` rounds, each the block's best
// candidate ranked after the previous round's choice (so no candidate list is kept and
// any take works); the same double scores and order as the CPU, so the same choice.
void top_extensions(const float* log_probs, const double* base, int64_t K, int64_t V,
                    int64_t take, int64_t* indices, float* values, double* scores,
                    cudaStream_t stream);

}  // namespace caption::kernels::cuda
