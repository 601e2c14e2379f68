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

thread_local Bf16Scratch* t_scratch = nullptr;

cudaStream_t stream_of(cublasHandle_t handle) {
  cudaStream_t stream = nullptr;
  CAPTION_CUBLAS_CHECK(cublasGetStream(handle, &stream));
  return stream;
}

// bfloat16 copies of one gemm's operands (batch copies, or one when shared: stride 0).
struct Bf16Operands {
  const void* a = nullptr;
  const void* b = nullptr;
  int64_t lda = 0, ldb = 0, stride_a = 0, stride_b = 0;
};

Bf16Operands to_bf16_operands(cublasHandle_t handle, Trans ta, Trans tb, int64_t M, int64_t N,
                              int64_t K, const float* A, int64_t lda, int64_t stride_a,
                              const float* B, int64_t ldb, int64_t stride_b, int64_t batch) {
  Bf16Scratch* scratch = t_scratch;
  CAPTION_CHECK(scratch != nullptr, "cuBLAS gemm: bfloat16 products were asked for without "
                "scratch memory (open engine/cuda/precision.h's Bf16ProductScope)");
  const cudaStream_t stream = stream_of(handle);
  // Stored shapes: A is M x K (K x M transposed), B is K x N (N x K transposed).
  const int64_t a_rows = ta == Trans::No ? M : K, a_cols = ta == Trans::No ? K : M;
  const int64_t b_rows = tb == Trans::No ? K : N, b_cols = tb == Trans::No ? N : K;
  const int64_t a_copies = stride_a == 0 ? 1 : batch, b_copies = stride_b == 0 ? 1 : batch;
  Bf16Operands o;
  // An operand with a shadow (cpu::Bf16ShadowScope) is read there, in its own layout;
  // the others are converted into dense scratch copies.
  auto operand = [&](const float* X, int64_t rows, int64_t cols, int64_t ld, int64_t copies,
                     int64_t stride, const void** x16, int64_t* ld16, int64_t* stride16) {
    const float* last = X + (copies - 1) * stride + (rows - 1) * ld + (cols - 1);
    if (const uint16_t* shadow = cpu::bf16_shadow_of(X, last)) {
      *x16 = shadow;
      *ld16 = ld;
      *stride16 = stride;
      return;
    }
    auto* dense = static_cast<uint16_t*>(scratch->get(sizeof(uint16_t) * rows * cols * copies));
    convert_to_bf16(X, rows, cols, ld, copies, stride, dense, stream);
    *x16 = dense;
    *ld16 = cols;
    *stride16 = stride == 0 ? 0 : rows * cols;
  };
  operand(A, a_rows, a_cols, lda, a_copies, stride_a, &o.a, &o.lda, &o.stride_a);
  operand(B, b_rows, b_cols, ldb, b_copies, stride_b, &o.b, &o.ldb, &o.stride_b);
  return o;
}

}  // namespace

void set_bf16_scratch(Bf16Scratch* scratch) { t_scratch = scratch; }
Bf16Scratch* bf16_scratch() { return t_scratch; }

void gemm(cublasHandle_t handle, Trans ta, Trans tb, int64_t M, int64_t N, int64_t K,
          float alpha, const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
          float* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  if (K == 0) {
    CAPTION_ASSERT(ldc == N, "gemm with K == 0 needs a dense C");
    scale_dense(handle, beta, C, M * N);
    return;
  }
  if (cpu::bf16_products()) {
    const Bf16Operands o = to_bf16_operands(handle, ta, tb, M, N, K, A, lda, 0, B, ldb, 0, 1);
    CAPTION_CUBLAS_CHECK(cublasGemmEx(
        handle, op_of(tb), op_of(ta), checked_int(N, "N"), checked_int(M, "M"),
        checked_int(K, "K"), &alpha, o.b, CUDA_R_16BF, checked_int(o.ldb, "ldb"), o.a,
        CUDA_R_16BF, checked_int(o.lda, "lda"), &beta, C, CUDA_R_32F, checked_int(ldc, "ldc"),
        CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
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
  if (cpu::bf16_products()) {
    const Bf16Operands o = to_bf16_operands(handle, ta, tb, M, N, K, A, lda, stride_a, B, ldb,
                                            stride_b, batch);
    CAPTION_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
        handle, op_of(tb), op_of(ta), checked_int(N, "N"), checked_int(M, "M"),
        checked_int(K, "K"), &alpha, o.b, CUDA_R_16BF, checked_int(o.ldb, "ldb"), o.stride_b,
        o.a, CUDA_R_16BF, checked_int(o.lda, "lda"), o.stride_a, &beta, C, CUDA_R_32F,
        checked_int(ldc, "ldc"), stride_c, checked_int(batch, "batch"), CUBLAS_COMPUTE_32F,
        CUBLAS_GEMM_DEFAULT));
    return;
  }
  CAPTION_CUBLAS_CHECK(cublasSgemmStridedBatched(
      handle, op_of(tb), op_of(ta), checked_int(N, "N"), checked_int(M, "M"),
      checked_int(K, "K"), &alpha, B, checked_int(ldb, "ldb"), stride_b, A,
      checked_int(lda, "lda"), stride_a, &beta, C, checked_int(ldc, "ldc"), stride_c,
      checked_int(batch, "batch")));
}

}  // namespace caption::kernels::cuda
