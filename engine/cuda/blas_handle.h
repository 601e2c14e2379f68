// The device's cuBLAS handle with the engine's math mode applied, for every CUDA adapter
// that runs products (matmul, linear, the LSTM cell). The precision comes from the one
// switch in engine/cuda/precision.h (full float32 unless CAPTION_TF32=1) and is applied
// before every use, so nothing else sharing the handle can change it under us.
#pragma once

#include <cublas_v2.h>

#include "engine/device.h"

namespace caption::cuda {

cublasHandle_t cublas_handle(Device d);

}  // namespace caption::cuda
