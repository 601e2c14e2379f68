// cuBLAS in the CUDA host emulator: column-major products on the host through OpenBLAS.
//
// Every call first makes cuBLAS's own argument checks (sizes >= 0, leading dimensions
// at least the stored rows), then checks that each matrix, as addressed through its
// leading dimension and batch stride, lies inside one device block: on a GPU a wrong
// leading dimension or a host pointer reads garbage or faults somewhere later; here the
// call fails at once and says which operand is out of bounds.
//
// Semantics kept: beta == 0 does not read C (C may hold NaN); bfloat16 operands
// (cublasGemmEx) are widened exactly and the products accumulate in float32. TF32 math
// mode is not modelled (the products stay float32).
#include <cblas.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "cublas_v2.h"
#include "emu_internal.h"

struct cublasContext {
  cudaStream_t stream = nullptr;
  cublasMath_t math = CUBLAS_DEFAULT_MATH;
};

namespace {

cublasStatus_t failure(cublasStatus_t status, const std::string& what) {
  std::fprintf(stderr, "cuda emulator: cuBLAS: %s\n", what.c_str());
  return status;
}

// Rows and columns of op(X) stored column-major, as cuBLAS sees X.
struct Stored {
  long long rows, cols;
};
Stored stored(cublasOperation_t op, long long r, long long c) {
  return op == CUBLAS_OP_N ? Stored{r, c} : Stored{c, r};
}

bool inside(const void* p, long long rows, long long cols, long long ld, long long stride,
            long long batch, size_t element) {
  if (rows == 0 || cols == 0 || batch == 0) return true;
  const long long last = (batch - 1) * stride + (cols - 1) * ld + rows;  // elements
  return caption_emu::is_device_range(p, static_cast<size_t>(last) * element);
}

size_t size_of(cudaDataType t) {
  switch (t) {
    case CUDA_R_32F: return 4;
    case CUDA_R_16BF: return 2;
    default: return 0;
  }
}

float widen_bf16(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// The shared body of the four gemm entry points.
cublasStatus_t gemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                    int k, float alpha, const void* A, cudaDataType at, int lda, long long sa,
                    const void* B, cudaDataType bt, int ldb, long long sb, float beta, float* C,
                    int ldc, long long sc, int batch, const char* name) {
  if (h == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  const std::string call = name;
  if (m < 0 || n < 0 || k < 0 || batch < 0)
    return failure(CUBLAS_STATUS_INVALID_VALUE, call + ": negative size");
  if ((ta != CUBLAS_OP_N && ta != CUBLAS_OP_T) || (tb != CUBLAS_OP_N && tb != CUBLAS_OP_T))
    return failure(CUBLAS_STATUS_INVALID_VALUE, call + ": unsupported operation");
  const Stored as = stored(ta, m, k), bs = stored(tb, k, n);
  if (lda < std::max<long long>(1, as.rows) || ldb < std::max<long long>(1, bs.rows) ||
      ldc < std::max(1, m))
    return failure(CUBLAS_STATUS_INVALID_VALUE,
                   call + ": leading dimension too small (lda " + std::to_string(lda) + " for " +
                       std::to_string(as.rows) + " rows, ldb " + std::to_string(ldb) + " for " +
                       std::to_string(bs.rows) + " rows, ldc " + std::to_string(ldc) + " for " +
                       std::to_string(m) + " rows)");
  const size_t ea = size_of(at), eb = size_of(bt);
  if (ea == 0 || eb == 0) return failure(CUBLAS_STATUS_NOT_SUPPORTED, call + ": data type");
  if (m == 0 || n == 0 || batch == 0) return CUBLAS_STATUS_SUCCESS;
  if (!inside(C, m, n, ldc, sc, batch, 4))
    return failure(CUBLAS_STATUS_EXECUTION_FAILED, call + ": C is not inside device memory");
  if (k > 0 && !inside(A, as.rows, as.cols, lda, sa, batch, ea))
    return failure(CUBLAS_STATUS_EXECUTION_FAILED, call + ": A is not inside device memory");
  if (k > 0 && !inside(B, bs.rows, bs.cols, ldb, sb, batch, eb))
    return failure(CUBLAS_STATUS_EXECUTION_FAILED, call + ": B is not inside device memory");

  // The products run when the stream reaches them (at once, or at each replay of a
  // captured graph), with the scalars as they were at the call.
  caption_emu::enqueue(h->stream, [=] {
  std::vector<float> wa, wb;
  for (int i = 0; i < batch; ++i) {
    float* c = C + i * sc;
    if (beta == 0.0f)
      for (int j = 0; j < n; ++j) std::memset(c + static_cast<long long>(j) * ldc, 0, sizeof(float) * m);
    if (k == 0) {
      if (beta != 0.0f && beta != 1.0f)
        for (int j = 0; j < n; ++j)
          for (int r = 0; r < m; ++r) c[static_cast<long long>(j) * ldc + r] *= beta;
      continue;
    }
    const float* a = nullptr;
    const float* b = nullptr;
    if (at == CUDA_R_32F) {
      a = static_cast<const float*>(A) + i * sa;
    } else {
      const auto* src = static_cast<const uint16_t*>(A) + i * sa;
      wa.assign(static_cast<size_t>(as.cols) * lda, 0.0f);
      for (long long col = 0; col < as.cols; ++col)
        for (long long r = 0; r < as.rows; ++r) wa[col * lda + r] = widen_bf16(src[col * lda + r]);
      a = wa.data();
    }
    if (bt == CUDA_R_32F) {
      b = static_cast<const float*>(B) + i * sb;
    } else {
      const auto* src = static_cast<const uint16_t*>(B) + i * sb;
      wb.assign(static_cast<size_t>(bs.cols) * ldb, 0.0f);
      for (long long col = 0; col < bs.cols; ++col)
        for (long long r = 0; r < bs.rows; ++r) wb[col * ldb + r] = widen_bf16(src[col * ldb + r]);
      b = wb.data();
    }
    cblas_sgemm(CblasColMajor, ta == CUBLAS_OP_N ? CblasNoTrans : CblasTrans,
                tb == CUBLAS_OP_N ? CblasNoTrans : CblasTrans, m, n, k, alpha, a, lda, b, ldb,
                beta == 0.0f ? 0.0f : beta, c, ldc);
  }
  });
  return CUBLAS_STATUS_SUCCESS;
}

}  // namespace

cublasStatus_t cublasCreate(cublasHandle_t* handle) {
  *handle = new cublasContext();
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy(cublasHandle_t handle) {
  delete handle;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetStream(cublasHandle_t handle, cudaStream_t stream) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  handle->stream = stream;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasGetStream(cublasHandle_t handle, cudaStream_t* stream) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  *stream = handle->stream;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  handle->math = mode;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasGetMathMode(cublasHandle_t handle, cublasMath_t* mode) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  *mode = handle->math;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetWorkspace(cublasHandle_t handle, void*, size_t) {
  return handle == nullptr ? CUBLAS_STATUS_NOT_INITIALIZED : CUBLAS_STATUS_SUCCESS;
}

const char* cublasGetStatusName(cublasStatus_t status) {
  switch (status) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    default: return "CUBLAS_STATUS_UNKNOWN";
  }
}
const char* cublasGetStatusString(cublasStatus_t status) { return cublasGetStatusName(status); }

cublasStatus_t cublasSscal(cublasHandle_t handle, int n, const float* alpha, float* x, int incx) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (n <= 0 || incx <= 0) return CUBLAS_STATUS_SUCCESS;
  if (!caption_emu::is_device_range(x, sizeof(float) * (static_cast<size_t>(n - 1) * incx + 1)))
    return failure(CUBLAS_STATUS_EXECUTION_FAILED, "cublasSscal: x is not inside device memory");
  const float a = *alpha;
  caption_emu::enqueue(handle->stream, [=] {
    for (int i = 0; i < n; ++i) x[static_cast<long long>(i) * incx] *= a;
  });
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSgemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                           int n, int k, const float* alpha, const float* A, int lda,
                           const float* B, int ldb, const float* beta, float* C, int ldc) {
  return gemm(h, ta, tb, m, n, k, *alpha, A, CUDA_R_32F, lda, 0, B, CUDA_R_32F, ldb, 0, *beta, C,
              ldc, 0, 1, "cublasSgemm");
}

cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t h, cublasOperation_t ta,
                                         cublasOperation_t tb, int m, int n, int k,
                                         const float* alpha, const float* A, int lda,
                                         long long sa, const float* B, int ldb, long long sb,
                                         const float* beta, float* C, int ldc, long long sc,
                                         int batch) {
  return gemm(h, ta, tb, m, n, k, *alpha, A, CUDA_R_32F, lda, sa, B, CUDA_R_32F, ldb, sb, *beta,
              C, ldc, sc, batch, "cublasSgemmStridedBatched");
}

cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                            int n, int k, const void* alpha, const void* A, cudaDataType at,
                            int lda, const void* B, cudaDataType bt, int ldb, const void* beta,
                            void* C, cudaDataType ct, int ldc, cublasComputeType_t compute,
                            cublasGemmAlgo_t) {
  if (ct != CUDA_R_32F || compute != CUBLAS_COMPUTE_32F)
    return failure(CUBLAS_STATUS_NOT_SUPPORTED, "cublasGemmEx: only float32 C and compute");
  if (at != bt) return failure(CUBLAS_STATUS_NOT_SUPPORTED, "cublasGemmEx: A and B types differ");
  return gemm(h, ta, tb, m, n, k, *static_cast<const float*>(alpha), A, at, lda, 0, B, bt, ldb, 0,
              *static_cast<const float*>(beta), static_cast<float*>(C), ldc, 0, 1, "cublasGemmEx");
}

cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t h, cublasOperation_t ta,
                                          cublasOperation_t tb, int m, int n, int k,
                                          const void* alpha, const void* A, cudaDataType at,
                                          int lda, long long sa, const void* B, cudaDataType bt,
                                          int ldb, long long sb, const void* beta, void* C,
                                          cudaDataType ct, int ldc, long long sc, int batch,
                                          cublasComputeType_t compute, cublasGemmAlgo_t) {
  if (ct != CUDA_R_32F || compute != CUBLAS_COMPUTE_32F)
    return failure(CUBLAS_STATUS_NOT_SUPPORTED,
                   "cublasGemmStridedBatchedEx: only float32 C and compute");
  if (at != bt)
    return failure(CUBLAS_STATUS_NOT_SUPPORTED, "cublasGemmStridedBatchedEx: A and B types differ");
  return gemm(h, ta, tb, m, n, k, *static_cast<const float*>(alpha), A, at, lda, sa, B, bt, ldb,
              sb, *static_cast<const float*>(beta), static_cast<float*>(C), ldc, sc, batch,
              "cublasGemmStridedBatchedEx");
}
