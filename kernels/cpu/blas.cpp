// OpenBLAS wrappers. Zero-sized products still honour beta (C = beta * C), which
// OpenBLAS may skip, so that callers can rely on "every element written".
#include "kernels/cpu/blas.h"

#include <cblas.h>

#include <vector>

#include "kernels/bf16.h"

namespace caption::kernels::cpu {

namespace {
CBLAS_TRANSPOSE to_cblas(Trans t) { return t == Trans::Yes ? CblasTrans : CblasNoTrans; }

template <typename T>
void scale_c(int64_t M, int64_t N, T beta, T* C, int64_t ldc) {
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) C[i * ldc + j] = beta == T(0) ? T(0) : C[i * ldc + j] * beta;
}
thread_local bool t_bf16_products = false;

// A stored rows x cols matrix (leading dimension ld), rounded to bfloat16, dense.
std::vector<float> rounded_copy(const float* A, int64_t rows, int64_t cols, int64_t ld) {
  std::vector<float> out(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) out[r * cols + c] = round_to_bf16(A[r * ld + c]);
  return out;
}
}  // namespace

Bf16Products::Bf16Products(bool on) : previous_(t_bf16_products) { t_bf16_products = on; }
Bf16Products::~Bf16Products() { t_bf16_products = previous_; }
bool bf16_products() { return t_bf16_products; }

namespace {
thread_local const std::vector<Bf16Shadow>* t_bf16_shadows = nullptr;
}  // namespace

Bf16ShadowScope::Bf16ShadowScope(const std::vector<Bf16Shadow>* shadows) : previous_(t_bf16_shadows) {
  t_bf16_shadows = shadows;
}
Bf16ShadowScope::~Bf16ShadowScope() { t_bf16_shadows = previous_; }

const uint16_t* bf16_shadow_of(const float* first, const float* last) {
  if (t_bf16_shadows == nullptr) return nullptr;
  for (const Bf16Shadow& s : *t_bf16_shadows)
    if (first >= s.source && last < s.source + s.numel) return s.copy + (first - s.source);
  return nullptr;
}

template <>
void gemm<float>(Trans ta, Trans tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                 int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  if (K == 0) return scale_c(M, N, beta, C, ldc);
  if (t_bf16_products) {
    // Stored shapes: A is M x K (K x M transposed), B is K x N (N x K transposed).
    const int64_t a_rows = ta == Trans::No ? M : K, a_cols = ta == Trans::No ? K : M;
    const int64_t b_rows = tb == Trans::No ? K : N, b_cols = tb == Trans::No ? N : K;
    const std::vector<float> a16 = rounded_copy(A, a_rows, a_cols, lda);
    const std::vector<float> b16 = rounded_copy(B, b_rows, b_cols, ldb);
    cblas_sgemm(CblasRowMajor, to_cblas(ta), to_cblas(tb), static_cast<int>(M),
                static_cast<int>(N), static_cast<int>(K), alpha, a16.data(),
                static_cast<int>(a_cols), b16.data(), static_cast<int>(b_cols), beta, C,
                static_cast<int>(ldc));
    return;
  }
  cblas_sgemm(CblasRowMajor, to_cblas(ta), to_cblas(tb), static_cast<int>(M), static_cast<int>(N),
              static_cast<int>(K), alpha, A, static_cast<int>(lda), B, static_cast<int>(ldb), beta,
              C, static_cast<int>(ldc));
}

template <>
void gemm<double>(Trans ta, Trans tb, int64_t M, int64_t N, int64_t K, double alpha,
                  const double* A, int64_t lda, const double* B, int64_t ldb, double beta,
                  double* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  if (K == 0) return scale_c(M, N, beta, C, ldc);
  cblas_dgemm(CblasRowMajor, to_cblas(ta), to_cblas(tb), static_cast<int>(M), static_cast<int>(N),
              static_cast<int>(K), alpha, A, static_cast<int>(lda), B, static_cast<int>(ldb), beta,
              C, static_cast<int>(ldc));
}

void set_blas_threads(int threads) { openblas_set_num_threads(threads); }
int blas_threads() { return openblas_get_num_threads(); }

}  // namespace caption::kernels::cpu
