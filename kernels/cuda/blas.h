// Matrix products on CUDA through cuBLAS, with the row-major interface of
// kernels/cpu/blas.h. cuBLAS is column-major; a row-major C = op(A) op(B) is computed as
// the column-major C^T = op(B)^T op(A)^T, i.e. by swapping the operands (and M with N):
// a row-major matrix read as column-major is its transpose, so the transpose flags pass
// through unchanged. float32 only. The handle carries the stream and the math mode (set
// by the caller: engine/cuda/linear_cuda.cpp). Sizes of zero are allowed: nothing runs
// when C is empty, and C = beta * C (zeros for beta == 0) when K == 0.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstddef>

#include <cstdint>

#include "kernels/cpu/blas.h"

namespace caption::kernels::cuda {

using cpu::Trans;

// C[M, N] = alpha * op(A)[M, K] op(B)[K, N] + beta * C, row-major with leading
// dimensions lda, ldb, ldc. With K == 0, C must be dense (ldc == N).
void gemm(cublasHandle_t handle, Trans ta, Trans tb, int64_t M, int64_t N, int64_t K,
          float alpha, const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
          float* C, int64_t ldc);

// Under kernels::cpu::Bf16Products (this thread), both functions convert A and B to
// bfloat16 copies in scratch memory (kernels/bf16.h rounding) and multiply them on
// tensor cores with float32 accumulation (cublasGemmEx, CUBLAS_COMPUTE_32F); C stays
// float32. The scratch comes from the provider the engine installs for the scope.
class Bf16Scratch {
 public:
  virtual ~Bf16Scratch() = default;
  // Device memory of at least `bytes`, valid until the provider is uninstalled.
  virtual void* get(size_t bytes) = 0;
};
void set_bf16_scratch(Bf16Scratch* scratch);  // this thread; nullptr uninstalls
Bf16Scratch* bf16_scratch();

// Dense bfloat16 copies [batch][rows][cols] of float32 matrices stored rows x cols with
// leading dimension ld, the i-th at src + i * stride.
void convert_to_bf16(const float* src, int64_t rows, int64_t cols, int64_t ld, int64_t batch,
                     int64_t stride, uint16_t* dst, cudaStream_t stream);

// float32 copies of n bfloat16 values (exact).
void convert_from_bf16(const uint16_t* src, int64_t n, float* dst, cudaStream_t stream);

// Layout conversions of the bfloat16 convolutions: `batch` images of `channels` planes of
// `plane` values, NCHW float32 -> NHWC bfloat16 (rounded as above), and back (exact).
// A filter [O, C, kh, kw] is batch O, channels C, plane kh * kw (KCRS <-> KRSC).
// channels_out > channels zero-pads each pixel's channels (0: no padding).
void nchw_to_nhwc_bf16(const float* src, int64_t batch, int64_t channels, int64_t plane,
                       uint16_t* dst, cudaStream_t stream, int64_t channels_out = 0);
void nhwc_bf16_to_nchw(const uint16_t* src, int64_t batch, int64_t channels, int64_t plane,
                       float* dst, cudaStream_t stream);

// `batch` products C_i = alpha op(A_i) op(B_i) + beta C_i with A_i = A + i * stride_a
// (stride 0: one matrix shared by every product), likewise B and C. With K == 0 the
// C_i must be dense and consecutive (ldc == N, stride_c == M * N).
void gemm_strided_batched(cublasHandle_t handle, Trans ta, Trans tb, int64_t M, int64_t N,
                          int64_t K, float alpha, const float* A, int64_t lda, int64_t stride_a,
                          const float* B, int64_t ldb, int64_t stride_b, float beta, float* C,
                          int64_t ldc, int64_t stride_c, int64_t batch);

}  // namespace caption::kernels::cuda
