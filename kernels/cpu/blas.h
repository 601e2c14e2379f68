// Matrix products on the CPU through OpenBLAS (row-major), for float and double.
#pragma once

#include <cstdint>

namespace caption::kernels::cpu {

enum class Trans { No, Yes };

// C[M, N] = alpha * op(A)[M, K] * op(B)[K, N] + beta * C, row-major with leading
// dimensions lda, ldb, ldc.
template <typename T>
void gemm(Trans ta, Trans tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
          const T* B, int64_t ldb, T beta, T* C, int64_t ldc);

// Sets the number of threads OpenBLAS uses (0 = its default).
void set_blas_threads(int threads);
int blas_threads();

}  // namespace caption::kernels::cpu
