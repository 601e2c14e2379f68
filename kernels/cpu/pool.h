// CPU kernels of 2-D pooling, NCHW with batch and channels flattened into "planes":
// max pooling (PyTorch's max_pool2d: padding counts as -inf, floor mode) and adaptive
// average pooling (PyTorch's bins, which also up-sample).
//
// Max pooling saves, for each output, the index of its maximum inside its input plane
// (h * W + w, int64, as PyTorch's return_indices gives). Ties go to the first maximum in
// scan order (rows, then columns, of the window), so exactly one input receives each
// output's gradient; a NaN in a window wins (it propagates, as in PyTorch). When no
// gradient will be needed the indices are not computed at all (null pointer), which
// lets the kernel take a faster, separable path: same values.
#pragma once

#include <cstdint>

namespace caption::kernels::cpu {

// The params struct of OpId::MaxPool2d (shared with the CUDA side).
struct MaxPool2dParams {
  int64_t planes = 0, in_h = 0, in_w = 0;  // x is [planes, in_h, in_w]
  int64_t kernel_h = 1, kernel_w = 1, stride_h = 1, stride_w = 1;
  int64_t pad_h = 0, pad_w = 0, dilation_h = 1, dilation_w = 1;
  int64_t out_h = 0, out_w = 0;
};

// y [P, Ho, Wo] = max over each window of x [P, H, W]; indices [P, Ho, Wo] of the maxima
// (may be null: not needed).
// A window lying wholly in the padding (impossible with padding <= kernel / 2, which
// the op layer enforces) would give -inf and index -1.
template <typename T>
void max_pool2d_forward(const MaxPool2dParams& p, const T* x, T* y, int64_t* indices);
// grad_x [P, H, W] = sum of grad_y [P, Ho, Wo] over the outputs whose maximum it was.
template <typename T>
void max_pool2d_backward(const MaxPool2dParams& p, const int64_t* indices, const T* grad_y,
                         T* grad_x);

// The params struct of OpId::AdaptiveAvgPool2d. Output cell i covers input rows
// floor(i*H/Ho) .. ceil((i+1)*H/Ho) - 1 (likewise columns); bins may overlap.
struct AdaptiveAvgPool2dParams {
  int64_t planes = 0, in_h = 0, in_w = 0, out_h = 0, out_w = 0;
};

// y [P, Ho, Wo] = mean of x [P, H, W] over each bin.
template <typename T>
void adaptive_avg_pool2d_forward(const AdaptiveAvgPool2dParams& p, const T* x, T* y);
// grad_x [P, H, W]: each output's gradient spread evenly over its bin, summed where bins
// overlap.
template <typename T>
void adaptive_avg_pool2d_backward(const AdaptiveAvgPool2dParams& p, const T* grad_y, T* grad_x);

}  // namespace caption::kernels::cpu
