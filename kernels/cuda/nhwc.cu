// CUDA kernels of the NHWC bfloat16 inference ops (see nhwc.h).
#include "kernels/cuda/nhwc.h"

#include "engine/error.h"
#include "kernels/bf16.h"
#include "kernels/cuda/common.cuh"
#include "kernels/pool_math.h"

namespace caption::kernels::cuda {

namespace {

__device__ __forceinline__ float epilogue_value(float v, const float* bias, int64_t c,
                                                const uint16_t* residual, int64_t i, bool relu) {
  if (bias) v += bias[c];
  if (residual) v += bf16_to_float(residual[i]);
  if (relu && v < 0.f) v = 0.f;
  return v;
}

// One thread per pair of channels (channels even, the common case): 4-byte loads and
// stores of two bfloat16 values.
__global__ void epilogue_pairs_kernel(uint16_t* y, const float* bias, const uint16_t* residual,
                                      int64_t pairs, int64_t channels, bool relu) {
  for (int64_t k = global_thread(); k < pairs; k += grid_threads()) {
    const int64_t i = 2 * k, c = i % channels;
    const uint32_t packed = reinterpret_cast<const uint32_t*>(y)[k];
    const float lo = epilogue_value(bf16_to_float(static_cast<uint16_t>(packed & 0xffffu)), bias,
                                    c, residual, i, relu);
    const float hi = epilogue_value(bf16_to_float(static_cast<uint16_t>(packed >> 16)), bias,
                                    c + 1, residual, i + 1, relu);
    reinterpret_cast<uint32_t*>(y)[k] =
        static_cast<uint32_t>(bf16_bits(lo)) | (static_cast<uint32_t>(bf16_bits(hi)) << 16);
  }
}

__global__ void epilogue_kernel(uint16_t* y, const float* bias, const uint16_t* residual,
                                int64_t n, int64_t channels, bool relu) {
  for (int64_t i = global_thread(); i < n; i += grid_threads())
    y[i] = bf16_bits(epilogue_value(bf16_to_float(y[i]), bias, i % channels, residual, i, relu));
}

// One thread per packed weight, channels fastest (coalesced writes; the reads of a 3x3
// filter stride over its taps, which the cache absorbs); the first O threads also write
// the biases. Each thread recomputes its channel's scale (a few double operations).
__global__ void fold_pack_kernel(cpu::FoldPackParams p, const float* w, const float* conv_bias,
                                 const float* gamma, const float* beta, const float* mean,
                                 const float* var, uint16_t* w16, float* bias) {
  const int64_t C = p.in_channels, Cp = p.channels_out, R = p.taps;
  const int64_t n = p.out_channels * R * Cp;
  for (int64_t i = global_thread(); i < n; i += grid_threads()) {
    const int64_t c = i % Cp, r = (i / Cp) % R, o = i / (Cp * R);
    const cpu::FoldScale f = cpu::fold_scale(gamma, beta, mean, var, o, p.eps);
    w16[i] = c < C ? bf16_bits(cpu::fold_apply(w[(o * C + c) * R + r], f.scale, 0.f)) : 0;
    if (i < p.out_channels) {
      const cpu::FoldScale g = cpu::fold_scale(gamma, beta, mean, var, i, p.eps);
      bias[i] = cpu::fold_apply(conv_bias ? conv_bias[i] : 0.f, g.scale, g.shift);
    }
  }
}

// One thread per output element, channels fastest (coalesced reads and writes).
__global__ void max_pool_nhwc_kernel(cpu::MaxPoolNhwcParams p, const uint16_t* x, uint16_t* y) {
  const cpu::MaxPool2dParams& g = p.g;
  const int64_t C = p.channels, n = g.planes * g.out_h * g.out_w * C;
  for (int64_t i = global_thread(); i < n; i += grid_threads()) {
    const int64_t c = i % C, ow = (i / C) % g.out_w, oh = (i / (C * g.out_w)) % g.out_h;
    const int64_t b = i / (C * g.out_w * g.out_h);
    const uint16_t* xb = x + b * g.in_h * g.in_w * C;
    float best;
    max_pool_window(
        g, oh, ow,
        [&](int64_t h, int64_t w) { return bf16_to_float(xb[(h * g.in_w + w) * C + c]); },
        &best);
    y[i] = bf16_bits(best);
  }
}

}  // namespace

void conv_nhwc_epilogue(uint16_t* y, const float* bias, const uint16_t* residual, int64_t rows,
                        int64_t channels, bool relu, cudaStream_t stream) {
  const int64_t n = rows * channels;
  if (n == 0 || (!bias && !residual && !relu)) return;
  const bool aligned = reinterpret_cast<uintptr_t>(y) % 4 == 0;
  if (channels % 2 == 0 && aligned) {
    epilogue_pairs_kernel<<<grid_for(n / 2), kBlock, 0, stream>>>(y, bias, residual, n / 2,
                                                                  channels, relu);
    CAPTION_CUDA_LAUNCH_CHECK("conv_nhwc epilogue_pairs_kernel");
    return;
  }
  epilogue_kernel<<<grid_for(n), kBlock, 0, stream>>>(y, bias, residual, n, channels, relu);
  CAPTION_CUDA_LAUNCH_CHECK("conv_nhwc epilogue_kernel");
}

void fold_pack_nhwc(const cpu::FoldPackParams& p, const float* w, const float* conv_bias,
                    const float* gamma, const float* beta, const float* mean, const float* var,
                    uint16_t* w16, float* bias, cudaStream_t stream) {
  const int64_t n = p.out_channels * p.taps * p.channels_out;
  if (n == 0) return;
  fold_pack_kernel<<<grid_for(n), kBlock, 0, stream>>>(p, w, conv_bias, gamma, beta, mean, var, w16,
                                                       bias);
  CAPTION_CUDA_LAUNCH_CHECK("fold_pack_kernel");
}

void max_pool_nhwc_bf16(const cpu::MaxPoolNhwcParams& p, const uint16_t* x, uint16_t* y,
                        cudaStream_t stream) {
  const int64_t n = p.g.planes * p.g.out_h * p.g.out_w * p.channels;
  if (n == 0) return;
  max_pool_nhwc_kernel<<<grid_for(n), kBlock, 0, stream>>>(p, x, y);
  CAPTION_CUDA_LAUNCH_CHECK("max_pool_nhwc_kernel");
}

}  // namespace caption::kernels::cuda
