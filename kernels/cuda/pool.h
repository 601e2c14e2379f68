// CUDA kernels of 2-D pooling, mirroring kernels/cpu/pool.h (same params structs, same
// saved indices, same tie and NaN rules): max pooling with optional indices, adaptive
// average pooling. float32; x is [planes, H, W].
//
// Why our own kernels and not cuDNN's pooling: the op table saves only max pooling's
// indices (int64, as PyTorch's return_indices), which cuDNN's pooling backward cannot
// use (it wants x and y kept alive); the pools are single memory-bound passes, and the
// backward kernels here gather (each input sums the outputs that chose it, in a fixed
// order), so they need no atomics and are bit-identical from run to run.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cpu/pool.h"

namespace caption::kernels::cuda {

using cpu::AdaptiveAvgPool2dParams;
using cpu::MaxPool2dParams;

// y [P, Ho, Wo]; indices [P, Ho, Wo] (h * W + w inside the plane) may be null.
void max_pool2d_forward(const MaxPool2dParams& p, const float* x, float* y, int64_t* indices,
                        cudaStream_t stream);
// grad_x [P, H, W] (=) from the saved indices and grad_y [P, Ho, Wo].
void max_pool2d_backward(const MaxPool2dParams& p, const int64_t* indices, const float* grad_y,
                         float* grad_x, cudaStream_t stream);

void adaptive_avg_pool2d_forward(const AdaptiveAvgPool2dParams& p, const float* x, float* y,
                                 cudaStream_t stream);
void adaptive_avg_pool2d_backward(const AdaptiveAvgPool2dParams& p, const float* grad_y,
                                  float* grad_x, cudaStream_t stream);

}  // namespace caption::kernels::cuda
