// The per-element arithmetic of the CUDA pooling kernels, shared by host and device code
// (CAPTION_POOL_HD is __host__ __device__ under nvcc, inline elsewhere), so that the
// gathering backwards the GPU runs are unit-tested on the CPU against the CPU kernels'
// scatters (tests/kernels/pool_math_test.cpp).
//
// - max_pool_window() / max_pool_output(): one output's maximum and index (ties keep the
//   first in scan order, a NaN wins), as kernels/cpu/pool.cpp's indexed path; the window
//   form reads through a loader, so the NHWC bfloat16 pooling (kernels/cpu/nhwc.h) runs
//   the same scan.
// - max_pool_gather(): one input pixel's gradient, the sum of grad_y over the outputs
//   whose saved maximum is that pixel (max_pool_windows_of() visits them; the NHWC
//   pooling's backward visits the same way). Those outputs satisfy oh*stride - pad +
//   ki*dilation == h for some tap ki, so at most kernel_h x kernel_w are visited, in a
//   fixed order: no atomics.
// - adaptive_avg_output() / adaptive_avg_gather(): a bin's mean, and one pixel's share
//   of every bin that holds it. Bin starts grow with the bin index, and bin i ends past
//   row h exactly when (i + 1) * H > h * Ho, so the first bin holding h is
//   floor(h * Ho / H) and the walk stops at the first bin that starts past h.
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/cpu/pool.h"

#if defined(__CUDACC__)
#define CAPTION_POOL_HD __host__ __device__ __forceinline__
#else
#define CAPTION_POOL_HD inline
#endif

namespace caption::kernels {

using cpu::AdaptiveAvgPool2dParams;
using cpu::MaxPool2dParams;

CAPTION_POOL_HD int64_t adaptive_bin_start(int64_t i, int64_t in, int64_t out) {
  return i * in / out;
}
CAPTION_POOL_HD int64_t adaptive_bin_end(int64_t i, int64_t in, int64_t out) {
  return ((i + 1) * in + out - 1) / out;
}

// One output's window over the values load(h, w) of an [H, W] plane (of any layout and
// element type); writes the maximum and returns its index h * W + w (-1 when the window
// lies wholly in the padding, the value then -inf).
template <typename Load>
CAPTION_POOL_HD int64_t max_pool_window(const MaxPool2dParams& p, int64_t oh, int64_t ow,
                                        const Load& load, float* value) {
  const int64_t H = p.in_h, W = p.in_w;
  const int64_t h0 = oh * p.stride_h - p.pad_h, w0 = ow * p.stride_w - p.pad_w;
  float best = -INFINITY;
  int64_t best_index = -1;
  for (int64_t ki = 0; ki < p.kernel_h; ++ki) {
    const int64_t h = h0 + ki * p.dilation_h;
    if (h < 0 || h >= H) continue;
    for (int64_t kj = 0; kj < p.kernel_w; ++kj) {
      const int64_t w = w0 + kj * p.dilation_w;
      if (w < 0 || w >= W) continue;
      const float v = load(h, w);
      if (best_index < 0 || v > best || v != v) {  // v != v: NaN, on host and device
        best = v;
        best_index = h * W + w;
      }
    }
  }
  *value = best;
  return best_index;
}

// xp is one plane [H, W] of float32.
CAPTION_POOL_HD int64_t max_pool_output(const MaxPool2dParams& p, const float* xp, int64_t oh,
                                        int64_t ow, float* value) {
  const int64_t W = p.in_w;
  return max_pool_window(p, oh, ow, [&](int64_t h, int64_t w) { return xp[h * W + w]; }, value);
}

// Visits, in a fixed order, every output o = oh * Wo + ow whose window holds input pixel
// (h, w): visit(o, self) with self = h * W + w, the index a maximum there would have.
template <typename Visit>
CAPTION_POOL_HD void max_pool_windows_of(const MaxPool2dParams& p, int64_t h, int64_t w,
                                         const Visit& visit) {
  const int64_t Ho = p.out_h, Wo = p.out_w, self = h * p.in_w + w;
  for (int64_t ki = 0; ki < p.kernel_h; ++ki) {
    const int64_t th = h + p.pad_h - ki * p.dilation_h;
    if (th < 0 || th % p.stride_h != 0 || th / p.stride_h >= Ho) continue;
    const int64_t oh = th / p.stride_h;
    for (int64_t kj = 0; kj < p.kernel_w; ++kj) {
      const int64_t tw = w + p.pad_w - kj * p.dilation_w;
      if (tw < 0 || tw % p.stride_w != 0 || tw / p.stride_w >= Wo) continue;
      visit(oh * Wo + tw / p.stride_w, self);
    }
  }
}

// ip and gy are one plane's indices and gradients [Ho, Wo].
CAPTION_POOL_HD float max_pool_gather(const MaxPool2dParams& p, const int64_t* ip,
                                      const float* gy, int64_t h, int64_t w) {
  float acc = 0.f;
  max_pool_windows_of(p, h, w, [&](int64_t o, int64_t self) {
    if (ip[o] == self) acc += gy[o];
  });
  return acc;
}

CAPTION_POOL_HD float adaptive_avg_output(const AdaptiveAvgPool2dParams& p, const float* xp,
                                          int64_t oh, int64_t ow) {
  const int64_t H = p.in_h, W = p.in_w;
  const int64_t h0 = adaptive_bin_start(oh, H, p.out_h), h1 = adaptive_bin_end(oh, H, p.out_h);
  const int64_t w0 = adaptive_bin_start(ow, W, p.out_w), w1 = adaptive_bin_end(ow, W, p.out_w);
  float acc = 0.f;
  for (int64_t h = h0; h < h1; ++h)
    for (int64_t w = w0; w < w1; ++w) acc += xp[h * W + w];
  return acc / static_cast<float>((h1 - h0) * (w1 - w0));
}

CAPTION_POOL_HD float adaptive_avg_gather(const AdaptiveAvgPool2dParams& p, const float* gy,
                                          int64_t h, int64_t w) {
  const int64_t H = p.in_h, W = p.in_w, Ho = p.out_h, Wo = p.out_w;
  float acc = 0.f;
  for (int64_t oh = h * Ho / H; oh < Ho && adaptive_bin_start(oh, H, Ho) <= h; ++oh) {
    const int64_t h0 = adaptive_bin_start(oh, H, Ho), h1 = adaptive_bin_end(oh, H, Ho);
    if (h >= h1) continue;
    for (int64_t ow = w * Wo / W; ow < Wo && adaptive_bin_start(ow, W, Wo) <= w; ++ow) {
      const int64_t w0 = adaptive_bin_start(ow, W, Wo), w1 = adaptive_bin_end(ow, W, Wo);
      if (w >= w1) continue;
      acc += gy[oh * Wo + ow] / static_cast<float>((h1 - h0) * (w1 - w0));
    }
  }
  return acc;
}

}  // namespace caption::kernels
