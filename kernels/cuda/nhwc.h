// CUDA kernels of the NHWC bfloat16 inference ops (engine/ops/nhwc.h): the convolution's
// epilogue and max pooling. Packing and unpacking are kernels/cuda/blas.h's tiled
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

// y [B, Ho, Wo, C] = max over each window of x [B, H, W, C].
void max_pool_nhwc_bf16(const cpu::MaxPoolNhwcParams& p, const uint16_t* x, uint16_t* y,
                        cudaStream_t stream);

}  // namespace caption::kernels::cuda
