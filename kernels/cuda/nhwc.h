// CUDA kernels of the NHWC bfloat16 ops (engine/ops/nhwc.h): the convolution's epilogue,
// max pooling and training-mode batch norm. Packing and unpacking are kernels/cuda/blas.h's tiled
// transposes (nchw_to_nhwc_bf16, nhwc_bf16_to_nchw). Same arithmetic as the CPU kernels
// of kernels/cpu/nhwc.h, element for element.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cpu/nhwc.h"

namespace caption::kernels::cuda {

// In place over y [rows, channels]: y = bf16(relu?((y + bias[c]) + residual)).
void conv_nhwc_epilogue(uint16_t* y, const float* bias, const uint16_t* residual, int64_t rows,
                        int64_t channels, bool relu, cudaStream_t stream);

// w16 [O, taps, channels_out] and bias [O]: kernels/cpu/nhwc.h's fold_pack_nhwc.
void fold_pack_nhwc(const cpu::FoldPackParams& p, const float* w, const float* conv_bias,
                    const float* gamma, const float* beta, const float* mean, const float* var,
                    uint16_t* w16, float* bias, cudaStream_t stream);

// y [B, Ho, Wo, C] = max over each window of x [B, H, W, C], and each maximum's position
// where indices is not null; the backward gathers grad_x from grad_y (kernels/cpu/nhwc.h).
void max_pool_nhwc_bf16(const cpu::MaxPoolNhwcParams& p, const uint16_t* x, uint16_t* y,
                        int32_t* indices, cudaStream_t stream);
void max_pool_nhwc_backward(const cpu::MaxPoolNhwcParams& p, const int32_t* indices,
                            const uint16_t* grad_y, uint16_t* grad_x, cudaStream_t stream);

// Training-mode batch norm over x [rows, C] with the residual and ReLU fused (kernels/
// cpu/nhwc.h: the same per-element functions; the per-channel double sums are taken in a
// fixed order, so results are deterministic). `workspace` holds
// batch_norm_nhwc_workspace_bytes(p) bytes.
int64_t batch_norm_nhwc_workspace_bytes(const cpu::BatchNormNhwcParams& p);
void batch_norm_nhwc_forward(const cpu::BatchNormNhwcParams& p, const uint16_t* x,
                             const float* weight, const float* bias, const uint16_t* residual,
                             float* running_mean, float* running_var, uint16_t* y,
                             float* save_mean, float* save_invstd, void* workspace,
                             cudaStream_t stream);
void batch_norm_nhwc_backward(const cpu::BatchNormNhwcParams& p, const uint16_t* x,
                              const uint16_t* y, const float* weight, const float* save_mean,
                              const float* save_invstd, const uint16_t* grad_y, uint16_t* grad_x,
                              float* grad_weight, float* grad_bias, uint16_t* grad_residual,
                              void* workspace, cudaStream_t stream);

// out = bf16(a + b) over n values.
void add_bf16(const uint16_t* a, const uint16_t* b, uint16_t* out, int64_t n, cudaStream_t stream);

}  // namespace caption::kernels::cuda
