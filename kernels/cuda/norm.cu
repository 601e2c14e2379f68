// Batch-norm kernels (see norm.h). Per channel, one block: two passes for the statistics
// (the mean, then centred squares, so no cancellation) in double, then one element pass
// over the planes. The backward: one block per channel for the two sums, then one element
// pass. The per-channel coefficients are computed in double exactly as the CPU kernels
// compute them, then rounded to float, so the element passes agree with the CPU to the
// last bit whenever the sums do.
#include "kernels/cuda/norm.h"

#include "kernels/cuda/common.cuh"

namespace caption::kernels::cuda {

namespace {

constexpr int kChannelBlock = 512;

// Sum over one channel of f(b, s) for x [B, C, S]: each thread takes a fixed subset of
// the channel's B*S values, then the block's fixed tree combines them. Planes at least
// a block wide are walked plane by plane (thread t takes s = t, t + blockDim, ... of
// every plane: no division per value); smaller ones as one flat range (positions t,
// t + blockDim, ...), so that the block's threads stay busy.
template <typename F>
__device__ double channel_sum(int64_t B, int64_t S, F f, double* scratch) {
  double acc = 0;
  if (S >= static_cast<int64_t>(blockDim.x)) {
    for (int64_t b = 0; b < B; ++b)
      for (int64_t s = threadIdx.x; s < S; s += blockDim.x) acc += f(b, s);
  } else {
    const int64_t n = B * S;
    for (int64_t k = threadIdx.x; k < n; k += blockDim.x) {
      const int64_t b = k / S, s = k - b * S;
      acc += f(b, s);
    }
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

// The element passes run over planes: blockIdx.x walks the B*C planes (b, c) of S
// values, blockIdx.y and the threads the plane's values, so the channel is known per
// block and no element pays for the 64-bit divisions that (i / S) % C would cost (GPUs
// have no integer divider: each is a few dozen instructions, more than the element's
// memory traffic at full bandwidth).
dim3 plane_grid(int64_t planes, int64_t S) {
  const int64_t per_plane = (S + kBlock - 1) / kBlock;
  return dim3(static_cast<unsigned>(planes < kMaxBlocks ? planes : kMaxBlocks),
              static_cast<unsigned>(per_plane < 64 ? per_plane : 64));
}

__global__ void bn_forward_apply(int64_t planes, int64_t C, int64_t S, const float* x,
                                 const float* coef, float* y) {
  for (int64_t plane = blockIdx.x; plane < planes; plane += gridDim.x) {
    const int64_t c = plane % C;
    const float scale = coef[c], shift = coef[C + c];
    const float* xp = x + plane * S;
    float* yp = y + plane * S;
    for (int64_t s = static_cast<int64_t>(blockIdx.y) * blockDim.x + threadIdx.x; s < S;
         s += static_cast<int64_t>(gridDim.y) * blockDim.x)
      yp[s] = xp[s] * scale + shift;
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

__global__ void bn_backward_dx(int64_t planes, int64_t C, int64_t S, const float* x,
                               const float* save_mean, const float* grad_y, const float* coef,
                               float* grad_x) {
  for (int64_t plane = blockIdx.x; plane < planes; plane += gridDim.x) {
    const int64_t c = plane % C;
    const float k = coef[c], mean_dy = coef[C + c], proj = coef[2 * C + c], mean = save_mean[c];
    const int64_t base = plane * S;
    for (int64_t s = static_cast<int64_t>(blockIdx.y) * blockDim.x + threadIdx.x; s < S;
         s += static_cast<int64_t>(gridDim.y) * blockDim.x) {
      const int64_t i = base + s;
      grad_x[i] = k * (grad_y[i] - mean_dy - (x[i] - mean) * proj);
    }
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
  const int64_t planes = p.batch * p.channels;
  if (planes == 0 || p.plane == 0) return;
  bn_forward_apply<<<plane_grid(planes, p.plane), kBlock, 0, stream>>>(planes, p.channels, p.plane,
                                                                       x, workspace, y);
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
  const int64_t planes = p.batch * p.channels;
  if (!grad_x || planes == 0 || p.plane == 0) return;
  bn_backward_dx<<<plane_grid(planes, p.plane), kBlock, 0, stream>>>(
      planes, p.channels, p.plane, x, save_mean, grad_y, workspace, grad_x);
  CAPTION_CUDA_LAUNCH_CHECK("bn_backward_dx");
}

}  // namespace caption::kernels::cuda
