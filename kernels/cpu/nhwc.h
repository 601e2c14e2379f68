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
#include "kernels/pool_math.h"

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
  const double b = beta ? static_cast<double>(beta[o]) : 0.0, m = static_cast<double>(mean[o]);
#if defined(__CUDA_ARCH__)
  const double shift = __dsub_rn(b, __dmul_rn(m, scale));  // never a fused multiply-add
#else
  const double shift = b - m * scale;
#endif
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

// ---- Training in NHWC bfloat16 (fine-tuned encoder stages) ----------------------------

// The params of OpId::BatchNormNhwc: x is [rows, channels] (rows = B * H * W), batch
// statistics (training mode only), running statistics updated with `momentum` and the
// unbiased variance, then the residual (optional) added and ReLU (optional) applied.
struct BatchNormNhwcParams {
  int64_t rows = 0, channels = 0;
  double momentum = 0.1, eps = 1e-5;
  bool relu = false;
};

// Float32 operations rounded one at a time on every device (never contracted into a
// fused multiply-add), so that the CPU and CUDA kernels agree bit for bit.
CAPTION_BF16_HD float mul_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  const volatile float p = a * b;
  return p;
#endif
}
CAPTION_BF16_HD float add_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
CAPTION_BF16_HD float sub_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}

// One channel's statistics from the double sums of x and x^2 over its n = rows values:
// save_mean/save_invstd, the running statistics (either may be null), and the element
// pass's coefficients coef[c] = scale = weight * invstd, coef[C + c] = shift = bias -
// mean * scale (weight and bias may be null: 1 and 0).
CAPTION_BF16_HD void bn_nhwc_finish_stats(const BatchNormNhwcParams& p, int64_t c, double sum,
                                          double sumsq, const float* weight, const float* bias,
                                          float* running_mean, float* running_var,
                                          float* save_mean, float* save_invstd, float* coef) {
  const double n = static_cast<double>(p.rows);
  const double mean = sum / n;
  double var = sumsq / n - mean * mean;
  if (var < 0) var = 0;
  const double invstd = 1.0 / sqrt(var + p.eps);
  save_mean[c] = static_cast<float>(mean);
  save_invstd[c] = static_cast<float>(invstd);
  if (running_mean)
    running_mean[c] = static_cast<float>((1 - p.momentum) * running_mean[c] + p.momentum * mean);
  if (running_var)
    running_var[c] = static_cast<float>((1 - p.momentum) * running_var[c] +
                                        p.momentum * (n > 1 ? var * n / (n - 1) : var));
  const double scale = (weight ? static_cast<double>(weight[c]) : 1.0) * invstd;
  coef[c] = static_cast<float>(scale);
  coef[p.channels + c] = static_cast<float>((bias ? static_cast<double>(bias[c]) : 0.0) - mean * scale);
}

// One output value before its rounding: relu?(x * scale + shift + residual).
CAPTION_BF16_HD float bn_nhwc_value(float x, float scale, float shift, const uint16_t* residual,
                                    bool relu) {
  float v = add_rn(mul_rn(x, scale), shift);
  if (residual) v = add_rn(v, bf16_to_float(*residual));
  return relu && v < 0.f ? 0.f : v;
}

// The gradient reaching the batch norm's output: dy where ReLU passed (y > 0), else 0.
CAPTION_BF16_HD float bn_nhwc_dz(uint16_t y, uint16_t dy, bool relu) {
  return !relu || bf16_to_float(y) > 0.f ? bf16_to_float(dy) : 0.f;
}

// One channel's backward coefficients from the double sums of dz and dz * (x - mean):
// grad_weight and grad_bias (either may be null), and coef[c] = k = weight * invstd,
// coef[C + c] = mean of dz, coef[2C + c] = invstd^2 * sum(dz * (x - mean)) / n.
CAPTION_BF16_HD void bn_nhwc_finish_grads(const BatchNormNhwcParams& p, int64_t c, double sum_dz,
                                          double sum_dz_xc, const float* weight,
                                          const float* save_invstd, float* grad_weight,
                                          float* grad_bias, float* coef) {
  const double n = static_cast<double>(p.rows), invstd = save_invstd[c];
  if (grad_weight) grad_weight[c] = static_cast<float>(sum_dz_xc * invstd);
  if (grad_bias) grad_bias[c] = static_cast<float>(sum_dz);
  const int64_t C = p.channels;
  coef[c] = static_cast<float>((weight ? static_cast<double>(weight[c]) : 1.0) * invstd);
  coef[C + c] = static_cast<float>(sum_dz / n);
  coef[2 * C + c] = static_cast<float>(invstd * invstd * sum_dz_xc / n);
}

// grad_x before its rounding: k * (dz - mean_dz - (x - mean) * proj).
CAPTION_BF16_HD float bn_nhwc_grad_x(float dz, float x, float mean, float k, float mean_dz,
                                     float proj) {
  return mul_rn(k, sub_rn(sub_rn(dz, mean_dz), mul_rn(sub_rn(x, mean), proj)));
}

// Forward over x [rows, C]: y = bf16(relu?(batch_norm(x) + residual)); residual may be
// null, weight/bias may be null (1 and 0), running statistics may be null (not
// tracked). save_mean/save_invstd [C] receive the batch statistics, coef [2C] is scratch.
void batch_norm_nhwc_forward(const BatchNormNhwcParams& p, const uint16_t* x, const float* weight,
                             const float* bias, const uint16_t* residual, float* running_mean,
                             float* running_var, uint16_t* y, float* save_mean,
                             float* save_invstd, float* coef);

// Backward for grad_y [rows, C]: grad_x (bf16), grad_weight, grad_bias (float32) and
// grad_residual (bf16: dz, exact) may each be null (not needed). y is the forward's
// output (its sign gives ReLU's mask). coef [3C] is scratch.
void batch_norm_nhwc_backward(const BatchNormNhwcParams& p, const uint16_t* x, const uint16_t* y,
                              const float* weight, const float* save_mean,
                              const float* save_invstd, const uint16_t* grad_y, uint16_t* grad_x,
                              float* grad_weight, float* grad_bias, uint16_t* grad_residual,
                              float* coef);

// out[i] = bf16(a[i] + b[i]) (float32 sum, one rounding): bfloat16 gradients summed by
// autograd where an NHWC activation feeds two layers.
void add_bf16(const uint16_t* a, const uint16_t* b, uint16_t* out, int64_t n);

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
// window wins, as max_pool2d), and where `indices` is not null each maximum's position in
// its image plane, h * W + w (int32, [B, Ho, Wo, C]), for the backward.
void max_pool_nhwc_bf16(const MaxPoolNhwcParams& p, const uint16_t* x, uint16_t* y,
                        int32_t* indices);

// One input element's gradient: the sum, in a fixed order, of grad_y over the outputs of
// its channel whose saved maximum is its pixel (ib, gb: image b's indices and grad_y).
CAPTION_BF16_HD float max_pool_nhwc_gather(const MaxPoolNhwcParams& p, const int32_t* ib,
                                           const uint16_t* gb, int64_t h, int64_t w, int64_t c) {
  const int64_t C = p.channels;
  float acc = 0.f;
  max_pool_windows_of(p.g, h, w, [&](int64_t o, int64_t self) {
    if (ib[o * C + c] == self) acc += bf16_to_float(gb[o * C + c]);
  });
  return acc;
}

// grad_x [B, H, W, C] = bf16(max_pool_nhwc_gather) for every input element.
void max_pool_nhwc_backward(const MaxPoolNhwcParams& p, const int32_t* indices,
                            const uint16_t* grad_y, uint16_t* grad_x);

}  // namespace caption::kernels::cpu
