// CUDA softmax, log-softmax and cross-entropy (semantics in kernels/cpu/softmax.h).
//
// Rows (inner == 1: attention scores, vocabulary logits) run GROUP threads per row: a
// warp (8 rows per 256-thread block) for rows shorter than 1024, a 256-thread block per
// row otherwise (vocabularies of 5,000-10,000). Three passes over the row, as on the
// CPU: max, sum of exponentials, write; the row is re-read from cache, never stored as
// exponentials. Group reductions are a butterfly shuffle within a warp and, across
// warps, a sum by one thread in warp order: fixed trees, so results are identical run to
// run. Softmax over an inner axis (inner > 1, rare) runs one thread per (outer, inner)
// column with serial loops, reads coalesced across the inner positions.
//
// Cross-entropy forward writes each row's log-sum-exp and loss term, then one block sums
// the terms in double (each thread a fixed strided subset, then the fixed tree), as the
// CPU sums in double. Backward recomputes exp(logit - lse): no [N, V] probabilities are
// ever stored. Vocabulary rows (a multiple of 4 classes, 16-byte aligned, at most
// 4 * 256 * kCeQuads classes) take the vectorised path: the forward reads its row once
// with float4 loads into registers and takes max and sum from there (the same two-step
// arithmetic, one read of memory instead of two); the backward runs a block per row with
// float4 loads and stores, so it divides no index by the row length. On an H100 the
// scalar path moved 0.76-0.79 TB/s of the 12 N V bytes model (26% of the copy rate).
// Unmasked softmax and log-softmax rows of that kind (the decode step's log-probabilities
// over the vocabulary: 11 us for 64 x 10,000 on an H100, 15% of the copy rate) take the
// same one-read path.
#include "kernels/cuda/softmax.h"

#include <cmath>
#include <cstdint>

#include "kernels/cuda/common.cuh"

namespace caption::kernels::cuda {

namespace {

__device__ __forceinline__ bool kept(const int32_t* mask, int64_t mask_numel, int64_t e) {
  return mask == nullptr || mask[e % mask_numel] != 0;
}

__device__ __forceinline__ float neg_inf() { return -INFINITY; }

__device__ __forceinline__ float excluded_value(SoftmaxKind kind) {
  return kind == SoftmaxKind::Softmax ? 0.f : neg_inf();
}

__device__ __forceinline__ bool excluded(SoftmaxKind kind, float y) {
  return kind == SoftmaxKind::Softmax ? y == 0.f : y == neg_inf();
}

// Reductions over the GROUP threads of a row; every thread of the group gets the result.
template <int GROUP>
__device__ __forceinline__ float group_max(float v, float* scratch) {
  if constexpr (GROUP == 32) return warp_max_all(v);
  else return block_max_all(v, scratch);
}
template <int GROUP>
__device__ __forceinline__ float group_sum(float v, float* scratch) {
  if constexpr (GROUP == 32) return warp_sum_all(v);
  else return block_sum_all(v, scratch);
}

// GROUP == 32: 8 rows per block; GROUP == kBlock: one row per block.
template <int GROUP>
__global__ void softmax_rows_kernel(SoftmaxKind kind, const float* x, const int32_t* mask,
                                    int64_t mask_numel, float* y, int64_t rows, int64_t dim) {
  constexpr int kPerBlock = kBlock / GROUP;
  __shared__ float scratch[32];
  const int lane = threadIdx.x % GROUP;
  for (int64_t base = static_cast<int64_t>(blockIdx.x) * kPerBlock; base < rows;
       base += static_cast<int64_t>(gridDim.x) * kPerBlock) {
    const int64_t row = base + threadIdx.x / GROUP;
    if (row >= rows) continue;  // a whole warp (GROUP 32); never taken for a block group
    const float* xr = x + row * dim;
    float* yr = y + row * dim;
    const int64_t first = row * dim;
    float mx = neg_inf();
    for (int64_t a = lane; a < dim; a += GROUP)
      if (kept(mask, mask_numel, first + a)) mx = fmaxf(mx, xr[a]);
    mx = group_max<GROUP>(mx, scratch);
    if (mx == neg_inf()) {  // nothing kept (or every kept entry -inf): a fully masked row
      const float v = excluded_value(kind);
      for (int64_t a = lane; a < dim; a += GROUP) yr[a] = v;
      continue;
    }
    float sum = 0.f;
    for (int64_t a = lane; a < dim; a += GROUP)
      if (kept(mask, mask_numel, first + a)) sum += expf(xr[a] - mx);
    sum = group_sum<GROUP>(sum, scratch);
    if (kind == SoftmaxKind::Softmax) {
      const float inv = 1.f / sum;
      for (int64_t a = lane; a < dim; a += GROUP)
        yr[a] = kept(mask, mask_numel, first + a) ? expf(xr[a] - mx) * inv : 0.f;
    } else {
      const float log_sum = logf(sum);
      for (int64_t a = lane; a < dim; a += GROUP)
        yr[a] = kept(mask, mask_numel, first + a) ? xr[a] - mx - log_sum : neg_inf();
    }
  }
}

// One thread per (outer, inner) column of a [outer, dim, inner] block.
__global__ void softmax_cols_kernel(SoftmaxKind kind, const float* x, const int32_t* mask,
                                    int64_t mask_numel, float* y, int64_t outer, int64_t dim,
                                    int64_t inner) {
  const int64_t n = outer * inner;
  for (int64_t idx = global_thread(); idx < n; idx += grid_threads()) {
    const int64_t o = idx / inner, i = idx - o * inner;
    const int64_t base = o * dim * inner + i;
    float mx = neg_inf();
    for (int64_t a = 0; a < dim; ++a) {
      const int64_t e = base + a * inner;
      if (kept(mask, mask_numel, e)) mx = fmaxf(mx, x[e]);
    }
    if (mx == neg_inf()) {
      const float v = excluded_value(kind);
      for (int64_t a = 0; a < dim; ++a) y[base + a * inner] = v;
      continue;
    }
    float sum = 0.f;
    for (int64_t a = 0; a < dim; ++a) {
      const int64_t e = base + a * inner;
      if (kept(mask, mask_numel, e)) sum += expf(x[e] - mx);
    }
    if (kind == SoftmaxKind::Softmax) {
      const float inv = 1.f / sum;
      for (int64_t a = 0; a < dim; ++a) {
        const int64_t e = base + a * inner;
        y[e] = kept(mask, mask_numel, e) ? expf(x[e] - mx) * inv : 0.f;
      }
    } else {
      const float log_sum = logf(sum);
      for (int64_t a = 0; a < dim; ++a) {
        const int64_t e = base + a * inner;
        y[e] = kept(mask, mask_numel, e) ? x[e] - mx - log_sum : neg_inf();
      }
    }
  }
}

// Softmax: gx = y (gy - sum_kept(gy y)); log-softmax: gx = gy - exp(y) sum_kept(gy);
// excluded entries get 0 and are skipped in the sums (a NaN upstream cannot leak).
template <int GROUP>
__global__ void softmax_backward_rows_kernel(SoftmaxKind kind, const float* y, const float* gy,
                                             float* gx, int64_t rows, int64_t dim) {
  constexpr int kPerBlock = kBlock / GROUP;
  __shared__ float scratch[32];
  const int lane = threadIdx.x % GROUP;
  for (int64_t base = static_cast<int64_t>(blockIdx.x) * kPerBlock; base < rows;
       base += static_cast<int64_t>(gridDim.x) * kPerBlock) {
    const int64_t row = base + threadIdx.x / GROUP;
    if (row >= rows) continue;
    const float* yr = y + row * dim;
    const float* gr = gy + row * dim;
    float* xr = gx + row * dim;
    float s = 0.f;
    for (int64_t a = lane; a < dim; a += GROUP) {
      const float v = yr[a];
      if (!excluded(kind, v)) s += kind == SoftmaxKind::Softmax ? gr[a] * v : gr[a];
    }
    s = group_sum<GROUP>(s, scratch);
    for (int64_t a = lane; a < dim; a += GROUP) {
      const float v = yr[a];
      if (excluded(kind, v)) xr[a] = 0.f;
      else if (kind == SoftmaxKind::Softmax) xr[a] = v * (gr[a] - s);
      else xr[a] = gr[a] - expf(v) * s;
    }
  }
}

__global__ void softmax_backward_cols_kernel(SoftmaxKind kind, const float* y, const float* gy,
                                             float* gx, int64_t outer, int64_t dim,
                                             int64_t inner) {
  const int64_t n = outer * inner;
  for (int64_t idx = global_thread(); idx < n; idx += grid_threads()) {
    const int64_t o = idx / inner, i = idx - o * inner;
    const int64_t base = o * dim * inner + i;
    float s = 0.f;
    for (int64_t a = 0; a < dim; ++a) {
      const int64_t e = base + a * inner;
      if (!excluded(kind, y[e])) s += kind == SoftmaxKind::Softmax ? gy[e] * y[e] : gy[e];
    }
    for (int64_t a = 0; a < dim; ++a) {
      const int64_t e = base + a * inner;
      const float v = y[e];
      if (excluded(kind, v)) gx[e] = 0.f;
      else if (kind == SoftmaxKind::Softmax) gx[e] = v * (gy[e] - s);
      else gx[e] = gy[e] - expf(v) * s;
    }
  }
}

template <typename I, int GROUP>
__global__ void cross_entropy_rows_kernel(const float* logits, const I* targets, float* lse,
                                          float* row_loss, int64_t rows, int64_t classes,
                                          int64_t ignore_index) {
  constexpr int kPerBlock = kBlock / GROUP;
  __shared__ float scratch[32];
  const int lane = threadIdx.x % GROUP;
  for (int64_t base = static_cast<int64_t>(blockIdx.x) * kPerBlock; base < rows;
       base += static_cast<int64_t>(gridDim.x) * kPerBlock) {
    const int64_t row = base + threadIdx.x / GROUP;
    if (row >= rows) continue;
    const int64_t t = static_cast<int64_t>(targets[row]);
    if (t == ignore_index) {  // uniform over the group
      if (lane == 0) {
        lse[row] = 0.f;
        row_loss[row] = 0.f;
      }
      continue;
    }
    const float* xr = logits + row * classes;
    float mx = neg_inf();
    for (int64_t c = lane; c < classes; c += GROUP) mx = fmaxf(mx, xr[c]);
    mx = group_max<GROUP>(mx, scratch);
    float sum = 0.f;
    for (int64_t c = lane; c < classes; c += GROUP) sum += expf(xr[c] - mx);
    sum = group_sum<GROUP>(sum, scratch);
    if (lane == 0) {
      const float l = mx + logf(sum);
      lse[row] = l;
      row_loss[row] = l - xr[t];
    }
  }
}

// The vectorised forward: one block per row, each thread holding up to kCeQuads float4 of
// it. Sums in a fixed order per thread (its quads in turn, x y z w within each), then the
// block's fixed tree: deterministic run to run.
constexpr int kCeQuads = 16;  // rows of up to 4 * 256 * 16 = 16,384 classes

// A row of `quads` float4 into each thread's registers (thread t holds quads t, t + 256,
// ...); returns the row's maximum (fmaxf: NaN ignored, as the scalar kernels).
__device__ __forceinline__ float load_row_max(const float4* xr, int64_t quads, float4 (&v)[kCeQuads],
                                              float* scratch) {
  float mx = neg_inf();
#pragma unroll
  for (int k = 0; k < kCeQuads; ++k) {
    const int64_t q = threadIdx.x + static_cast<int64_t>(k) * blockDim.x;
    if (q < quads) {
      v[k] = xr[q];
      mx = fmaxf(fmaxf(mx, fmaxf(v[k].x, v[k].y)), fmaxf(v[k].z, v[k].w));
    }
  }
  return block_max_all(mx, scratch);
}

// The sum of exp(x - mx) over the row held by load_row_max.
__device__ __forceinline__ float row_sum_exp(const float4 (&v)[kCeQuads], int64_t quads, float mx,
                                             float* scratch) {
  float sum = 0.f;
#pragma unroll
  for (int k = 0; k < kCeQuads; ++k) {
    const int64_t q = threadIdx.x + static_cast<int64_t>(k) * blockDim.x;
    if (q < quads) {
      sum += expf(v[k].x - mx);
      sum += expf(v[k].y - mx);
      sum += expf(v[k].z - mx);
      sum += expf(v[k].w - mx);
    }
  }
  return block_sum_all(sum, scratch);
}

template <typename I>
__global__ void cross_entropy_rows_vec_kernel(const float* logits, const I* targets, float* lse,
                                              float* row_loss, int64_t rows, int64_t classes,
                                              int64_t ignore_index) {
  __shared__ float scratch[32];
  const int64_t quads = classes / 4;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const int64_t t = static_cast<int64_t>(targets[row]);
    if (t == ignore_index) {  // uniform over the block
      if (threadIdx.x == 0) {
        lse[row] = 0.f;
        row_loss[row] = 0.f;
      }
      continue;
    }
    float4 v[kCeQuads];
    const float mx = load_row_max(reinterpret_cast<const float4*>(logits + row * classes), quads, v, scratch);
    const float sum = row_sum_exp(v, quads, mx, scratch);
    if (threadIdx.x == 0) {
      const float l = mx + logf(sum);
      lse[row] = l;
      row_loss[row] = l - logits[row * classes + t];
    }
  }
}

// The vectorised softmax / log-softmax of unmasked vocabulary rows: one block per row,
// the row read once into registers (as cross_entropy_rows_vec_kernel), written as float4.
__global__ void softmax_rows_vec_kernel(SoftmaxKind kind, const float* x, float* y, int64_t rows,
                                        int64_t dim) {
  __shared__ float scratch[32];
  const int64_t quads = dim / 4;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    float4* yr = reinterpret_cast<float4*>(y + row * dim);
    float4 v[kCeQuads];
    const float mx = load_row_max(reinterpret_cast<const float4*>(x + row * dim), quads, v, scratch);
    if (mx == neg_inf()) {  // every entry -inf: as the scalar kernel, a fully excluded row
      const float e = excluded_value(kind);
      for (int64_t q = threadIdx.x; q < quads; q += blockDim.x) yr[q] = make_float4(e, e, e, e);
      continue;
    }
    const float sum = row_sum_exp(v, quads, mx, scratch);
    const float inv = 1.f / sum, log_sum = logf(sum);
#pragma unroll
    for (int k = 0; k < kCeQuads; ++k) {
      const int64_t q = threadIdx.x + static_cast<int64_t>(k) * blockDim.x;
      if (q < quads) {
        const float4 a = v[k];
        yr[q] = kind == SoftmaxKind::Softmax
                    ? make_float4(expf(a.x - mx) * inv, expf(a.y - mx) * inv, expf(a.z - mx) * inv,
                                  expf(a.w - mx) * inv)
                    : make_float4(a.x - mx - log_sum, a.y - mx - log_sum, a.z - mx - log_sum,
                                  a.w - mx - log_sum);
      }
    }
  }
}

// One block: loss[0] = (float)(sum in double of row_loss) * scale.
__global__ void cross_entropy_total_kernel(const float* row_loss, float* loss, int64_t rows,
                                           float scale) {
  __shared__ double scratch[32];
  double acc = 0.0;
  for (int64_t r = threadIdx.x; r < rows; r += blockDim.x) acc += static_cast<double>(row_loss[r]);
  const double total = block_sum_all(acc, scratch);
  if (threadIdx.x == 0) loss[0] = static_cast<float>(total) * scale;
}

template <typename I>
__global__ void cross_entropy_backward_kernel(const float* logits, const I* targets,
                                              const float* lse, const float* grad_loss,
                                              float scale, float* grad, int64_t rows,
                                              int64_t classes, int64_t ignore_index) {
  const float g = grad_loss[0] * scale;
  const int64_t n = rows * classes;
  for (int64_t idx = global_thread(); idx < n; idx += grid_threads()) {
    const int64_t r = idx / classes, c = idx - r * classes;
    const int64_t t = static_cast<int64_t>(targets[r]);
    if (t == ignore_index) {
      grad[idx] = 0.f;
      continue;
    }
    float v = g * expf(logits[idx] - lse[r]);
    if (c == t) v -= g;
    grad[idx] = v;
  }
}

// The vectorised backward: a block per row (grid-stride over rows), float4 in and out.
template <typename I>
__global__ void cross_entropy_backward_rows_kernel(const float* logits, const I* targets,
                                                   const float* lse, const float* grad_loss,
                                                   float scale, float* grad, int64_t rows,
                                                   int64_t classes, int64_t ignore_index) {
  const float g = grad_loss[0] * scale;
  const int64_t quads = classes / 4;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const int64_t t = static_cast<int64_t>(targets[row]);
    float4* gr = reinterpret_cast<float4*>(grad + row * classes);
    if (t == ignore_index) {
      for (int64_t q = threadIdx.x; q < quads; q += blockDim.x) gr[q] = make_float4(0.f, 0.f, 0.f, 0.f);
      continue;
    }
    const float4* xr = reinterpret_cast<const float4*>(logits + row * classes);
    const float l = lse[row];
    for (int64_t q = threadIdx.x; q < quads; q += blockDim.x) {
      const float4 x = xr[q];
      float4 out = make_float4(g * expf(x.x - l), g * expf(x.y - l), g * expf(x.z - l), g * expf(x.w - l));
      const int64_t c = 4 * q;
      if (t >= c && t < c + 4) {
        const int j = static_cast<int>(t - c);
        if (j == 0) out.x -= g;
        else if (j == 1) out.y -= g;
        else if (j == 2) out.z -= g;
        else out.w -= g;
      }
      gr[q] = out;
    }
  }
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace

void softmax_forward(SoftmaxKind kind, const float* x, const int32_t* mask, int64_t mask_numel,
                     float* y, int64_t outer, int64_t dim, int64_t inner, cudaStream_t stream) {
  if (dim == 0 || outer == 0 || inner == 0) return;
  if (mask == nullptr) mask_numel = 1;  // never read; keeps the modulo well defined
  if (inner == 1) {
    if (dim < 1024) {
      softmax_rows_kernel<32><<<grid_for(outer, kBlock / 32), kBlock, 0, stream>>>(
          kind, x, mask, mask_numel, y, outer, dim);
      CAPTION_CUDA_LAUNCH_CHECK("softmax_rows_kernel<32>");
    } else if (mask == nullptr && dim % 4 == 0 && dim <= 4 * kBlock * kCeQuads && aligned16(x) &&
               aligned16(y)) {
      softmax_rows_vec_kernel<<<grid_for(outer, 1), kBlock, 0, stream>>>(kind, x, y, outer, dim);
      CAPTION_CUDA_LAUNCH_CHECK("softmax_rows_vec_kernel");
    } else {
      softmax_rows_kernel<kBlock><<<grid_for(outer, 1), kBlock, 0, stream>>>(
          kind, x, mask, mask_numel, y, outer, dim);
      CAPTION_CUDA_LAUNCH_CHECK("softmax_rows_kernel<256>");
    }
    return;
  }
  softmax_cols_kernel<<<grid_for(outer * inner), kBlock, 0, stream>>>(kind, x, mask, mask_numel,
                                                                       y, outer, dim, inner);
  CAPTION_CUDA_LAUNCH_CHECK("softmax_cols_kernel");
}

void softmax_backward(SoftmaxKind kind, const float* y, const float* grad_y, float* grad_x,
                      int64_t outer, int64_t dim, int64_t inner, cudaStream_t stream) {
  if (dim == 0 || outer == 0 || inner == 0) return;
  if (inner == 1) {
    if (dim < 1024) {
      softmax_backward_rows_kernel<32><<<grid_for(outer, kBlock / 32), kBlock, 0, stream>>>(
          kind, y, grad_y, grad_x, outer, dim);
      CAPTION_CUDA_LAUNCH_CHECK("softmax_backward_rows_kernel<32>");
    } else {
      softmax_backward_rows_kernel<kBlock><<<grid_for(outer, 1), kBlock, 0, stream>>>(
          kind, y, grad_y, grad_x, outer, dim);
      CAPTION_CUDA_LAUNCH_CHECK("softmax_backward_rows_kernel<256>");
    }
    return;
  }
  softmax_backward_cols_kernel<<<grid_for(outer * inner), kBlock, 0, stream>>>(
      kind, y, grad_y, grad_x, outer, dim, inner);
  CAPTION_CUDA_LAUNCH_CHECK("softmax_backward_cols_kernel");
}

template <typename I>
void cross_entropy_forward(const float* logits, const I* targets, float* loss, float* lse,
                           float* row_loss, int64_t rows, int64_t classes, int64_t ignore_index,
                           float scale, cudaStream_t stream) {
  if (rows > 0) {
    // classes == 0 cannot have a valid row (targets are checked to be < classes).
    if (classes < 1024) {
      cross_entropy_rows_kernel<I, 32><<<grid_for(rows, kBlock / 32), kBlock, 0, stream>>>(
          logits, targets, lse, row_loss, rows, classes, ignore_index);
      CAPTION_CUDA_LAUNCH_CHECK("cross_entropy_rows_kernel<32>");
    } else if (classes % 4 == 0 && classes <= 4 * kBlock * kCeQuads && aligned16(logits)) {
      cross_entropy_rows_vec_kernel<I><<<grid_for(rows, 1), kBlock, 0, stream>>>(
          logits, targets, lse, row_loss, rows, classes, ignore_index);
      CAPTION_CUDA_LAUNCH_CHECK("cross_entropy_rows_vec_kernel");
    } else {
      cross_entropy_rows_kernel<I, kBlock><<<grid_for(rows, 1), kBlock, 0, stream>>>(
          logits, targets, lse, row_loss, rows, classes, ignore_index);
      CAPTION_CUDA_LAUNCH_CHECK("cross_entropy_rows_kernel<256>");
    }
  }
  // Always runs (one block), so that the loss is written even with no rows.
  cross_entropy_total_kernel<<<1, kBlock, 0, stream>>>(row_loss, loss, rows, scale);
  CAPTION_CUDA_LAUNCH_CHECK("cross_entropy_total_kernel");
}

template <typename I>
void cross_entropy_backward(const float* logits, const I* targets, const float* lse,
                            const float* grad_loss, float scale, float* grad_logits, int64_t rows,
                            int64_t classes, int64_t ignore_index, cudaStream_t stream) {
  const int64_t n = rows * classes;
  if (n == 0) return;
  if (classes >= 1024 && classes % 4 == 0 && aligned16(logits) && aligned16(grad_logits)) {
    cross_entropy_backward_rows_kernel<I><<<grid_for(rows, 1), kBlock, 0, stream>>>(
        logits, targets, lse, grad_loss, scale, grad_logits, rows, classes, ignore_index);
    CAPTION_CUDA_LAUNCH_CHECK("cross_entropy_backward_rows_kernel");
    return;
  }
  cross_entropy_backward_kernel<I><<<grid_for(n), kBlock, 0, stream>>>(
      logits, targets, lse, grad_loss, scale, grad_logits, rows, classes, ignore_index);
  CAPTION_CUDA_LAUNCH_CHECK("cross_entropy_backward_kernel");
}

#define CAPTION_CE_INSTANTIATE(I)                                                             \
  template void cross_entropy_forward<I>(const float*, const I*, float*, float*, float*,      \
                                         int64_t, int64_t, int64_t, float, cudaStream_t);     \
  template void cross_entropy_backward<I>(const float*, const I*, const float*, const float*, \
                                          float, float*, int64_t, int64_t, int64_t,           \
                                          cudaStream_t);
CAPTION_CE_INSTANTIATE(int32_t)
CAPTION_CE_INSTANTIATE(int64_t)
#undef CAPTION_CE_INSTANTIATE

}  // namespace caption::kernels::cuda
