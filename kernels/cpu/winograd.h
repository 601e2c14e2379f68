// Winograd's minimal filtering F(2x2, 3x3) for the CPU forward of 3x3 convolutions with
// stride 1 (the stride-1 3x3s of ResNet's bottlenecks: 13 of ResNet-50's 16 3x3s, about
// 35% of its multiply-adds).
//
// Each 2x2 block of outputs ("tile") of one output channel is A^T [ (G g G^T) . (B^T d B) ] A,
// where d is the 4x4 input patch the tile reads in one input channel, g the 3x3 filter,
// . the elementwise product, summed over input channels:
//   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]
//   G   = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1]
//   A^T = [1 1 1 0; 0 1 -1 -1]
// The sum over input channels of the elementwise products is, for each of the 16 positions
// xi of the transformed tile, one matrix product M_xi [O, tiles] = U_xi [O, C] * V_xi [C, tiles]
// (U = the transformed filters, V = the transformed patches): 16 products of C*O*tiles
// multiply-adds in place of im2col's one of 9*C*O*4*tiles, 2.25x fewer, and the 4x4 patches
// (16 values per 4 outputs) replace im2col's 9 copies of every input value.
//
// Rounding: the transforms add and subtract (and halve, exactly) values before and after
// the products, so an output is not the direct sum of its 9*C products; against float64
// the float32 result's error is about twice the direct path's (tests/kernels/winograd_test.cpp
// measures both). PyTorch's CPU convolutions (oneDNN) are direct; cuDNN chooses Winograd
// for some 3x3 shapes itself. Which path a convolution takes is conv.h's decision.
#pragma once

#include <cstdint>

#include "kernels/cpu/conv.h"

namespace caption::kernels::cpu {

// 3x3, stride 1, dilation 1, any padding, at least one output.
bool winograd_applies(const Conv2dGeometry& g);

// Elements of the transformed filters U [16, O, C] (their 16 blocks padded apart).
int64_t winograd_weight_elems(int64_t out_channels, int64_t in_channels);

// U [16, O, C] = G w G^T for every filter of w [O, C, 3, 3].
template <typename T>
void winograd_weights(int64_t out_channels, int64_t in_channels, const T* w, T* U);

// Scratch elements of winograd_forward for g (the transformed patches and products of the
// images that share one set of 16 products).
int64_t winograd_workspace_elems(const Conv2dGeometry& g);

// conv2d_forward's contract (conv.h: bias, residual, ReLU; any may be absent) from the
// transformed filters U of winograd_weights. g must satisfy winograd_applies.
template <typename T>
void winograd_forward(const Conv2dGeometry& g, const T* x, const T* U, const T* bias,
                      const T* residual, T* y, T* workspace);

}  // namespace caption::kernels::cpu
