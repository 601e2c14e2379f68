// CPU kernels of the NHWC bfloat16 inference ops (see nhwc.h).
#include "kernels/cpu/nhwc.h"

#include <vector>

#include "kernels/bf16.h"
#include "kernels/pool_math.h"

namespace caption::kernels::cpu {

void nchw_to_nhwc_bf16(const NhwcPackParams& p, const float* x, uint16_t* y) {
  const int64_t C = p.channels, Cp = p.channels_out > 0 ? p.channels_out : p.channels;
  for (int64_t b = 0; b < p.batch; ++b) {
    const float* xb = x + b * C * p.plane;
    uint16_t* yb = y + b * Cp * p.plane;
    for (int64_t i = 0; i < p.plane; ++i)
      for (int64_t c = C; c < Cp; ++c) yb[i * Cp + c] = 0;
    for (int64_t c = 0; c < C; ++c)
      for (int64_t i = 0; i < p.plane; ++i) yb[i * Cp + c] = bf16_bits(xb[c * p.plane + i]);
  }
}

void nhwc_bf16_to_nchw(const NhwcPackParams& p, const uint16_t* x, float* y) {
  for (int64_t b = 0; b < p.batch; ++b) {
    const uint16_t* xb = x + b * p.channels * p.plane;
    float* yb = y + b * p.channels * p.plane;
    for (int64_t c = 0; c < p.channels; ++c)
      for (int64_t i = 0; i < p.plane; ++i) yb[c * p.plane + i] = bf16_to_float(xb[i * p.channels + c]);
  }
}

void fold_pack_nhwc(const FoldPackParams& p, const float* w, const float* conv_bias,
                    const float* gamma, const float* beta, const float* mean, const float* var,
                    uint16_t* w16, float* bias) {
  const int64_t C = p.in_channels, Cp = p.channels_out, R = p.taps;
  for (int64_t o = 0; o < p.out_channels; ++o) {
    const FoldScale f = fold_scale(gamma, beta, mean, var, o, p.eps);
    bias[o] = fold_apply(conv_bias ? conv_bias[o] : 0.f, f.scale, f.shift);
    for (int64_t r = 0; r < R; ++r)
      for (int64_t c = 0; c < Cp; ++c)
        w16[(o * R + r) * Cp + c] = c < C ? bf16_bits(fold_apply(w[(o * C + c) * R + r], f.scale, 0.f)) : 0;
  }
}

void conv_nhwc_epilogue(uint16_t* y, const float* bias, const uint16_t* residual, int64_t rows,
                        int64_t channels, bool relu) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < channels; ++c) {
      const int64_t i = r * channels + c;
      float v = bf16_to_float(y[i]);
      if (bias) v += bias[c];
      if (residual) v += bf16_to_float(residual[i]);
      if (relu && v < 0.f) v = 0.f;
      y[i] = bf16_bits(v);
    }
  }
}

void max_pool_nhwc_bf16(const MaxPoolNhwcParams& p, const uint16_t* x, uint16_t* y,
                        int32_t* indices) {
  const MaxPool2dParams& g = p.g;
  const int64_t C = p.channels;
  for (int64_t b = 0; b < g.planes; ++b) {
    const uint16_t* xb = x + b * g.in_h * g.in_w * C;
    for (int64_t oh = 0; oh < g.out_h; ++oh) {
      for (int64_t ow = 0; ow < g.out_w; ++ow) {
        const int64_t at = ((b * g.out_h + oh) * g.out_w + ow) * C;
        for (int64_t c = 0; c < C; ++c) {
          float best;
          const int64_t index = max_pool_window(
              g, oh, ow,
              [&](int64_t h, int64_t w) { return bf16_to_float(xb[(h * g.in_w + w) * C + c]); },
              &best);
          y[at + c] = bf16_bits(best);
          if (indices) indices[at + c] = static_cast<int32_t>(index);
        }
      }
    }
  }
}

void max_pool_nhwc_backward(const MaxPoolNhwcParams& p, const int32_t* indices,
                            const uint16_t* grad_y, uint16_t* grad_x) {
  const MaxPool2dParams& g = p.g;
  const int64_t C = p.channels, out_image = g.out_h * g.out_w * C;
  for (int64_t b = 0; b < g.planes; ++b)
    for (int64_t h = 0; h < g.in_h; ++h)
      for (int64_t w = 0; w < g.in_w; ++w)
        for (int64_t c = 0; c < C; ++c)
          grad_x[((b * g.in_h + h) * g.in_w + w) * C + c] = bf16_bits(max_pool_nhwc_gather(
              p, indices + b * out_image, grad_y + b * out_image, h, w, c));
}

void batch_norm_nhwc_forward(const BatchNormNhwcParams& p, const uint16_t* x, const float* weight,
                             const float* bias, const uint16_t* residual, float* running_mean,
                             float* running_var, uint16_t* y, float* save_mean,
                             float* save_invstd, float* coef) {
  const int64_t C = p.channels;
  std::vector<double> sum(static_cast<size_t>(C), 0.0), sumsq(static_cast<size_t>(C), 0.0);
  for (int64_t r = 0; r < p.rows; ++r)
    for (int64_t c = 0; c < C; ++c) {
      const double v = bf16_to_float(x[r * C + c]);
      sum[static_cast<size_t>(c)] += v;
      sumsq[static_cast<size_t>(c)] += v * v;
    }
  for (int64_t c = 0; c < C; ++c)
    bn_nhwc_finish_stats(p, c, sum[static_cast<size_t>(c)], sumsq[static_cast<size_t>(c)], weight,
                         bias, running_mean, running_var, save_mean, save_invstd, coef);
  for (int64_t r = 0; r < p.rows; ++r)
    for (int64_t c = 0; c < C; ++c) {
      const int64_t i = r * C + c;
      y[i] = bf16_bits(bn_nhwc_value(bf16_to_float(x[i]), coef[c], coef[C + c],
                                     residual ? residual + i : nullptr, p.relu));
    }
}

void batch_norm_nhwc_backward(const BatchNormNhwcParams& p, const uint16_t* x, const uint16_t* y,
                              const float* weight, const float* save_mean,
                              const float* save_invstd, const uint16_t* grad_y, uint16_t* grad_x,
                              float* grad_weight, float* grad_bias, uint16_t* grad_residual,
                              float* coef) {
  const int64_t C = p.channels;
  if (grad_residual)
    for (int64_t i = 0; i < p.rows * C; ++i)
      grad_residual[i] = bf16_bits(bn_nhwc_dz(y[i], grad_y[i], p.relu));
  if (!grad_x && !grad_weight && !grad_bias) return;
  std::vector<double> sum(static_cast<size_t>(C), 0.0), sum_xc(static_cast<size_t>(C), 0.0);
  for (int64_t r = 0; r < p.rows; ++r)
    for (int64_t c = 0; c < C; ++c) {
      const int64_t i = r * C + c;
      const double dz = bn_nhwc_dz(y[i], grad_y[i], p.relu);
      sum[static_cast<size_t>(c)] += dz;
      sum_xc[static_cast<size_t>(c)] +=
          dz * (static_cast<double>(bf16_to_float(x[i])) - static_cast<double>(save_mean[c]));
    }
  for (int64_t c = 0; c < C; ++c)
    bn_nhwc_finish_grads(p, c, sum[static_cast<size_t>(c)], sum_xc[static_cast<size_t>(c)], weight,
                         save_invstd, grad_weight, grad_bias, coef);
  if (!grad_x) return;
  for (int64_t r = 0; r < p.rows; ++r)
    for (int64_t c = 0; c < C; ++c) {
      const int64_t i = r * C + c;
      grad_x[i] = bf16_bits(bn_nhwc_grad_x(bn_nhwc_dz(y[i], grad_y[i], p.relu),
                                           bf16_to_float(x[i]), save_mean[c], coef[c],
                                           coef[C + c], coef[2 * C + c]));
    }
}

void add_bf16(const uint16_t* a, const uint16_t* b, uint16_t* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = bf16_bits(bf16_to_float(a[i]) + bf16_to_float(b[i]));
}

}  // namespace caption::kernels::cpu
