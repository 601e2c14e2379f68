// float32 -> bfloat16 conversion of (strided, batched) matrices for the bfloat16
// products of kernels/cuda/blas.cpp. The rounding is kernels/bf16.h's, the same
// function the CPU twin runs, so both sides multiply the same bfloat16 values.
#include "kernels/bf16.h"
#include "kernels/cuda/blas.h"
#include "kernels/cuda/common.cuh"

namespace caption::kernels::cuda {

namespace {

__global__ void convert_to_bf16_kernel(const float* src, int64_t rows, int64_t cols, int64_t ld,
                                       int64_t batch, int64_t stride, uint16_t* dst) {
  const int64_t n = batch * rows * cols;
  for (int64_t i = global_thread(); i < n; i += grid_threads()) {
    const int64_t c = i % cols, r = (i / cols) % rows, b = i / (cols * rows);
    dst[i] = bf16_bits(src[b * stride + r * ld + c]);
  }
}

__global__ void convert_from_bf16_kernel(const uint16_t* src, int64_t n, float* dst) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) dst[i] = bf16_to_float(src[i]);
}

}  // namespace

void convert_from_bf16(const uint16_t* src, int64_t n, float* dst, cudaStream_t stream) {
  if (n == 0) return;
  convert_from_bf16_kernel<<<grid_for(n), kBlock, 0, stream>>>(src, n, dst);
  CAPTION_CUDA_LAUNCH_CHECK("convert_from_bf16_kernel");
}

void convert_to_bf16(const float* src, int64_t rows, int64_t cols, int64_t ld, int64_t batch,
                     int64_t stride, uint16_t* dst, cudaStream_t stream) {
  const int64_t n = batch * rows * cols;
  if (n == 0) return;
  convert_to_bf16_kernel<<<grid_for(n), kBlock, 0, stream>>>(src, rows, cols, ld, batch, stride, dst);
  CAPTION_CUDA_LAUNCH_CHECK("convert_to_bf16_kernel");
}

}  // namespace caption::kernels::cuda
