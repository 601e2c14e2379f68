// NHWC bfloat16 ops: what a convolutional encoder needs to run with its activations in
// bfloat16, channels innermost (nn/resnet.h, ResNet::forward_nhwc_bf16): a frozen one
// from its first convolution to its last, and the stages that train. cuDNN's
// tensor-core convolutions want that layout and type; keeping activations in it between
// layers avoids converting and transposing every convolution's input and output (what
// autocast's NCHW conv2d does) and halves the bytes that batch norm, ReLU, residual adds
// and pooling move.
//
// Differentiable: nhwc_pack, nhwc_unpack, conv_nhwc without its epilogue, max_pool_nhwc,
// batch_norm_nhwc; their gradients are bfloat16 where their inputs are (as autocast's).
// fold_pack_nhwc is inference only: an input that requires grad while grad mode is on is
// refused. Tensors in NHWC are ordinary BF16 tensors whose
// logical shape is [B, H, W, C]; filters are [O, kh, kw, C].
//
// Arithmetic (the CPU kernels are the reference, kernels/cpu/nhwc.h): conv_nhwc computes
// the product of bfloat16 operands in float32, rounds it to bfloat16 (as cuDNN stores it),
// then adds the float32 bias and the bfloat16 residual and applies ReLU in float32, and
// rounds once more.
#pragma once

#include "engine/ops/conv.h"
#include "engine/ops/pool.h"
#include "engine/tensor.h"
#include "kernels/cpu/nhwc.h"

namespace caption {

using NhwcPackParams = kernels::cpu::NhwcPackParams;
using FoldPackParams = kernels::cpu::FoldPackParams;
using ConvNhwcParams = kernels::cpu::ConvNhwcParams;
using MaxPoolNhwcParams = kernels::cpu::MaxPoolNhwcParams;
using BatchNormNhwcParams = kernels::cpu::BatchNormNhwcParams;

// x [B, C, H, W] float32 -> [B, H, W, C'] bfloat16, rounded to nearest even, with C'
// the channel count rounded up to a multiple of `channel_multiple` and the added channels
// zero (cuDNN's tensor-core kernels want multiples of 8; a convolution over zero channels
// with zero weights is the same convolution). Filters pack the same way:
// [O, C, kh, kw] -> [O, kh, kw, C'].
Tensor nhwc_pack(const Tensor& x, int64_t channel_multiple = 1);

// x [B, H, W, C] bfloat16 -> [B, C, H, W] float32 (exact).
Tensor nhwc_unpack(const Tensor& x);

// A convolution's weight [O, C, kh, kw] (and bias, may be undefined) folded with the batch
// norm that follows it, using its running statistics (gamma and beta may be undefined:
// 1 and 0), as nn/batch_norm_fold.h folds them, in one pass: weight [O, kh, kw, C']
// bfloat16 (C' as nhwc_pack's) and bias [O] float32. The weight equals
// nhwc_pack(fold_batch_norm(...).weight) bit for bit, the bias fold_batch_norm(...).bias to
// the last bit (b * scale + shift is rounded twice here on every device, where the batch
// norm kernel may fuse it).
struct PackedConv {
  Tensor weight, bias;
};
PackedConv fold_pack_nhwc(const Tensor& weight, const Tensor& conv_bias, const Tensor& gamma,
                          const Tensor& beta, const Tensor& running_mean,
                          const Tensor& running_var, double eps, int64_t channel_multiple = 1);

struct ConvNhwcOptions {
  Conv2dOptions conv;
  bool relu = false;
};

// y [B, Ho, Wo, O] = relu?(conv(x, w) + bias + residual): x [B, H, W, C] and w [O, kh, kw, C]
// bfloat16, bias [O] float32 (may be undefined), residual [B, Ho, Wo, O] bfloat16 (may be
// undefined). Differentiable in x and w when there is no bias, residual or ReLU: the
// gradients are the float32 convolution gradients rounded to bfloat16.
Tensor conv_nhwc(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& residual,
                 ConvNhwcOptions options);

struct BatchNormNhwcOptions {
  double momentum = 0.1;  // running = (1 - momentum) * running + momentum * batch statistic
  double eps = 1e-5;
  bool relu = false;
};

// Batch norm in training mode over x [B, H, W, C] bfloat16, with the residual add and ReLU
// of a ResNet block fused: y = bf16(relu?((x - mean) * invstd * weight + bias + residual)),
// float32 arithmetic and one rounding, batch statistics summed in double (biased variance;
// the running statistics, updated in place when defined, take the unbiased one, as
// batch_norm2d's Train mode). weight, bias [C] float32 may be undefined (1 and 0), residual
// [B, H, W, C] bfloat16 may be undefined. Differentiable in x, weight, bias and residual.
Tensor batch_norm_nhwc(const Tensor& x, const Tensor& weight, const Tensor& bias,
                       const Tensor& running_mean, const Tensor& running_var,
                       const Tensor& residual, BatchNormNhwcOptions options);

// x [B, H, W, C] bfloat16 -> [B, Ho, Wo, C]: max_pool2d's values in NHWC; differentiable
// (each window's gradient goes to its first maximum, as max_pool2d's).
Tensor max_pool_nhwc(const Tensor& x, MaxPool2dOptions options);

}  // namespace caption
