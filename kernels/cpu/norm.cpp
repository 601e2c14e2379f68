// Batch-norm kernels (see norm.h). Each channel is handled on its own: two passes over
// its B planes for the statistics (mean, then centred squares: no cancellation) and one
// to write y; the backward makes one pass for the two sums and one for grad_x.
#include "kernels/cpu/norm.h"

#include <cmath>

namespace caption::kernels::cpu {

template <typename T>
void batch_norm2d_forward(const BatchNorm2dParams& p, const T* x, const T* weight, const T* bias,
                          T* running_mean, T* running_var, T* y, T* save_mean, T* save_invstd) {
  const int64_t B = p.batch, C = p.channels, S = p.plane;
  const double n = static_cast<double>(B * S);
  for (int64_t c = 0; c < C; ++c) {
    double mean, var;
    if (p.mode == BatchNormMode::Train) {
      double sum = 0;
      for (int64_t b = 0; b < B; ++b) {
        const T* xc = x + (b * C + c) * S;
        for (int64_t s = 0; s < S; ++s) sum += xc[s];
      }
      mean = sum / n;
      double sq = 0;
      for (int64_t b = 0; b < B; ++b) {
        const T* xc = x + (b * C + c) * S;
        for (int64_t s = 0; s < S; ++s) {
          const double d = xc[s] - mean;
          sq += d * d;
        }
      }
      var = sq / n;
      if (running_mean) {
        running_mean[c] = static_cast<T>((1 - p.momentum) * running_mean[c] + p.momentum * mean);
      }
      if (running_var) {
        // The op layer refuses n == 1 in Train mode, so n - 1 > 0.
        const double unbiased = sq / (n - 1);
        running_var[c] = static_cast<T>((1 - p.momentum) * running_var[c] + p.momentum * unbiased);
      }
    } else {
      mean = running_mean[c];
      var = running_var[c];
    }
    const double invstd = 1.0 / std::sqrt(var + p.eps);
    save_mean[c] = static_cast<T>(mean);
    save_invstd[c] = static_cast<T>(invstd);
    // y = x * scale + shift, folded per channel.
    const double scale = (weight ? static_cast<double>(weight[c]) : 1.0) * invstd;
    const T s_t = static_cast<T>(scale);
    const T shift = static_cast<T>((bias ? static_cast<double>(bias[c]) : 0.0) - mean * scale);
    for (int64_t b = 0; b < B; ++b) {
      const T* xc = x + (b * C + c) * S;
      T* yc = y + (b * C + c) * S;
      for (int64_t s = 0; s < S; ++s) yc[s] = xc[s] * s_t + shift;
    }
  }
}

template <typename T>
void batch_norm2d_backward(const BatchNorm2dParams& p, const T* x, const T* weight,
                           const T* save_mean, const T* save_invstd, const T* grad_y, T* grad_x,
                           T* grad_weight, T* grad_bias) {
  const int64_t B = p.batch, C = p.channels, S = p.plane;
  const double n = static_cast<double>(B * S);
  for (int64_t c = 0; c < C; ++c) {
    const double mean = save_mean[c], invstd = save_invstd[c];
    const double w = weight ? static_cast<double>(weight[c]) : 1.0;
    // sum_dy = sum grad_y, sum_dy_xhat = sum grad_y * xhat with xhat = (x - mean) * invstd.
    double sum_dy = 0, sum_dy_xc = 0;
    const bool train = p.mode == BatchNormMode::Train;
    if (grad_weight || grad_bias || (grad_x && train)) {
      for (int64_t b = 0; b < B; ++b) {
        const T* xc = x + (b * C + c) * S;
        const T* gy = grad_y + (b * C + c) * S;
        for (int64_t s = 0; s < S; ++s) {
          sum_dy += gy[s];
          sum_dy_xc += gy[s] * (xc[s] - mean);
        }
      }
    }
    const double sum_dy_xhat = sum_dy_xc * invstd;
    if (grad_weight) grad_weight[c] = static_cast<T>(sum_dy_xhat);
    if (grad_bias) grad_bias[c] = static_cast<T>(sum_dy);
    if (!grad_x) continue;
    // Train: dx = w*invstd * (dy - sum_dy/n - xhat * sum_dy_xhat/n), the batch statistics
    // being functions of x. Eval: dx = w*invstd * dy.
    const T k = static_cast<T>(w * invstd);
    const T mean_dy = static_cast<T>(train ? sum_dy / n : 0.0);
    // xhat * sum_dy_xhat / n = (x - mean) * proj with proj = invstd^2 * sum_dy_xc / n.
    const T proj = static_cast<T>(train ? invstd * invstd * sum_dy_xc / n : 0.0);
    const T mean_t = static_cast<T>(mean);
    for (int64_t b = 0; b < B; ++b) {
      const T* xc = x + (b * C + c) * S;
      const T* gy = grad_y + (b * C + c) * S;
      T* gx = grad_x + (b * C + c) * S;
      for (int64_t s = 0; s < S; ++s) gx[s] = k * (gy[s] - mean_dy - (xc[s] - mean_t) * proj);
    }
  }
}

template void batch_norm2d_forward<float>(const BatchNorm2dParams&, const float*, const float*,
                                          const float*, float*, float*, float*, float*, float*);
template void batch_norm2d_forward<double>(const BatchNorm2dParams&, const double*,
                                           const double*, const double*, double*, double*,
                                           double*, double*, double*);
template void batch_norm2d_backward<float>(const BatchNorm2dParams&, const float*, const float*,
                                           const float*, const float*, const float*, float*,
                                           float*, float*);
template void batch_norm2d_backward<double>(const BatchNorm2dParams&, const double*,
                                            const double*, const double*, const double*,
                                            const double*, double*, double*, double*);

}  // namespace caption::kernels::cpu
