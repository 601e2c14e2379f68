// See blas_handle.h.
#include "engine/cuda/blas_handle.h"

#include <cstdlib>
#include <cstring>

#include "engine/cuda/check.h"
#include "engine/cuda/context.h"

namespace caption::cuda {

namespace {

cublasMath_t math_mode() {
  static const cublasMath_t mode = [] {
    const char* v = std::getenv("CAPTION_TF32");
    const bool tf32 = v != nullptr && std::strcmp(v, "1") == 0;
    // The precision is chosen here, once, and logged at the first product.
    log_info(tf32 ? "cuBLAS products use TF32 tensor cores (CAPTION_TF32=1)"
                  : "cuBLAS products use full float32 (set CAPTION_TF32=1 for TF32)");
    return tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH;
  }();
  return mode;
}

}  // namespace

cublasHandle_t cublas_handle(Device d) {
  cublasHandle_t h = context(d).cublas;
  CAPTION_CUBLAS_CHECK(cublasSetMathMode(h, math_mode()));
  return h;
}

}  // namespace caption::cuda
