// float32 -> bfloat16 conversion of (strided, batched) matrices for the bfloat16
// products of kernels/cuda/blas.cpp, and the NCHW <-> NHWC conversions of the bfloat16
// convolutions (engine/cuda/conv_cuda.cpp). The rounding is kernels/bf16.h's, the same
// function the CPU twin runs, so both sides multiply the same bfloat16 values.
#include "kernels/bf16.h"
#include "kernels/cuda/blas.h"
#include "kernels/cuda/common.cuh"
#include "engine/error.h"

namespace caption::kernels::cuda {

namespace {

__global__ void convert_dense_to_bf16_kernel(const float* src, int64_t n, uint16_t* dst) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) dst[i] = bf16_bits(src[i]);
}

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

// Each of `batch` matrices rows x cols (dense) written transposed, cols x rows, with the
// element converted: 32 x 32 tiles through shared memory, so that reads and writes are
// both coalesced. Block (32, 8); grid (column tiles, row tiles, batch).
// Row r of the result starts ld_dst >= rows elements after row r - 1 (padding left as it
// is), so each result matrix spans cols * ld_dst elements.
template <typename In, typename Out, typename Convert>
__global__ void transpose_convert_kernel(const In* src, int64_t rows, int64_t cols, Out* dst,
                                         int64_t ld_dst, Convert convert) {
  __shared__ Out tile[32][33];
  const int64_t b = blockIdx.z;
  const int64_t r0 = static_cast<int64_t>(blockIdx.y) * 32, c0 = static_cast<int64_t>(blockIdx.x) * 32;
  const In* s = src + b * rows * cols;
  Out* d = dst + b * cols * ld_dst;
  for (int k = threadIdx.y; k < 32; k += blockDim.y) {
    const int64_t r = r0 + k, c = c0 + threadIdx.x;
    if (r < rows && c < cols) tile[k][threadIdx.x] = convert(s[r * cols + c]);
  }
  __syncthreads();
  for (int k = threadIdx.y; k < 32; k += blockDim.y) {
    const int64_t c = c0 + k, r = r0 + threadIdx.x;
    if (r < rows && c < cols) d[c * ld_dst + r] = tile[threadIdx.x][k];
  }
}

struct ToBf16 {
  __device__ uint16_t operator()(float x) const { return bf16_bits(x); }
};
struct FromBf16 {
  __device__ float operator()(uint16_t x) const { return bf16_to_float(x); }
};

template <typename In, typename Out, typename Convert>
void transpose_convert(const In* src, int64_t batch, int64_t rows, int64_t cols, Out* dst,
                       int64_t ld_dst, Convert convert, cudaStream_t stream, const char* name) {
  if (batch == 0 || rows == 0 || cols == 0) return;
  CAPTION_CHECK(batch <= 65535 && (rows + 31) / 32 <= 65535,
                "layout conversion: ", batch, " matrices of ", rows, " x ", cols,
                " exceed the launch grid");
  const dim3 grid(static_cast<unsigned>((cols + 31) / 32), static_cast<unsigned>((rows + 31) / 32),
                  static_cast<unsigned>(batch));
  transpose_convert_kernel<In, Out, Convert><<<grid, dim3(32, 8), 0, stream>>>(src, rows, cols, dst, ld_dst, convert);
  CAPTION_CUDA_LAUNCH_CHECK(name);
}

}  // namespace

void nchw_to_nhwc_bf16(const float* src, int64_t batch, int64_t channels, int64_t plane,
                       uint16_t* dst, cudaStream_t stream, int64_t channels_out) {
  if (channels_out <= 0) channels_out = channels;
  if (channels_out > channels && batch * plane > 0) {
    CAPTION_CUDA_CHECK(cudaMemsetAsync(dst, 0, sizeof(uint16_t) * batch * plane * channels_out, stream));
  }
  transpose_convert(src, batch, channels, plane, dst, channels_out, ToBf16{}, stream,
                    "nchw_to_nhwc_bf16");
}

void nhwc_bf16_to_nchw(const uint16_t* src, int64_t batch, int64_t channels, int64_t plane,
                       float* dst, cudaStream_t stream) {
  transpose_convert(src, batch, plane, channels, dst, plane, FromBf16{}, stream, "nhwc_bf16_to_nchw");
}

void convert_from_bf16(const uint16_t* src, int64_t n, float* dst, cudaStream_t stream) {
  if (n == 0) return;
  convert_from_bf16_kernel<<<grid_for(n), kBlock, 0, stream>>>(src, n, dst);
  CAPTION_CUDA_LAUNCH_CHECK("convert_from_bf16_kernel");
}

void convert_to_bf16(const float* src, int64_t rows, int64_t cols, int64_t ld, int64_t batch,
                     int64_t stride, uint16_t* dst, cudaStream_t stream) {
  const int64_t n = batch * rows * cols;
  if (n == 0) return;
  if (ld == cols && (batch == 1 || stride == rows * cols)) {  // dense: no index arithmetic
    convert_dense_to_bf16_kernel<<<grid_for(n), kBlock, 0, stream>>>(src, n, dst);
    CAPTION_CUDA_LAUNCH_CHECK("convert_dense_to_bf16_kernel");
    return;
  }
  convert_to_bf16_kernel<<<grid_for(n), kBlock, 0, stream>>>(src, rows, cols, ld, batch, stride, dst);
  CAPTION_CUDA_LAUNCH_CHECK("convert_to_bf16_kernel");
}

}  // namespace caption::kernels::cuda
