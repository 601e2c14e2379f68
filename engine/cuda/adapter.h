// Shared helpers of the CUDA op adapters (engine/cuda/*_cuda.cpp).
#pragma once

#include "engine/error.h"
#include "engine/tensor.h"

namespace caption::cuda {

// The CUDA backend computes in float32 only; other dtypes are refused by name.
inline void require_f32(const Tensor& t, const char* op) {
  CAPTION_CHECK(t.dtype() == DType::F32, op, ": the CUDA backend computes in float32 only, got ",
                t.describe());
}

}  // namespace caption::cuda
