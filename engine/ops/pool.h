// 2-D pooling on NCHW input with PyTorch's semantics: max_pool2d (padding counts as
// -inf, floor mode, ties to the first maximum in scan order) and adaptive_avg_pool2d
// (PyTorch's bins; it also up-samples, e.g. 7x7 -> 14x14). Kernels: kernels/cpu/pool.h.
#pragma once

#include <optional>
#include <string>

#include "engine/ops/conv.h"  // Size2
#include "engine/tensor.h"
#include "kernels/cpu/pool.h"

namespace caption {

struct MaxPool2dOptions {
  Size2 kernel{1, 1};
  std::optional<Size2> stride = std::nullopt;  // the kernel size when not given (PyTorch)
  Size2 padding{0, 0};          // at most half the kernel, per axis
  Size2 dilation{1, 1};
};

using MaxPool2dParams = kernels::cpu::MaxPool2dParams;
using AdaptiveAvgPool2dParams = kernels::cpu::AdaptiveAvgPool2dParams;

// Every size of max_pool2d over x [B, C, H, W] (logical order whatever the layout), the
// options checked; planes = B * C. Errors name `op` and describe `input`
// (only when they are raised).
MaxPool2dParams max_pool2d_params(const Shape& x, MaxPool2dOptions options, const char* op,
                                  const Tensor& input);

// x [B, C, H, W] -> [B, C, Ho, Wo], Ho = (H + 2*ph - dh*(kh-1) - 1) / sh + 1 (floor).
Tensor max_pool2d(const Tensor& x, MaxPool2dOptions options);

// x [B, C, H, W] -> [B, C, out.h, out.w], the mean over each of PyTorch's adaptive bins.
Tensor adaptive_avg_pool2d(const Tensor& x, Size2 out);

}  // namespace caption
