// cuBLAS wrappers with a row-major interface (see blas.h for the operand swap). Sizes
// are checked to fit cuBLAS's 32-bit arguments, with a message naming them.
#include "kernels/cuda/blas.h"

#include <climits>

#include "engine/cuda/check.h"

namespace caption::kernels::cuda {

namespace {

cublasOperation_t op_of(Trans t) { return t == Trans::Yes ? CUBLAS_OP_T : CUBLAS_OP_N; }

int checked_int(int64_t v, const char* what) {
  CAPTION_CHECK(v >= 0 && v <= INT_MAX, "cuBLAS gemm: ", what, " = ", v,
                " does not fit a 32-bit cuBLAS argument");
  return static_cast<int>(v);
}

// C = beta * C for the K == 0 case, which cuBLAS is not asked to handle.
void scale_dense(cublasHandle_t handle, float beta, float* C, int64_t n) {
  cudaStream_t stream = nullptr;
  CAPTION_CUBLAS_CHECK(cublasGetStream(handle, &stream));
  if (beta == 0.f) {
    CAPTION_CUDA_CHECK(cudaMemsetAsync(C, 0, sizeof(float) * n, stream));
  } else if (beta != 1.f) {
    CAPTION_CUBLAS_CHECK(cublasSscal(handle, checked_int(n, "M * N"), &beta, C, 1));
  }
}

}  // namespace

void gemm(cublasHandle_t handle, Trans ta, Trans tb, int64_t M, int64_t N, int64_t K,
          float alpha, const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
          float* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  if (K == 0) {
    CAPTION_ASSERT(ldc == N, "gemm with K == 0 needs a dense C");
    scale_dense(handle, beta, C, M * N);
    return;
  }
  // Row-major C = op(A) op(B)  <=>  column-major C^T = op(B)^T op(A)^T.
  CAPTION_CUBLAS_CHECK(cublasSgemm(handle, op_of(tb), op_of(ta), checked_int(N, "N"),
                                   checked_int(M, "M"), checked_int(K, "K"), &alpha, B,
                                   checked_int(ldb, "ldb"), A, checked_int(lda, "lda"), &beta, C,
                                   checked_int(ldc, "ldc")));
}

void gemm_strided_batched(cublasHandle_t handle, Trans ta, Trans tb, int64_t M, int64_t N,
                          int64_t K, float alpha, const float* A, int64_t lda, int64_t stride_a,
                          const float* B, int64_t ldb, int64_t stride_b, float beta, float* C,
                          int64_t ldc, int64_t stride_c, int64_t batch) {
  if (M == 0 || N == 0 || batch == 0) return;
  if (K == 0) {
    CAPTION_ASSERT(ldc == N && stride_c == M * N, "batched gemm with K == 0 needs dense C");
    scale_dense(handle, beta, C, batch * M * N);
    return;
  }
  if (batch == 1) {
    gemm(handle, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  CAPTION_CUBLAS_CHECK(cublasSgemmStridedBatched(
      handle, op_of(tb), op_of(ta), checked_int(N, "N"), checked_int(M, "M"),
      checked_int(K, "K"), &alpha, B, checked_int(ldb, "ldb"), stride_b, A,
      checked_int(lda, "lda"), stride_a, &beta, C, checked_int(ldc, "ldc"), stride_c,
      checked_int(batch, "batch")));
}

}  // namespace caption::kernels::cuda
