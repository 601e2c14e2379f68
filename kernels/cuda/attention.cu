// Fused additive attention on CUDA (see attention.h).
//
// The step's sizes (B up to a few dozen rows, P ~ 200 positions, A ~ 512, D ~ 2048) give
// few rows but many (row, position) pairs, so the dot products run one warp per (b, p)
// over the whole grid rather than one block per row, which would leave most SMs idle
// at B = 32; only the cheap softmax passes over P run one block per row.
//
// Forward, three kernels:
//   - scores: one warp per (b, p); lanes stride over A, the dot w . act(enc + dec) is
//     closed by the warp's fixed shuffle tree, and lane 0 writes bias + dot into alpha;
//   - softmax: one 256-thread block per row, in place over alpha (global memory, owned by
//     the block, so P has no shared-memory limit): max, sum of exponentials, divide, as
//     on the CPU, with the fixed block trees of common.cuh;
//   - context: grid (D chunks of 256, rows); thread d sums alpha[p] features[b, p, d]
//     over p in order, reads of features coalesced across d.
// Backward, mirroring the CPU's recompute strategy:
//   - one warp per (b, p): ds[p] = <features[b, p], grad_context[b]> + grad_alpha[b, p]
//     into the d_scores workspace; then one block per row applies the softmax backward
//     ds[p] = alpha[p] (ds[p] - sum_q alpha[q] ds[q]) in place;
//   - d_features[b, p, d] = alpha[b, p] grad_context[b, d], elementwise;
//   - one thread per (chunk of positions, b, a) walks its positions in order, recomputes
//     u = act(enc + dec), writes d_enc[b, p, a] = ds[p] w[a] act'(u), and sums its
//     shares of d_dec[b, a] and d_w[a] into dd_partial / dw_partial [chunks, B, A]; the
//     chunk count (attention_backward_chunks) is a function of the shapes alone, sized
//     so that about 128K threads run (B * A alone is ~16K at B 32, A 512);
//   - d_dec, d_w and d_bias are fixed-order column sums of dd_partial, dw_partial and
//     d_scores by the deterministic reduction kernel (kernels/cuda/reduce.h).
// No atomics anywhere: results are run-to-run identical.
#include "kernels/cuda/attention.h"

#include <cmath>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/reduce.h"

namespace caption::kernels::cuda {

namespace {

__device__ __forceinline__ float activate(AttentionActivation act, float s) {
  return act == AttentionActivation::Tanh ? tanhf(s) : (s > 0.f ? s : 0.f);
}
// Derivative from the activated value u = act(s).
__device__ __forceinline__ float activate_grad(AttentionActivation act, float u) {
  return act == AttentionActivation::Tanh ? 1.f - u * u : (u > 0.f ? 1.f : 0.f);
}

unsigned rows_grid(int64_t rows) {
  return static_cast<unsigned>(rows < kMaxBlocks ? rows : kMaxBlocks);
}

constexpr int kWarpsPerBlock = kBlock / 32;

// One warp per (b, p): alpha[b, p] = bias + sum_a w[a] act(enc[b, p, a] + dec[b, a]).
__global__ void attention_scores_kernel(AttentionActivation act, const float* __restrict__ enc,
                                        const float* __restrict__ dec, const float* __restrict__ w,
                                        const float* __restrict__ bias, float* __restrict__ alpha,
                                        int64_t P, int64_t A, int64_t dec_ld, int64_t rows) {
  const int lane = threadIdx.x & 31;
  const int64_t first = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5);
  for (int64_t bp = first; bp < rows; bp += static_cast<int64_t>(gridDim.x) * kWarpsPerBlock) {
    const float* enc_p = enc + bp * A;
    const float* dec_b = dec + (bp / P) * dec_ld;
    float s = 0.f;
    for (int64_t a = lane; a < A; a += 32) s += w[a] * activate(act, enc_p[a] + dec_b[a]);
    s = warp_sum(s);
    if (lane == 0) alpha[bp] = bias[0] + s;
  }
}

// One block per row, in place: alpha[b] = softmax(alpha[b]) over P.
__global__ void attention_softmax_kernel(float* alpha, int64_t B, int64_t P) {
  __shared__ float scratch[32];
  for (int64_t b = blockIdx.x; b < B; b += gridDim.x) {
    float* al = alpha + b * P;
    float mx = -INFINITY;
    for (int64_t p = threadIdx.x; p < P; p += blockDim.x) mx = fmaxf(mx, al[p]);
    mx = block_max_all(mx, scratch);
    float sum = 0.f;
    for (int64_t p = threadIdx.x; p < P; p += blockDim.x) {
      const float e = expf(al[p] - mx);
      al[p] = e;
      sum += e;
    }
    const float total = block_sum_all(sum, scratch);
    for (int64_t p = threadIdx.x; p < P; p += blockDim.x) al[p] = al[p] / total;
  }
}

// blockIdx.x over D chunks, blockIdx.y over rows.
__global__ void attention_context_kernel(const float* __restrict__ alpha,
                                         const float* __restrict__ features,
                                         float* __restrict__ context, int64_t B, int64_t P,
                                         int64_t D) {
  for (int64_t b = blockIdx.y; b < B; b += gridDim.y) {
    const float* al = alpha + b * P;
    const float* feat = features + b * P * D;
    for (int64_t d = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; d < D;
         d += static_cast<int64_t>(gridDim.x) * blockDim.x) {
      float acc = 0.f;
#pragma unroll 4
      for (int64_t p = 0; p < P; ++p) acc += al[p] * feat[p * D + d];
      context[b * D + d] = acc;
    }
  }
}

// One warp per (b, p): d_scores[b, p] = <features[b, p], grad_context[b]> + grad_alpha[b, p].
__global__ void attention_dscores_kernel(const float* __restrict__ features,
                                         const float* __restrict__ grad_context,
                                         const float* __restrict__ grad_alpha,
                                         float* __restrict__ d_scores, int64_t P, int64_t D,
                                         int64_t rows) {
  const int lane = threadIdx.x & 31;
  const int64_t first = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5);
  for (int64_t bp = first; bp < rows; bp += static_cast<int64_t>(gridDim.x) * kWarpsPerBlock) {
    const float* feat = features + bp * D;
    const float* gc = grad_context + (bp / P) * D;
    float s = 0.f;
    for (int64_t d = lane; d < D; d += 32) s += feat[d] * gc[d];
    s = warp_sum(s);
    if (lane == 0) d_scores[bp] = s + grad_alpha[bp];
  }
}

// One block per row, in place: ds[p] = alpha[p] (ds[p] - sum_q alpha[q] ds[q]).
__global__ void attention_softmax_backward_kernel(const float* alpha, float* d_scores, int64_t B,
                                                  int64_t P) {
  __shared__ float scratch[32];
  for (int64_t b = blockIdx.x; b < B; b += gridDim.x) {
    const float* al = alpha + b * P;
    float* ds = d_scores + b * P;
    float dot = 0.f;
    for (int64_t p = threadIdx.x; p < P; p += blockDim.x) dot += al[p] * ds[p];
    dot = block_sum_all(dot, scratch);
    for (int64_t p = threadIdx.x; p < P; p += blockDim.x) ds[p] = al[p] * (ds[p] - dot);
  }
}

__global__ void attention_dfeatures_kernel(const float* alpha, const float* grad_context,
                                           float* d_features, int64_t P, int64_t D, int64_t n) {
  for (int64_t idx = global_thread(); idx < n; idx += grid_threads()) {
    const int64_t bp = idx / D, d = idx - bp * D;
    const int64_t b = bp / P;
    d_features[idx] = alpha[bp] * grad_context[b * D + d];
  }
}

// One thread per (c, b, a): positions p of chunk c, in order.
__global__ void attention_dproj_kernel(AttentionActivation act, const float* __restrict__ enc,
                                       const float* __restrict__ dec, const float* __restrict__ w,
                                       const float* __restrict__ d_scores,
                                       float* __restrict__ d_enc, float* __restrict__ dd_partial,
                                       float* __restrict__ dw_partial, int64_t B, int64_t P,
                                       int64_t A, int64_t dec_ld, int64_t chunk_len, int64_t n) {
  const int64_t BA = B * A;
  for (int64_t idx = global_thread(); idx < n; idx += grid_threads()) {
    const int64_t chunk = idx / BA, ba = idx - chunk * BA;
    const int64_t b = ba / A, a = ba - b * A;
    const float dv = dec[b * dec_ld + a], wa = w[a];
    const float* ds = d_scores + b * P;
    const int64_t p0 = chunk * chunk_len;
    const int64_t p1 = p0 + chunk_len < P ? p0 + chunk_len : P;
    float dd = 0.f, dw = 0.f;
#pragma unroll 4
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t e = (b * P + p) * A + a;
      const float u = activate(act, enc[e] + dv);  // recomputed, see the header
      const float t = ds[p];
      dw += t * u;
      const float g = t * wa * activate_grad(act, u);
      if (d_enc) d_enc[e] = g;
      dd += g;
    }
    if (dd_partial) dd_partial[idx] = dd;
    if (dw_partial) dw_partial[idx] = dw;
  }
}

__device__ __forceinline__ float gate_sigmoid(float v) { return 1.f / (1.f + expf(-v)); }

// The attention step's second kernel: grid (D chunks, rows), one block per (chunk, row).
// Each block forms its row's softmax statistics from the scores (every block of a row
// reads the same scores through the same fixed trees, so they agree bit for bit), then
// walks the positions a tile at a time, alpha of the tile in shared memory, summing
// alpha[p] features[b, p, d] for its columns d in order (as attention_context_kernel);
// z = sigmoid(gate) context. The first block of a row also writes alpha and the running
// sum. No block waits for another.
__global__ void attention_step_context_kernel(const float* __restrict__ scores,
                                              const float* __restrict__ features,
                                              const float* __restrict__ gate, int64_t gate_ld,
                                              const float* __restrict__ sum_in,
                                              const float* __restrict__ scale,
                                              float* __restrict__ z, float* __restrict__ context,
                                              float* __restrict__ alpha,
                                              float* __restrict__ sum_out, int64_t B, int64_t P,
                                              int64_t D) {
  __shared__ float scratch[32];
  __shared__ float tile[kBlock];
  const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t b = blockIdx.y; b < B; b += gridDim.y) {
    const float* e = scores + b * P;
    float mx = -INFINITY;
    for (int64_t p = threadIdx.x; p < P; p += blockDim.x) mx = fmaxf(mx, e[p]);
    mx = block_max_all(mx, scratch);
    float sum = 0.f;
    for (int64_t p = threadIdx.x; p < P; p += blockDim.x) sum += expf(e[p] - mx);
    const float total = block_sum_all(sum, scratch);
    const float k = scale ? scale[b] : 1.f;
    const float* feat = features + b * P * D;
    // d0 is the same across the block, so every thread meets every barrier; a block
    // with no columns (D == 0) still runs once to write alpha.
    for (int64_t d0 = first; d0 < D || d0 == first; d0 += stride) {
      const int64_t d = d0 + threadIdx.x;
      const bool writer = blockIdx.x == 0 && d0 == first;
      float acc = 0.f;
      for (int64_t p0 = 0; p0 < P; p0 += blockDim.x) {
        const int64_t p = p0 + threadIdx.x;
        __syncthreads();  // the previous tile is consumed
        if (p < P) {
          const float a = expf(e[p] - mx) / total;
          tile[threadIdx.x] = a;
          if (writer) {
            alpha[b * P + p] = a;
            if (sum_out) sum_out[b * P + p] = sum_in ? sum_in[b * P + p] + k * a : k * a;
          }
        }
        __syncthreads();
        const int64_t n = P - p0 < blockDim.x ? P - p0 : blockDim.x;
        if (d < D) {
          const float* fp = feat + p0 * D + d;
#pragma unroll 4
          for (int64_t q = 0; q < n; ++q) acc += tile[q] * fp[q * D];
        }
      }
      if (d < D) {
        context[b * D + d] = acc;
        z[b * D + d] = gate_sigmoid(gate[b * gate_ld + d]) * acc;
      }
      if (d0 >= D) break;
    }
    __syncthreads();  // scratch and tile are reused by the next row
  }
}

// Backward of the gate and the running sum, over B*D + B*P indices: d_context and d_gate
// from grad_z; alpha's whole gradient grad_alpha + scale[b] grad_sum, and d_sum_in.
__global__ void attention_step_inputs_backward_kernel(
    const float* __restrict__ gate, int64_t gate_ld, const float* __restrict__ context,
    const float* __restrict__ grad_z, const float* __restrict__ grad_alpha,
    const float* __restrict__ grad_sum, const float* __restrict__ scale,
    float* __restrict__ d_context, float* __restrict__ d_gate, float* __restrict__ alpha_grad,
    float* __restrict__ d_sum_in, int64_t B, int64_t P, int64_t D, int64_t n) {
  const int64_t nd = B * D;
  for (int64_t idx = global_thread(); idx < n; idx += grid_threads()) {
    if (idx < nd) {
      const int64_t b = idx / D, d = idx - b * D;
      const float sg = gate_sigmoid(gate[b * gate_ld + d]);
      const float gz = grad_z[idx];
      d_context[idx] = gz * sg;
      if (d_gate) d_gate[idx] = gz * context[idx] * sg * (1.f - sg);
    } else {
      const int64_t j = idx - nd;
      const float gs = grad_sum[j];
      const float k = scale ? scale[j / P] : 1.f;
      alpha_grad[j] = grad_alpha[j] + k * gs;
      if (d_sum_in) d_sum_in[j] = gs;
    }
  }
}

// One warp per row: d_scale[b] = sum_p alpha[b, p] grad_sum[b, p].
__global__ void attention_step_scale_backward_kernel(const float* __restrict__ alpha,
                                                     const float* __restrict__ grad_sum,
                                                     float* __restrict__ d_scale, int64_t B,
                                                     int64_t P) {
  const int lane = threadIdx.x & 31;
  const int64_t first = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5);
  for (int64_t b = first; b < B; b += static_cast<int64_t>(gridDim.x) * kWarpsPerBlock) {
    float s = 0.f;
    for (int64_t p = lane; p < P; p += 32) s += alpha[b * P + p] * grad_sum[b * P + p];
    s = warp_sum(s);
    if (lane == 0) d_scale[b] = s;
  }
}

}  // namespace

int64_t attention_backward_chunks(int64_t B, int64_t P, int64_t A) {
  // Enough (c, b, a) threads to fill an H100 (~128K), chunks of at least 8 positions.
  const int64_t ba = B * A;
  if (ba == 0 || P <= 8) return 1;
  const int64_t wanted = (int64_t{1} << 17) / ba;
  const int64_t most = (P + 7) / 8;
  const int64_t chunks = wanted < 1 ? 1 : (wanted < most ? wanted : most);
  return (P + (P + chunks - 1) / chunks - 1) / ((P + chunks - 1) / chunks);  // no empty chunk
}

void additive_attention_forward(AttentionActivation act, const float* enc_proj,
                                const float* dec_proj, const float* w, const float* bias,
                                const float* features, float* context, float* alpha, int64_t B,
                                int64_t P, int64_t A, int64_t D, cudaStream_t stream,
                                int64_t dec_ld) {
  if (B == 0 || P == 0) return;
  if (dec_ld == 0) dec_ld = A;
  const int64_t rows = B * P;
  attention_scores_kernel<<<grid_for(rows, kWarpsPerBlock), kBlock, 0, stream>>>(
      act, enc_proj, dec_proj, w, bias, alpha, P, A, dec_ld, rows);
  CAPTION_CUDA_LAUNCH_CHECK("attention_scores_kernel");
  attention_softmax_kernel<<<rows_grid(B), kBlock, 0, stream>>>(alpha, B, P);
  CAPTION_CUDA_LAUNCH_CHECK("attention_softmax_kernel");
  if (D == 0) return;
  const dim3 grid(grid_for(D), static_cast<unsigned>(B < 65535 ? B : 65535));
  attention_context_kernel<<<grid, kBlock, 0, stream>>>(alpha, features, context, B, P, D);
  CAPTION_CUDA_LAUNCH_CHECK("attention_context_kernel");
}

void additive_attention_backward(AttentionActivation act, const float* enc_proj,
                                 const float* dec_proj, const float* w, const float* features,
                                 const float* alpha, const float* grad_context,
                                 const float* grad_alpha, float* d_enc_proj, float* d_dec_proj,
                                 float* d_w, float* d_bias, float* d_features, float* d_scores,
                                 float* dd_partial, float* dw_partial, int64_t B, int64_t P,
                                 int64_t A, int64_t D, cudaStream_t stream, int64_t dec_ld) {
  if (dec_ld == 0) dec_ld = A;
  if (B > 0 && P > 0) {
    const int64_t rows = B * P;
    attention_dscores_kernel<<<grid_for(rows, kWarpsPerBlock), kBlock, 0, stream>>>(
        features, grad_context, grad_alpha, d_scores, P, D, rows);
    CAPTION_CUDA_LAUNCH_CHECK("attention_dscores_kernel");
    attention_softmax_backward_kernel<<<rows_grid(B), kBlock, 0, stream>>>(alpha, d_scores, B, P);
    CAPTION_CUDA_LAUNCH_CHECK("attention_softmax_backward_kernel");
  }
  const int64_t nf = B * P * D;
  if (d_features && nf > 0) {
    attention_dfeatures_kernel<<<grid_for(nf), kBlock, 0, stream>>>(alpha, grad_context, d_features,
                                                                    P, D, nf);
    CAPTION_CUDA_LAUNCH_CHECK("attention_dfeatures_kernel");
  }
  const int64_t chunks = attention_backward_chunks(B, P, A);
  const int64_t chunk_len = (P + chunks - 1) / chunks;
  const int64_t np = chunks * B * A;
  if ((d_enc_proj || d_dec_proj || d_w) && np > 0) {
    attention_dproj_kernel<<<grid_for(np), kBlock, 0, stream>>>(
        act, enc_proj, dec_proj, w, d_scores, d_enc_proj, d_dec_proj ? dd_partial : nullptr,
        d_w ? dw_partial : nullptr, B, P, A, dec_ld, chunk_len, np);
    CAPTION_CUDA_LAUNCH_CHECK("attention_dproj_kernel");
  }
  // Fixed-order sums over the chunks (and rows, for d_w); zeros when nothing is summed.
  if (d_dec_proj) reduce_sum(dd_partial, d_dec_proj, 1, chunks, B * A, 1.f, stream);
  if (d_w) reduce_sum(dw_partial, d_w, 1, chunks * B, A, 1.f, stream);
  if (d_bias) reduce_sum(d_scores, d_bias, 1, B * P, 1, 1.f, stream);
}

void attention_step_forward(AttentionActivation act, const cpu::AttentionStepForward<float>& f,
                            const cpu::AttentionStepShape& s, float* scores, cudaStream_t stream) {
  const int64_t B = s.B, P = s.P, A = s.A, D = s.D;
  if (B == 0 || P == 0) return;
  const int64_t dec_ld = s.dec_ld == 0 ? A : s.dec_ld, gate_ld = s.gate_ld == 0 ? D : s.gate_ld;
  const int64_t rows = B * P;
  attention_scores_kernel<<<grid_for(rows, kWarpsPerBlock), kBlock, 0, stream>>>(
      act, f.enc_proj, f.dec_proj, f.w, f.bias, scores, P, A, dec_ld, rows);
  CAPTION_CUDA_LAUNCH_CHECK("attention_scores_kernel");
  const unsigned chunks = D > 0 ? grid_for(D) : 1u;
  const dim3 grid(chunks, static_cast<unsigned>(B < 65535 ? B : 65535));
  attention_step_context_kernel<<<grid, kBlock, 0, stream>>>(
      scores, f.features, f.gate, gate_ld, f.sum_in, f.scale, f.z, f.context, f.alpha, f.sum_out,
      B, P, D);
  CAPTION_CUDA_LAUNCH_CHECK("attention_step_context_kernel");
}

void attention_step_backward(AttentionActivation act, const cpu::AttentionStepBackward<float>& g,
                             const cpu::AttentionStepShape& s, const AttentionStepWorkspace& ws,
                             cudaStream_t stream) {
  const int64_t B = s.B, P = s.P, A = s.A, D = s.D;
  const int64_t gate_ld = s.gate_ld == 0 ? D : s.gate_ld;
  const int64_t n = B * D + (g.grad_sum ? B * P : 0);
  if (n > 0) {
    attention_step_inputs_backward_kernel<<<grid_for(n), kBlock, 0, stream>>>(
        g.gate, gate_ld, g.context, g.grad_z, g.grad_alpha, g.grad_sum, g.scale, ws.d_context,
        g.d_gate, ws.alpha_grad, g.d_sum_in, B, P, D, n);
    CAPTION_CUDA_LAUNCH_CHECK("attention_step_inputs_backward_kernel");
  }
  if (g.d_scale && B > 0) {
    attention_step_scale_backward_kernel<<<grid_for(B, kWarpsPerBlock), kBlock, 0, stream>>>(
        g.alpha, g.grad_sum, g.d_scale, B, P);
    CAPTION_CUDA_LAUNCH_CHECK("attention_step_scale_backward_kernel");
  }
  additive_attention_backward(act, g.enc_proj, g.dec_proj, g.w, g.features, g.alpha, ws.d_context,
                              g.grad_sum ? ws.alpha_grad : g.grad_alpha, g.d_enc_proj,
                              g.d_dec_proj, g.d_w, g.d_bias, g.d_features, ws.d_scores,
                              ws.dd_partial, ws.dw_partial, B, P, A, D, stream, s.dec_ld);
}

}  // namespace caption::kernels::cuda
