// CUDA kernels of 2-D batch normalisation, mirroring kernels/cpu/norm.h: the same
// BatchNorm2dParams, the same buffers and the same saved statistics (save_mean and
// save_invstd, which the backward reads), so the op table's contract is one for both
// devices. float32 tensors; per-channel sums accumulate in double, as on the CPU.
//
// Why our own kernels and not cuDNN's batch norm: cuDNN's legacy batch-norm calls are
// deprecated in cuDNN 9, its backward covers training mode only (the engine also
// differentiates the frozen, running-statistics form used when fine-tuning), and the op
// is a memory-bound pass where cuDNN has nothing to add. At inference the frozen
// encoder does not run batch norm at all: nn/ folds it into the preceding convolution.
//
// Layout: x is [B, C, S] (S = H*W, NCHW). Each channel's statistics are one block's
// deterministic reduction (fixed per-thread subsets, a fixed tree): the same bits every
// run. The element passes are grid-stride kernels reading per-channel coefficients that
// the channel kernels leave in a small caller-provided float workspace.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cpu/norm.h"

namespace caption::kernels::cuda {

using cpu::BatchNorm2dParams;
using cpu::BatchNormMode;

// Floats of workspace the kernels below need: 3 * channels.
inline int64_t batch_norm2d_workspace_elems(const BatchNorm2dParams& p) { return 3 * p.channels; }

// y = (x - mean) * invstd * weight + bias; weight/bias may be null (1 and 0). Train:
// statistics from x, running_mean/running_var (may be null) updated with the unbiased
// variance; Eval: running statistics used (not null). save_mean/save_invstd [C] written.
void batch_norm2d_forward(const BatchNorm2dParams& p, const float* x, const float* weight,
                          const float* bias, float* running_mean, float* running_var, float* y,
                          float* save_mean, float* save_invstd, float* workspace,
                          cudaStream_t stream);

// Writes (=) each non-null gradient: grad_x [B, C, S], grad_weight [C], grad_bias [C].
void batch_norm2d_backward(const BatchNorm2dParams& p, const float* x, const float* weight,
                           const float* save_mean, const float* save_invstd, const float* grad_y,
                           float* grad_x, float* grad_weight, float* grad_bias, float* workspace,
                           cudaStream_t stream);

}  // namespace caption::kernels::cuda
