// CUDA kernels of the NHWC bfloat16 ops (see nhwc.h).
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
__global__ void max_pool_nhwc_kernel(cpu::MaxPoolNhwcParams p, const uint16_t* x, uint16_t* y,
                                     int32_t* indices) {
  const cpu::MaxPool2dParams& g = p.g;
  const int64_t C = p.channels, n = g.planes * g.out_h * g.out_w * C;
  for (int64_t i = global_thread(); i < n; i += grid_threads()) {
    const int64_t c = i % C, ow = (i / C) % g.out_w, oh = (i / (C * g.out_w)) % g.out_h;
    const int64_t b = i / (C * g.out_w * g.out_h);
    const uint16_t* xb = x + b * g.in_h * g.in_w * C;
    float best;
    const int64_t index = max_pool_window(
        g, oh, ow,
        [&](int64_t h, int64_t w) { return bf16_to_float(xb[(h * g.in_w + w) * C + c]); },
        &best);
    y[i] = bf16_bits(best);
    if (indices) indices[i] = static_cast<int32_t>(index);
  }
}

// One thread per input element, channels fastest: its gradient gathered from the outputs
// whose windows hold it (no atomics).
__global__ void max_pool_nhwc_backward_kernel(cpu::MaxPoolNhwcParams p, const int32_t* indices,
                                              const uint16_t* grad_y, uint16_t* grad_x) {
  const cpu::MaxPool2dParams& g = p.g;
  const int64_t C = p.channels, n = g.planes * g.in_h * g.in_w * C;
  const int64_t out_image = g.out_h * g.out_w * C;
  for (int64_t i = global_thread(); i < n; i += grid_threads()) {
    const int64_t c = i % C, w = (i / C) % g.in_w, h = (i / (C * g.in_w)) % g.in_h;
    const int64_t b = i / (C * g.in_w * g.in_h);
    grad_x[i] = bf16_bits(
        cpu::max_pool_nhwc_gather(p, indices + b * out_image, grad_y + b * out_image, h, w, c));
  }
}

// ---- Training-mode batch norm ----------------------------------------------------------
//
// Statistics and gradient sums: a [chunks, C] grid of partial double sums (block (32, 8):
// x over channels, V adjacent channels a thread with V = 2 when C is even (4-byte loads of
// two bfloat16 values), y over rows, each block a chunk of rows), each block combining its
// 8 row lanes in order; then one thread per channel adds its chunks in order and computes
// the channel's coefficients. The element passes run a 2-D block: x over channel groups,
// y over rows, so no element pays for an index division.

constexpr int kLanesX = 32, kLanesY = 8;

template <int V>
__device__ __forceinline__ void load_bf16(const uint16_t* p, int64_t i, float (&v)[V]) {
  if constexpr (V == 2) {
    const uint32_t u = *reinterpret_cast<const uint32_t*>(p + i);
    v[0] = bf16_to_float(static_cast<uint16_t>(u & 0xffffu));
    v[1] = bf16_to_float(static_cast<uint16_t>(u >> 16));
  } else {
    v[0] = bf16_to_float(p[i]);
  }
}
template <int V>
__device__ __forceinline__ void load_bits(const uint16_t* p, int64_t i, uint16_t (&v)[V]) {
  if constexpr (V == 2) {
    const uint32_t u = *reinterpret_cast<const uint32_t*>(p + i);
    v[0] = static_cast<uint16_t>(u & 0xffffu);
    v[1] = static_cast<uint16_t>(u >> 16);
  } else {
    v[0] = p[i];
  }
}
template <int V>
__device__ __forceinline__ void store_bf16(uint16_t* p, int64_t i, const float (&v)[V]) {
  if constexpr (V == 2) {
    *reinterpret_cast<uint32_t*>(p + i) =
        static_cast<uint32_t>(bf16_bits(v[0])) | (static_cast<uint32_t>(bf16_bits(v[1])) << 16);
  } else {
    p[i] = bf16_bits(v[0]);
  }
}

// partial[(k * chunks + chunk) * C + c], k = 0, 1: forward (grad false) the sums of x and
// x^2; backward the sums of dz and dz * (x - mean).
template <int V>
__global__ void bn_nhwc_partials(cpu::BatchNormNhwcParams p, int64_t rows_per_chunk, bool grad,
                                 const uint16_t* x, const uint16_t* y, const uint16_t* dy,
                                 const float* mean, double* partial) {
  __shared__ double lanes[2][V][kLanesY][kLanesX];
  const int64_t C = p.channels, chunks = gridDim.y, chunk = blockIdx.y;
  const int64_t c0 = (static_cast<int64_t>(blockIdx.x) * kLanesX + threadIdx.x) * V;
  const int64_t r0 = chunk * rows_per_chunk;
  const int64_t r1 = r0 + rows_per_chunk < p.rows ? r0 + rows_per_chunk : p.rows;
  double a[V], b[V];
  for (int j = 0; j < V; ++j) a[j] = b[j] = 0;
  if (c0 < C) {
    float m[V] = {};
    if (grad)
      for (int j = 0; j < V; ++j) m[j] = mean[c0 + j];
    for (int64_t r = r0 + threadIdx.y; r < r1; r += kLanesY) {
      const int64_t i = r * C + c0;
      float xv[V];
      load_bf16<V>(x, i, xv);
      if (!grad) {
        for (int j = 0; j < V; ++j) {
          const double v = xv[j];
          a[j] += v;
          b[j] += v * v;
        }
      } else {
        uint16_t yv[V], gv[V];
        load_bits<V>(y, i, yv);
        load_bits<V>(dy, i, gv);
        for (int j = 0; j < V; ++j) {
          const double dz = cpu::bn_nhwc_dz(yv[j], gv[j], p.relu);
          a[j] += dz;
          b[j] += dz * (static_cast<double>(xv[j]) - static_cast<double>(m[j]));
        }
      }
    }
  }
  for (int j = 0; j < V; ++j) {
    lanes[0][j][threadIdx.y][threadIdx.x] = a[j];
    lanes[1][j][threadIdx.y][threadIdx.x] = b[j];
  }
  __syncthreads();
  if (threadIdx.y != 0 || c0 >= C) return;
  for (int j = 0; j < V; ++j) {
    double sa = 0, sb = 0;
    for (int l = 0; l < kLanesY; ++l) {
      sa += lanes[0][j][l][threadIdx.x];
      sb += lanes[1][j][l][threadIdx.x];
    }
    partial[chunk * C + c0 + j] = sa;
    partial[(chunks + chunk) * C + c0 + j] = sb;
  }
}

__global__ void bn_nhwc_finish(cpu::BatchNormNhwcParams p, int64_t chunks, bool grad,
                               const double* partial, const float* weight, const float* bias,
                               float* running_mean, float* running_var, float* save_mean,
                               float* save_invstd, float* grad_weight, float* grad_bias,
                               float* coef) {
  const int64_t C = p.channels;
  for (int64_t c = global_thread(); c < C; c += grid_threads()) {
    double a = 0, b = 0;
    for (int64_t k = 0; k < chunks; ++k) {
      a += partial[k * C + c];
      b += partial[(chunks + k) * C + c];
    }
    if (!grad)
      cpu::bn_nhwc_finish_stats(p, c, a, b, weight, bias, running_mean, running_var, save_mean,
                                save_invstd, coef);
    else
      cpu::bn_nhwc_finish_grads(p, c, a, b, weight, save_invstd, grad_weight, grad_bias, coef);
  }
}

template <int V>
__global__ void bn_nhwc_apply(cpu::BatchNormNhwcParams p, const uint16_t* x,
                              const uint16_t* residual, const float* coef, uint16_t* y) {
  const int64_t C = p.channels, groups = C / V;
  for (int64_t g = threadIdx.x; g < groups; g += blockDim.x) {
    const int64_t c0 = g * V;
    float scale[V], shift[V];
    for (int j = 0; j < V; ++j) {
      scale[j] = coef[c0 + j];
      shift[j] = coef[C + c0 + j];
    }
    for (int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.y + threadIdx.y; r < p.rows;
         r += static_cast<int64_t>(gridDim.x) * blockDim.y) {
      const int64_t i = r * C + c0;
      float xv[V], out[V];
      load_bf16<V>(x, i, xv);
      for (int j = 0; j < V; ++j)
        out[j] = cpu::bn_nhwc_value(xv[j], scale[j], shift[j], residual ? residual + i + j : nullptr,
                                    p.relu);
      store_bf16<V>(y, i, out);
    }
  }
}

template <int V>
__global__ void bn_nhwc_backward_apply(cpu::BatchNormNhwcParams p, const uint16_t* x,
                                       const uint16_t* y, const uint16_t* dy, const float* mean,
                                       const float* coef, uint16_t* grad_x,
                                       uint16_t* grad_residual) {
  const int64_t C = p.channels, groups = C / V;
  for (int64_t g = threadIdx.x; g < groups; g += blockDim.x) {
    const int64_t c0 = g * V;
    float m[V] = {}, k[V] = {}, mdz[V] = {}, proj[V] = {};
    if (grad_x)  // the coefficients exist only when grad_x is wanted
      for (int j = 0; j < V; ++j) {
        m[j] = mean[c0 + j];
        k[j] = coef[c0 + j];
        mdz[j] = coef[C + c0 + j];
        proj[j] = coef[2 * C + c0 + j];
      }
    for (int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.y + threadIdx.y; r < p.rows;
         r += static_cast<int64_t>(gridDim.x) * blockDim.y) {
      const int64_t i = r * C + c0;
      uint16_t yv[V], gv[V];
      load_bits<V>(y, i, yv);
      load_bits<V>(dy, i, gv);
      float dz[V];
      for (int j = 0; j < V; ++j) dz[j] = cpu::bn_nhwc_dz(yv[j], gv[j], p.relu);
      if (grad_residual) store_bf16<V>(grad_residual, i, dz);
      if (grad_x) {
        float xv[V], out[V];
        load_bf16<V>(x, i, xv);
        for (int j = 0; j < V; ++j) out[j] = cpu::bn_nhwc_grad_x(dz[j], xv[j], m[j], k[j], mdz[j], proj[j]);
        store_bf16<V>(grad_x, i, out);
      }
    }
  }
}

__global__ void add_bf16_kernel(const uint16_t* a, const uint16_t* b, uint16_t* out, int64_t n) {
  for (int64_t i = global_thread(); i < n; i += grid_threads())
    out[i] = bf16_bits(bf16_to_float(a[i]) + bf16_to_float(b[i]));
}

// The partial sums' grid: channel blocks of 32 thread columns, and row chunks of at least
// 64 rows, up to ~1,024 blocks of single channels (the chunks do not depend on the vector
// width, so the workspace size does not either).
struct PartialGrid {
  int64_t col_blocks, chunks, rows_per_chunk;
};
PartialGrid partial_grid(const cpu::BatchNormNhwcParams& p, int vec) {
  PartialGrid g;
  g.col_blocks = (p.channels / vec + kLanesX - 1) / kLanesX;
  const int64_t single = (p.channels + kLanesX - 1) / kLanesX;
  const int64_t by_rows = (p.rows + 63) / 64;
  const int64_t by_blocks = 1024 / single > 1 ? 1024 / single : 1;
  g.chunks = by_rows < by_blocks ? by_rows : by_blocks;
  if (g.chunks < 1) g.chunks = 1;
  g.rows_per_chunk = (p.rows + g.chunks - 1) / g.chunks;
  g.chunks = (p.rows + g.rows_per_chunk - 1) / g.rows_per_chunk;  // no empty chunk
  return g;
}

// The element passes' block: x over channel groups (a multiple of 32, at most 256), y
// over rows.
dim3 apply_block(int64_t groups) {
  int64_t x = (groups + 31) / 32 * 32;
  if (x > kBlock) x = kBlock;
  return dim3(static_cast<unsigned>(x), static_cast<unsigned>(kBlock / x));
}
unsigned apply_grid(int64_t rows, dim3 block) {
  const int64_t blocks = (rows + block.y - 1) / block.y;
  return static_cast<unsigned>(blocks < kMaxBlocks ? blocks : kMaxBlocks);
}

bool aligned4(const void* p) { return reinterpret_cast<uintptr_t>(p) % 4 == 0; }

// Pairs of channels when C is even and every bfloat16 buffer starts on 4 bytes.
int vector_width(const cpu::BatchNormNhwcParams& p, std::initializer_list<const void*> ptrs) {
  if (p.channels % 2 != 0) return 1;
  for (const void* q : ptrs)
    if (q && !aligned4(q)) return 1;
  return 2;
}

// workspace = partial doubles [2, chunks, C] then coef floats [3C] (chunks as for V = 1,
// the most).
double* partial_of(void* workspace) { return static_cast<double*>(workspace); }
float* coef_of(void* workspace, const cpu::BatchNormNhwcParams& p) {
  return reinterpret_cast<float*>(partial_of(workspace) + 2 * partial_grid(p, 1).chunks * p.channels);
}

// The per-channel sums and what follows from them (bn_nhwc_finish): forward (grad false:
// statistics, running statistics, scale and shift) or backward (the weight's and bias's
// gradients and the element pass's coefficients).
struct ChannelOutputs {
  const float* weight;
  const float* bias;
  float *running_mean, *running_var, *save_mean, *save_invstd, *grad_weight, *grad_bias;
};
void channel_sums(const cpu::BatchNormNhwcParams& p, int vec, bool grad, const uint16_t* x,
                  const uint16_t* y, const uint16_t* dy, const float* mean, ChannelOutputs o,
                  void* workspace, cudaStream_t stream) {
  const PartialGrid g = partial_grid(p, vec);
  double* partial = partial_of(workspace);
  const dim3 lanes(kLanesX, kLanesY);
  const dim3 grid(static_cast<unsigned>(g.col_blocks), static_cast<unsigned>(g.chunks));
  if (vec == 2)
    bn_nhwc_partials<2><<<grid, lanes, 0, stream>>>(p, g.rows_per_chunk, grad, x, y, dy, mean, partial);
  else
    bn_nhwc_partials<1><<<grid, lanes, 0, stream>>>(p, g.rows_per_chunk, grad, x, y, dy, mean, partial);
  CAPTION_CUDA_LAUNCH_CHECK("bn_nhwc_partials");
  bn_nhwc_finish<<<grid_for(p.channels), kBlock, 0, stream>>>(
      p, g.chunks, grad, partial, o.weight, o.bias, o.running_mean, o.running_var, o.save_mean,
      o.save_invstd, o.grad_weight, o.grad_bias, coef_of(workspace, p));
  CAPTION_CUDA_LAUNCH_CHECK("bn_nhwc_finish");
}

}  // namespace

int64_t batch_norm_nhwc_workspace_bytes(const cpu::BatchNormNhwcParams& p) {
  return 2 * partial_grid(p, 1).chunks * p.channels * static_cast<int64_t>(sizeof(double)) +
         3 * p.channels * static_cast<int64_t>(sizeof(float));
}

void batch_norm_nhwc_forward(const cpu::BatchNormNhwcParams& p, const uint16_t* x,
                             const float* weight, const float* bias, const uint16_t* residual,
                             float* running_mean, float* running_var, uint16_t* y,
                             float* save_mean, float* save_invstd, void* workspace,
                             cudaStream_t stream) {
  if (p.channels == 0 || p.rows == 0) return;
  const int vec = vector_width(p, {x, residual, y});
  channel_sums(p, vec, false, x, nullptr, nullptr, nullptr,
               {weight, bias, running_mean, running_var, save_mean, save_invstd, nullptr, nullptr},
               workspace, stream);
  const float* coef = coef_of(workspace, p);
  const dim3 block = apply_block(p.channels / vec);
  if (vec == 2)
    bn_nhwc_apply<2><<<apply_grid(p.rows, block), block, 0, stream>>>(p, x, residual, coef, y);
  else
    bn_nhwc_apply<1><<<apply_grid(p.rows, block), block, 0, stream>>>(p, x, residual, coef, y);
  CAPTION_CUDA_LAUNCH_CHECK("bn_nhwc_apply");
}

void batch_norm_nhwc_backward(const cpu::BatchNormNhwcParams& p, const uint16_t* x,
                              const uint16_t* y, const float* weight, const float* save_mean,
                              const float* save_invstd, const uint16_t* grad_y, uint16_t* grad_x,
                              float* grad_weight, float* grad_bias, uint16_t* grad_residual,
                              void* workspace, cudaStream_t stream) {
  if (p.channels == 0 || p.rows == 0) return;
  const int vec = vector_width(p, {x, y, grad_y, grad_x, grad_residual});
  if (grad_x || grad_weight || grad_bias)
    channel_sums(p, vec, true, x, y, grad_y, save_mean,
                 {weight, nullptr, nullptr, nullptr, nullptr,
                  const_cast<float*>(save_invstd),  // only read in the backward
                  grad_weight, grad_bias},
                 workspace, stream);
  if (!grad_x && !grad_residual) return;
  const float* coef = coef_of(workspace, p);
  const dim3 block = apply_block(p.channels / vec);
  if (vec == 2)
    bn_nhwc_backward_apply<2><<<apply_grid(p.rows, block), block, 0, stream>>>(
        p, x, y, grad_y, save_mean, coef, grad_x, grad_residual);
  else
    bn_nhwc_backward_apply<1><<<apply_grid(p.rows, block), block, 0, stream>>>(
        p, x, y, grad_y, save_mean, coef, grad_x, grad_residual);
  CAPTION_CUDA_LAUNCH_CHECK("bn_nhwc_backward_apply");
}

void add_bf16(const uint16_t* a, const uint16_t* b, uint16_t* out, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  add_bf16_kernel<<<grid_for(n), kBlock, 0, stream>>>(a, b, out, n);
  CAPTION_CUDA_LAUNCH_CHECK("add_bf16_kernel");
}

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
                        int32_t* indices, cudaStream_t stream) {
  const int64_t n = p.g.planes * p.g.out_h * p.g.out_w * p.channels;
  if (n == 0) return;
  max_pool_nhwc_kernel<<<grid_for(n), kBlock, 0, stream>>>(p, x, y, indices);
  CAPTION_CUDA_LAUNCH_CHECK("max_pool_nhwc_kernel");
}

void max_pool_nhwc_backward(const cpu::MaxPoolNhwcParams& p, const int32_t* indices,
                            const uint16_t* grad_y, uint16_t* grad_x, cudaStream_t stream) {
  const int64_t n = p.g.planes * p.g.in_h * p.g.in_w * p.channels;
  if (n == 0) return;
  max_pool_nhwc_backward_kernel<<<grid_for(n), kBlock, 0, stream>>>(p, indices, grad_y, grad_x);
  CAPTION_CUDA_LAUNCH_CHECK("max_pool_nhwc_backward_kernel");
}

}  // namespace caption::kernels::cuda
