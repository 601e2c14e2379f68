// Launch helpers and reductions shared by the .cu files of kernels/cuda (device code
// only; included by .cu files).
//
// Launch configuration: elementwise kernels use 256-thread blocks and grid-stride loops
// with 64-bit indices, the grid capped at kMaxBlocks, so any n is covered by any grid
// and no grid dimension can overflow. Callers never launch with zero blocks: each entry
// point returns early when there is nothing to do.
//
// Reductions are deterministic: every thread accumulates a fixed subset of the terms in
// a fixed order, and partial sums are combined by a fixed shuffle tree (then, across
// warps, by one thread in warp order). No atomics, so results are bit-identical from
// run to run for the same shapes.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "engine/cuda/check.h"

namespace caption::kernels::cuda {

inline constexpr int kBlock = 256;
inline constexpr int64_t kMaxBlocks = 65536;

// Blocks for n items at `per_block` items per block (n > 0), capped.
inline unsigned grid_for(int64_t n, int64_t per_block = kBlock) {
  const int64_t blocks = (n + per_block - 1) / per_block;
  return static_cast<unsigned>(blocks < kMaxBlocks ? blocks : kMaxBlocks);
}

__device__ __forceinline__ int64_t global_thread() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t grid_threads() {
  return static_cast<int64_t>(gridDim.x) * blockDim.x;
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
  return v;  // complete in lane 0
}
__device__ __forceinline__ double warp_sum(double v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
  return v;
}
// Butterfly: every lane ends with the maximum.
__device__ __forceinline__ float warp_max_all(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1)
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}
// Butterfly sum: every lane ends with the same total (the tree is the same in every
// lane, so the value is identical across lanes and runs).
__device__ __forceinline__ float warp_sum_all(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the
// total. `scratch` holds 32 values; the call begins and ends with __syncthreads so it
// can be used repeatedly with the same scratch.
template <typename T>
__device__ __forceinline__ T block_sum_all(T v, T* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int warps = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  if (threadIdx.x == 0) {
    T total = scratch[0];
    for (int w = 1; w < warps; ++w) total += scratch[w];
    scratch[0] = total;
  }
  __syncthreads();
  const T total = scratch[0];
  __syncthreads();
  return total;
}

// Maximum over the block; every thread gets it. Same contract as block_sum_all.
__device__ __forceinline__ float block_max_all(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int warps = blockDim.x >> 5;
  v = warp_max_all(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  if (threadIdx.x == 0) {
    float m = scratch[0];
    for (int w = 1; w < warps; ++w) m = fmaxf(m, scratch[w]);
    scratch[0] = m;
  }
  __syncthreads();
  const float m = scratch[0];
  __syncthreads();
  return m;
}

}  // namespace caption::kernels::cuda
