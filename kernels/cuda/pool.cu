// Pooling kernels (see pool.h): one thread per output for the forwards, one thread per
// input for the gathering backwards; the per-element arithmetic is kernels/pool_math.h,
// which the CPU tests run too.
#include "kernels/cuda/pool.h"

#include "kernels/cuda/common.cuh"
#include "kernels/pool_math.h"

namespace caption::kernels::cuda {

namespace {

__global__ void max_pool_forward_kernel(MaxPool2dParams p, const float* x, float* y,
                                        int64_t* indices) {
  const int64_t Ho = p.out_h, Wo = p.out_w, n = p.planes * Ho * Wo;
  for (int64_t i = global_thread(); i < n; i += grid_threads()) {
    const int64_t ow = i % Wo, oh = (i / Wo) % Ho, pl = i / (Wo * Ho);
    float best;
    const int64_t at = max_pool_output(p, x + pl * p.in_h * p.in_w, oh, ow, &best);
    y[i] = best;
    if (indices) indices[i] = at;
  }
}

__global__ void max_pool_backward_kernel(MaxPool2dParams p, const int64_t* indices,
                                         const float* grad_y, float* grad_x) {
  const int64_t H = p.in_h, W = p.in_w, out_plane = p.out_h * p.out_w, n = p.planes * H * W;
  for (int64_t i = global_thread(); i < n; i += grid_threads()) {
    const int64_t w = i % W, h = (i / W) % H, pl = i / (W * H);
    grad_x[i] = max_pool_gather(p, indices + pl * out_plane, grad_y + pl * out_plane, h, w);
  }
}

__global__ void adaptive_avg_forward_kernel(AdaptiveAvgPool2dParams p, const float* x,
                                            float* y) {
  const int64_t Ho = p.out_h, Wo = p.out_w, n = p.planes * Ho * Wo;
  for (int64_t i = global_thread(); i < n; i += grid_threads()) {
    const int64_t ow = i % Wo, oh = (i / Wo) % Ho, pl = i / (Wo * Ho);
    y[i] = adaptive_avg_output(p, x + pl * p.in_h * p.in_w, oh, ow);
  }
}

__global__ void adaptive_avg_backward_kernel(AdaptiveAvgPool2dParams p, const float* grad_y,
                                             float* grad_x) {
  const int64_t H = p.in_h, W = p.in_w, out_plane = p.out_h * p.out_w, n = p.planes * H * W;
  for (int64_t i = global_thread(); i < n; i += grid_threads()) {
    const int64_t w = i % W, h = (i / W) % H, pl = i / (W * H);
    grad_x[i] = adaptive_avg_gather(p, grad_y + pl * out_plane, h, w);
  }
}

}  // namespace

void max_pool2d_forward(const MaxPool2dParams& p, const float* x, float* y, int64_t* indices,
                        cudaStream_t stream) {
  const int64_t n = p.planes * p.out_h * p.out_w;
  if (n == 0) return;
  max_pool_forward_kernel<<<grid_for(n), kBlock, 0, stream>>>(p, x, y, indices);
  CAPTION_CUDA_LAUNCH_CHECK("max_pool_forward_kernel");
}

void max_pool2d_backward(const MaxPool2dParams& p, const int64_t* indices, const float* grad_y,
                         float* grad_x, cudaStream_t stream) {
  const int64_t n = p.planes * p.in_h * p.in_w;
  if (n == 0) return;
  max_pool_backward_kernel<<<grid_for(n), kBlock, 0, stream>>>(p, indices, grad_y, grad_x);
  CAPTION_CUDA_LAUNCH_CHECK("max_pool_backward_kernel");
}

void adaptive_avg_pool2d_forward(const AdaptiveAvgPool2dParams& p, const float* x, float* y,
                                 cudaStream_t stream) {
  const int64_t n = p.planes * p.out_h * p.out_w;
  if (n == 0) return;
  adaptive_avg_forward_kernel<<<grid_for(n), kBlock, 0, stream>>>(p, x, y);
  CAPTION_CUDA_LAUNCH_CHECK("adaptive_avg_forward_kernel");
}

void adaptive_avg_pool2d_backward(const AdaptiveAvgPool2dParams& p, const float* grad_y,
                                  float* grad_x, cudaStream_t stream) {
  const int64_t n = p.planes * p.in_h * p.in_w;
  if (n == 0) return;
  adaptive_avg_backward_kernel<<<grid_for(n), kBlock, 0, stream>>>(p, grad_y, grad_x);
  CAPTION_CUDA_LAUNCH_CHECK("adaptive_avg_backward_kernel");
}

}  // namespace caption::kernels::cuda
