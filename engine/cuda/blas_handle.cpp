// See blas_handle.h.
#include "engine/cuda/blas_handle.h"

#include "engine/cuda/check.h"
#include "engine/cuda/context.h"
#include "engine/cuda/precision.h"

namespace caption::cuda {

cublasHandle_t cublas_handle(Device d) {
  cublasHandle_t h = context(d).cublas;
  CAPTION_CUBLAS_CHECK(
      cublasSetMathMode(h, tf32_enabled() ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
  return h;
}

}  // namespace caption::cuda
