// The device's cuBLAS handle with the engine's math mode applied, for every CUDA adapter
// that runs products (matmul, linear, the LSTM cell). The precision is set here, in one
// place, and logged at the first product: full float32 (CUBLAS_DEFAULT_MATH) unless
// CAPTION_TF32=1 selects TF32 tensor cores. It is applied before every use, so nothing
// else sharing the handle can change it under us.
#pragma once

#include <cublas_v2.h>

#include "engine/device.h"

namespace caption::cuda {

cublasHandle_t cublas_handle(Device d);

}  // namespace caption::cuda
