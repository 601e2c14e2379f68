// Batch-norm kernels (see norm.h). Per channel, one block: two passes for the statistics
// (the mean, then centred squares, so no cancellation) in double, then one grid-wide
// element pass. The backward: one block per channel for the two sums, then one element
// pass. The per-channel coefficients are computed in double exactly as the CPU kernels
// compute them, then rounded to float, so the element passes agree with the CPU to the
// last bit whenever the sums do.
#include "kernels/cuda/norm.h"

#include "kernels/cuda/common.cuh"

namespace caption::kernels::cuda {

namespace {

constexpr int kChannelBlock = 512;

// Sum over one channel of f(value index) for x [B, C, S]: thread t takes the flat
// positions t, t + blockDim, ... of the channel's B*S values (fixed subsets), then the
// block's fixed tree combines them.
template <typename F>
__device__ double channel_sum(int64_t B, int64_t S, F f, double* scratch) {
  double acc = 0;
  const int64_t n = B * S;
  for (int64_t k = threadIdx.x; k < n; k += blockDim.x) {
    const int64_t b = k / S, s = k - b * S;
    acc += f(b, s);
  }
  return block_sum_all(acc, scratch);
}

// Workspace layout: coef[0:C] = scale (w * invstd), coef[C:2C] = shift (b - mean*scale).
__global__ void bn_forward_stats(BatchNorm2dParams p, const float* x, const float* weight,
                                 const float* bias, float* running_mean, float* running_var,
                                 float* save_mean, float* save_invstd, float* coef) {
  __shared__ double scratch[32];
  const int64_t c = blockIdx.x, C = p.channels, S = p.plane, B = p.batch;
  const double n = static_cast<double>(B * S);
  const float* xc = x + c * S;  // + b * C * S
  double mean, var;
  if (p.mode == BatchNormMode::Train) {
    const double sum = channel_sum(B, S, [&](int64_t b, int64_t s) {
      return static_cast<double>(xc[b * C * S + s]);
    }, scratch);
    mean = sum / n;
    const double sq = channel_sum(B, S, [&](int64_t b, int64_t s) {
      const double d = static_cast<double>(xc[b * C * S + s]) - mean;
      return d * d;
    }, scratch);
    var = sq / n;
    if (threadIdx.x == 0) {
      if (running_mean)
        running_mean[c] = static_cast<float>((1 - p.momentum) * running_mean[c] + p.momentum * mean);
      if (running_var)
        running_var[c] = static_cast<float>((1 - p.momentum) * running_var[c] +
                                            p.momentum * (sq / (n - 1)));
    }
  } else {
    mean = running_mean[c];
    var = running_var[c];
  }
  if (threadIdx.x == 0) {
    const double invstd = 1.0 / sqrt(var + p.eps);
    save_mean[c] = static_cast<float>(mean);
    save_invstd[c] = static_cast<float>(invstd);
    const double scale = (weight ? static_cast<double>(weight[c]) : 1.0) * invstd;
    coef[c] = static_cast<float>(scale);
    coef[C + c] = static_cast<float>((bias ? static_cast<double>(bias[c]) : 0.0) - mean * scale);
  }
}

__global__ void bn_forward_apply(int64_t n, int64_t C, int64_t S, const float* x,
                                 const float* coef, float* y) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) {
    const int64_t c = (i / S) % C;
    y[i] = x[i] * coef[c] + coef[C + c];
  }
}

// Workspace layout: coef[0:C] = k (w * invstd), coef[C:2C] = mean of dy (train),
// coef[2C:3C] = proj (invstd^2 * sum(dy * (x - mean)) / n, train).
__global__ void bn_backward_sums(BatchNorm2dParams p, const float* x, const float* weight,
                                 const float* save_mean, const float* save_invstd,
                                 const float* grad_y, float* grad_weight, float* grad_bias,
                                 bool need_sums, bool want_dx, float* coef) {
  __shared__ double scratch[32];
  const int64_t c = blockIdx.x, C = p.channels, S = p.plane, B = p.batch;
  const double n = static_cast<double>(B * S);
  const double mean = save_mean[c], invstd = save_invstd[c];
  const bool train = p.mode == BatchNormMode::Train;
  double sum_dy = 0, sum_dy_xc = 0;
  if (need_sums) {
    const float* xc = x + c * S;
    const float* gc = grad_y + c * S;
    sum_dy = channel_sum(B, S, [&](int64_t b, int64_t s) {
      return static_cast<double>(gc[b * C * S + s]);
    }, scratch);
    sum_dy_xc = channel_sum(B, S, [&](int64_t b, int64_t s) {
      const int64_t at = b * C * S + s;
      return static_cast<double>(gc[at]) * (static_cast<double>(xc[at]) - mean);
    }, scratch);
  }
  if (threadIdx.x != 0) return;
  if (grad_weight) grad_weight[c] = static_cast<float>(sum_dy_xc * invstd);
  if (grad_bias) grad_bias[c] = static_cast<float>(sum_dy);
  if (!want_dx) return;
  const double w = weight ? static_cast<double>(weight[c]) : 1.0;
  coef[c] = static_cast<float>(w * invstd);
  coef[C + c] = static_cast<float>(train ? sum_dy / n : 0.0);
  coef[2 * C + c] = static_cast<float>(train ? invstd * invstd * sum_dy_xc / n : 0.0);
}

__global__ void bn_backward_dx(int64_t n, int64_t C, int64_t S, const float* x,
                               const float* save_mean, const float* grad_y, const float* coef,
                               float* grad_x) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) {
    const int64_t c = (i / S) % C;
    grad_x[i] = coef[c] * (grad_y[i] - coef[C + c] - (x[i] - save_mean[c]) * coef[2 * C + c]);
  }
}

}  // namespace

void batch_norm2d_forward(const BatchNorm2dParams& p, const float* x, const float* weight,
                          const float* bias, float* running_mean, float* running_var, float* y,
                          float* save_mean, float* save_invstd, float* workspace,
                          cudaStream_t stream) {
  if (p.channels == 0) return;
  bn_forward_stats<<<static_cast<unsigned>(p.channels), kChannelBlock, 0, stream>>>(
      p, x, weight, bias, running_mean, running_var, save_mean, save_invstd, workspace);
  CAPTION_CUDA_LAUNCH_CHECK("bn_forward_stats");
  const int64_t n = p.batch * p.channels * p.plane;
  if (n == 0) return;
  bn_forward_apply<<<grid_for(n), kBlock, 0, stream>>>(n, p.channels, p.plane, x, workspace, y);
  CAPTION_CUDA_LAUNCH_CHECK("bn_forward_apply");
}

void batch_norm2d_backward(const BatchNorm2dParams& p, const float* x, const float* weight,
                           const float* save_mean, const float* save_invstd, const float* grad_y,
                           float* grad_x, float* grad_weight, float* grad_bias, float* workspace,
                           cudaStream_t stream) {
  if (p.channels == 0) return;
  const bool train = p.mode == BatchNormMode::Train;
  const bool need_sums = grad_weight || grad_bias || (grad_x && train);
  if (!need_sums && !grad_x) return;
  bn_backward_sums<<<static_cast<unsigned>(p.channels), kChannelBlock, 0, stream>>>(
      p, x, weight, save_mean, save_invstd, grad_y, grad_weight, grad_bias, need_sums,
      grad_x != nullptr, workspace);
  CAPTION_CUDA_LAUNCH_CHECK("bn_backward_sums");
  const int64_t n = p.batch * p.channels * p.plane;
  if (!grad_x || n == 0) return;
  bn_backward_dx<<<grid_for(n), kBlock, 0, stream>>>(n, p.channels, p.plane, x, save_mean, grad_y,
                                                     workspace, grad_x);
  CAPTION_CUDA_LAUNCH_CHECK("bn_backward_dx");
}

}  // namespace caption::kernels::cuda
