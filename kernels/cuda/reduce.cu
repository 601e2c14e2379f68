// CUDA sum/mean over [outer, reduce, inner] blocks.
//
// Two mappings, chosen from the shapes alone (so a given shape always takes the same
// path and the result is bit-identical run to run; no atomics):
//   - group per output: GROUP threads (a warp, or a 256-thread block when there are few
//     outputs with many terms each) stride over the reduced positions of one output and
//     combine through a fixed shuffle tree. Used for rows (inner == 1, reads coalesced)
//     and for few outputs with long reductions.
//   - tiled: x threads over the inner positions (reads coalesced across a row of x),
//     the reduced positions split over 1 or 8 thread rows, combined through shared
//     memory by row 0 in row order; grid.y walks the outer blocks.
// Accumulation is in float, as on the CPU, with the CPU's scale applied to the sum.
#include "kernels/cuda/reduce.h"

#include "kernels/cuda/common.cuh"

namespace caption::kernels::cuda {

namespace {

template <int GROUP>
__global__ void reduce_group_kernel(const float* x, float* out, int64_t outer, int64_t reduce,
                                    int64_t inner, float scale) {
  constexpr int kPerBlock = kBlock / GROUP;
  __shared__ float warp_totals[kBlock / 32];
  const int lane = threadIdx.x % GROUP;
  const int64_t n = outer * inner;
  for (int64_t base = static_cast<int64_t>(blockIdx.x) * kPerBlock; base < n;
       base += static_cast<int64_t>(gridDim.x) * kPerBlock) {
    const int64_t e = base + threadIdx.x / GROUP;  // output element (o, i)
    float acc = 0.f;
    if (e < n) {
      const int64_t o = e / inner, i = e - o * inner;
      const float* src = x + o * reduce * inner + i;
      for (int64_t r = lane; r < reduce; r += GROUP) acc += src[r * inner];
    }
    acc = warp_sum(acc);
    if constexpr (GROUP == 32) {
      if (lane == 0 && e < n) out[e] = acc * scale;
    } else {
      if ((threadIdx.x & 31) == 0) warp_totals[threadIdx.x >> 5] = acc;
      __syncthreads();
      if (threadIdx.x == 0 && e < n) {
        float total = warp_totals[0];
        for (int w = 1; w < kBlock / 32; ++w) total += warp_totals[w];
        out[e] = total * scale;
      }
      __syncthreads();
    }
  }
}

// blockDim = (bx, ry); grid.x over inner tiles, grid.y over outer blocks.
__global__ void reduce_tiled_kernel(const float* x, float* out, int64_t outer, int64_t reduce,
                                    int64_t inner, float scale) {
  extern __shared__ float partial[];  // [ry][bx]
  const int tx = threadIdx.x, ty = threadIdx.y, bx = blockDim.x, ry = blockDim.y;
  for (int64_t o = blockIdx.y; o < outer; o += gridDim.y) {
    for (int64_t base = static_cast<int64_t>(blockIdx.x) * bx; base < inner;
         base += static_cast<int64_t>(gridDim.x) * bx) {
      const int64_t i = base + tx;
      float acc = 0.f;
      if (i < inner) {
        const float* src = x + o * reduce * inner + i;
        for (int64_t r = ty; r < reduce; r += ry) acc += src[r * inner];
      }
      if (ry == 1) {
        if (i < inner) out[o * inner + i] = acc * scale;
        continue;
      }
      partial[ty * bx + tx] = acc;
      __syncthreads();
      if (ty == 0 && i < inner) {
        float total = partial[tx];
        for (int y = 1; y < ry; ++y) total += partial[y * bx + tx];
        out[o * inner + i] = total * scale;
      }
      __syncthreads();
    }
  }
}

__global__ void reduce_backward_kernel(const float* g, float* gx, int64_t reduce, int64_t inner,
                                       float scale, int64_t n) {
  const int64_t block = reduce * inner;
  for (int64_t idx = global_thread(); idx < n; idx += grid_threads()) {
    const int64_t o = idx / block, i = idx % inner;
    gx[idx] = g[o * inner + i] * scale;
  }
}

}  // namespace

void reduce_sum(const float* x, float* out, int64_t outer, int64_t reduce, int64_t inner,
                float scale, cudaStream_t stream) {
  const int64_t n = outer * inner;
  if (n == 0) return;
  if (reduce == 0) {
    CAPTION_CUDA_CHECK(cudaMemsetAsync(out, 0, sizeof(float) * n, stream));
    return;
  }
  const bool few_long = n < 1024 && reduce >= 4096;
  if (inner == 1 || few_long) {
    if (n >= 1024 || reduce < 2048) {
      reduce_group_kernel<32><<<grid_for(n, kBlock / 32), kBlock, 0, stream>>>(x, out, outer,
                                                                             reduce, inner, scale);
      CAPTION_CUDA_LAUNCH_CHECK("reduce_group_kernel<32>");
    } else {
      reduce_group_kernel<kBlock><<<grid_for(n, 1), kBlock, 0, stream>>>(x, out, outer, reduce,
                                                                        inner, scale);
      CAPTION_CUDA_LAUNCH_CHECK("reduce_group_kernel<256>");
    }
    return;
  }
  const int ry = reduce >= 32 ? 8 : 1;
  const int bx = kBlock / ry;
  const int64_t tiles = (inner + bx - 1) / bx;
  const dim3 block(bx, ry);
  const dim3 grid(static_cast<unsigned>(tiles < kMaxBlocks ? tiles : kMaxBlocks),
                  static_cast<unsigned>(outer < 65535 ? outer : 65535));
  const size_t smem = ry > 1 ? sizeof(float) * kBlock : 0;
  reduce_tiled_kernel<<<grid, block, smem, stream>>>(x, out, outer, reduce, inner, scale);
  CAPTION_CUDA_LAUNCH_CHECK("reduce_tiled_kernel");
}

void reduce_sum_backward(const float* grad_out, float* grad_x, int64_t outer, int64_t reduce,
                         int64_t inner, float scale, cudaStream_t stream) {
  const int64_t n = outer * reduce * inner;
  if (n == 0) return;
  reduce_backward_kernel<<<grid_for(n), kBlock, 0, stream>>>(grad_out, grad_x, reduce, inner,
                                                             scale, n);
  CAPTION_CUDA_LAUNCH_CHECK("reduce_backward_kernel");
}

namespace {

// Whether (va, ia) comes before (vb, ib) as the maximum: a NaN first, then the larger
// value, then the smaller index.
__device__ __forceinline__ bool max_before(float va, int64_t ia, float vb, int64_t ib) {
  const bool na = va != va, nb = vb != vb;
  if (na || nb) return na && (!nb || ia < ib);
  return va > vb || (va == vb && ia < ib);
}

__global__ void max_last_kernel(const float* x, float* values, int64_t* indices, int64_t rows,
                                int64_t cols) {
  __shared__ float best_v[kBlock / 32];
  __shared__ int64_t best_i[kBlock / 32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float* row = x + r * cols;
    float v = row[0];
    int64_t i = 0;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x)
      if (max_before(row[c], c, v, i)) {
        v = row[c];
        i = c;
      }
    for (int offset = 16; offset > 0; offset >>= 1) {
      const float ov = __shfl_down_sync(0xffffffffu, v, offset);
      const int64_t oi = __shfl_down_sync(0xffffffffu, i, offset);
      if (max_before(ov, oi, v, i)) {
        v = ov;
        i = oi;
      }
    }
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) {
      best_v[warp] = v;
      best_i[warp] = i;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      for (int w = 1; w < static_cast<int>(blockDim.x >> 5); ++w)
        if (max_before(best_v[w], best_i[w], v, i)) {
          v = best_v[w];
          i = best_i[w];
        }
      values[r] = v;
      indices[r] = i;
    }
    __syncthreads();
  }
}

// kernels/cpu/reduce.h's extension_before.
__device__ __forceinline__ bool extension_before(double a, int64_t ia, double b, int64_t ib) {
  const bool na = a != a, nb = b != b;
  if (na || nb) return na && (!nb || ia < ib);
  return a > b || (a == b && ia < ib);
}

// One block. Round r: every thread finds its best candidate among those ranked after the
// previous choice (index -1: none yet), the warps and then thread 0 combine them in a
// fixed order, and thread 0 writes the choice.
__global__ void top_extensions_kernel(const float* __restrict__ log_probs,
                                      const double* __restrict__ base, int64_t K, int64_t V,
                                      int64_t take, int64_t* indices, float* values,
                                      double* scores) {
  __shared__ double warp_v[kBlock / 32];
  __shared__ int64_t warp_i[kBlock / 32];
  __shared__ double last_v;
  __shared__ int64_t last_i;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (threadIdx.x == 0) {
    last_v = 0.0;
    last_i = -1;
  }
  __syncthreads();
  for (int64_t r = 0; r < take; ++r) {
    const double lv = last_v;
    const int64_t li = last_i;
    double v = 0.0;
    int64_t i = -1;  // none
    // Hypothesis by hypothesis (no index division per candidate); the total order of
    // extension_before decides, so the scan order does not change the choice.
    for (int64_t k = 0; k < K; ++k) {
      const double bk = base[k];
      const float* row = log_probs + k * V;
      for (int64_t j = threadIdx.x; j < V; j += blockDim.x) {
        const int64_t c = k * V + j;
        const double s = bk + static_cast<double>(row[j]);
        if (li >= 0 && !extension_before(lv, li, s, c)) continue;  // chosen already
        if (i < 0 || extension_before(s, c, v, i)) {
          v = s;
          i = c;
        }
      }
    }
    for (int offset = 16; offset > 0; offset >>= 1) {
      const double ov = __shfl_down_sync(0xffffffffu, v, offset);
      const int64_t oi = __shfl_down_sync(0xffffffffu, i, offset);
      if (oi >= 0 && (i < 0 || extension_before(ov, oi, v, i))) {
        v = ov;
        i = oi;
      }
    }
    if (lane == 0) {
      warp_v[warp] = v;
      warp_i[warp] = i;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      double bv = warp_v[0];
      int64_t bi = warp_i[0];
      for (int w = 1; w < static_cast<int>(blockDim.x >> 5); ++w)
        if (warp_i[w] >= 0 && (bi < 0 || extension_before(warp_v[w], warp_i[w], bv, bi))) {
          bv = warp_v[w];
          bi = warp_i[w];
        }
      indices[r] = bi;
      values[r] = log_probs[bi];
      if (scores) scores[r] = bv;
      last_v = bv;
      last_i = bi;
    }
    __syncthreads();
  }
}

}  // namespace

void top_extensions(const float* log_probs, const double* base, int64_t K, int64_t V,
                    int64_t take, int64_t* indices, float* values, double* scores,
                    cudaStream_t stream) {
  if (take == 0) return;
  top_extensions_kernel<<<1, kBlock, 0, stream>>>(log_probs, base, K, V, take, indices, values,
                                                  scores);
  CAPTION_CUDA_LAUNCH_CHECK("top_extensions_kernel");
}

void max_last(const float* x, float* values, int64_t* indices, int64_t rows, int64_t cols,
              cudaStream_t stream) {
  if (rows == 0) return;
  max_last_kernel<<<grid_for(rows, 1), kBlock, 0, stream>>>(x, values, indices, rows, cols);
  CAPTION_CUDA_LAUNCH_CHECK("max_last_kernel");
}

}  // namespace caption::kernels::cuda
