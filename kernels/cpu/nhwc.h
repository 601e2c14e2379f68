// CPU kernels of the NHWC bfloat16 inference ops (engine/ops/nhwc.h): packing NCHW
// float32 into NHWC bfloat16 and back, the convolution's epilogue (bias, residual, ReLU)
// and max pooling over NHWC. bfloat16 values travel as their uint16_t bit patterns and
// are rounded by kernels/bf16.h, the function the CUDA kernels run too.
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/bf16.h"
#include "kernels/cpu/conv.h"
#include "kernels/cpu/pool.h"

namespace caption::kernels::cpu {

// The params of OpId::NhwcPack and OpId::NhwcUnpack: [batch, channels, plane] (NCHW,
// plane = H * W) <-> [batch, plane, channels_out] (NHWC). Packing zero-fills channels
// [channels, channels_out) (0: no padding; cuDNN's tensor-core kernels want a multiple of 8 channels;
// the ResNet stem has 3); unpacking has channels_out == channels.
struct NhwcPackParams {
  int64_t batch = 0, channels = 0, plane = 0, channels_out = 0;
};

// The params of OpId::FoldPackNhwc: a convolution's weight [O, C, kh, kw] (taps = kh * kw)
// and the batch norm after it, folded and packed into [O, kh, kw, channels_out] bfloat16
// (channels past C zero) and a float32 bias [O].
struct FoldPackParams {
  int64_t out_channels = 0, in_channels = 0, taps = 0, channels_out = 0;
  double eps = 1e-5;
};

// One output channel's fold, computed as batch norm's Eval mode computes its scale and
// shift (kernels/cpu/norm.cpp: in double, then rounded to float32), so the folded weights
// equal nn/batch_norm_fold.h's before the rounding to bfloat16 (the bias to the last bit:
// see fold_apply):
//   weight' = weight * scale + 0,  bias' = conv_bias * scale + shift.
struct FoldScale {
  float scale, shift;
};
CAPTION_BF16_HD FoldScale fold_scale(const float* gamma, const float* beta, const float* mean,
                                     const float* var, int64_t o, double eps) {
  const double invstd = 1.0 / sqrt(static_cast<double>(var[o]) + eps);
  const double scale = (gamma ? static_cast<double>(gamma[o]) : 1.0) * invstd;
  const double shift = (beta ? static_cast<double>(beta[o]) : 0.0) - static_cast<double>(mean[o]) * scale;
  return {static_cast<float>(scale), static_cast<float>(shift)};
}
// x * scale + shift, rounded after the product and after the sum (never one fused
// multiply-add, which nvcc would otherwise emit on the device).
CAPTION_BF16_HD float fold_apply(float x, float scale, float shift) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(__fmul_rn(x, scale), shift);
#else
  const volatile float product = x * scale;
  return product + shift;
#endif
}

// The params of OpId::ConvNhwc: the geometry (bf16 and nhwc set) and the epilogue.
struct ConvNhwcParams {
  Conv2dGeometry g;
  bool relu = false;
};

// The params of OpId::MaxPoolNhwc: g.planes is the batch; channels the innermost axis.
struct MaxPoolNhwcParams {
  MaxPool2dParams g;
  int64_t channels = 0;
};

// y [B, P, channels_out] bfloat16 = x [B, C, P] float32, rounded to nearest even, the
// padding channels zero.
void nchw_to_nhwc_bf16(const NhwcPackParams& p, const float* x, uint16_t* y);
// y [B, C, P] float32 = x [B, P, C] bfloat16 (exact).
void nhwc_bf16_to_nchw(const NhwcPackParams& p, const uint16_t* x, float* y);

// w16 [O, taps, channels_out] and bias [O] from w [O, C, taps] (conv_bias, gamma and beta
// may be null: zero, one, zero).
void fold_pack_nhwc(const FoldPackParams& p, const float* w, const float* conv_bias,
                    const float* gamma, const float* beta, const float* mean, const float* var,
                    uint16_t* w16, float* bias);

// The convolution's epilogue, in place over y [rows, channels] (NHWC, rows = B * Ho * Wo),
// which holds the product already rounded to bfloat16 (as cuDNN stores it):
//   y = bf16(relu?((y + bias[c]) + residual))   (float32 arithmetic, one rounding)
// bias may be null (zero), residual may be null (none), relu optional. NaN passes ReLU.
void conv_nhwc_epilogue(uint16_t* y, const float* bias, const uint16_t* residual, int64_t rows,
                        int64_t channels, bool relu);

// y [B, Ho, Wo, C] = max over each window of x [B, H, W, C] (padding is -inf, a NaN in a
// window wins, as max_pool2d): max pooling's values without indices (no backward).
void max_pool_nhwc_bf16(const MaxPoolNhwcParams& p, const uint16_t* x, uint16_t* y);

}  // namespace caption::kernels::cpu
