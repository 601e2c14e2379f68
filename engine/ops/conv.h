// 2-D convolution (NCHW, PyTorch's conv2d without groups), and the 2-D size type that
// the image ops' options share. The CPU kernels are kernels/cpu/conv.h (im2col + gemm).
#pragma once

#include <cstdint>
#include <string>

#include "engine/tensor.h"
#include "kernels/cpu/conv.h"

namespace caption {

// A (height, width) pair: strides, paddings, dilations, window and output sizes.
struct Size2 {
  int64_t h = 0;
  int64_t w = 0;
  friend bool operator==(const Size2&, const Size2&) = default;
};

struct Conv2dOptions {
  Size2 stride{1, 1};
  Size2 padding{0, 0};   // zeros on each side
  Size2 dilation{1, 1};
};

// Every size of one call, resolved by conv2d(); the params struct of OpId::Conv2d.
using Conv2dParams = kernels::cpu::Conv2dGeometry;

// x [B, C, H, W], weight [O, C, kh, kw], bias [O] (may be undefined) -> [B, O, Ho, Wo]
// with Ho = (H + 2*ph - dh*(kh-1) - 1) / sh + 1 (floor), likewise Wo.
Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor(),
              Conv2dOptions options = {});

// What a convolution at inference may do to its output in the same pass: ResNet's
// relu(bn(conv(x)) + identity) with the batch norm folded (nn/batch_norm_fold.h) is one
// call instead of three ops, each of which would read and write the whole activation.
struct Conv2dEpilogue {
  Tensor residual{};  // [B, O, Ho, Wo], added after the bias (undefined: none)
  bool relu = false;  // then ReLU, as relu() computes it
};

// relu?(conv2d(x, weight, bias, options) + residual), equal bit for bit to the separate
// ops (add, then relu). Not differentiable: with an epilogue and an input that requires
// grad (grad mode on) it refuses; nn/batch_norm_fold.h's conv_batch_norm falls back to
// the separate ops then.
Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, Conv2dOptions options,
              const Conv2dEpilogue& epilogue);

// Every size of a convolution of x [B, C, H, W] with weight [O, C, kh, kw] (shapes in that
// logical order whatever the memory layout), the options checked; errors name `op` and
// describe `input` (only when they are raised). bf16 is left false.
Conv2dParams conv2d_params(const Shape& x, const Shape& w, Conv2dOptions options, const char* op,
                           const Tensor& input);

// "(h, w)", as errors print sizes.
std::string size2_string(Size2 s);

// The output size of one spatial axis (floor mode); <= 0 when the window does not fit.
int64_t conv_output_size(int64_t in, int64_t kernel, int64_t stride, int64_t pad,
                         int64_t dilation);

}  // namespace caption
