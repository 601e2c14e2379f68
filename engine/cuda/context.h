// Per-device CUDA state: the stream ops run on, and the cuBLAS and cuDNN handles bound
// to it. Created on first use for each device; one stream per device keeps ordering
// simple (all ops of a device are ordered on it).
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include "engine/device.h"

namespace caption::cuda {

struct DeviceContext {
  int device = 0;
  cudaStream_t stream = nullptr;
  cublasHandle_t cublas = nullptr;
  cudnnHandle_t cudnn = nullptr;
};

// The context of a device (sets it as the current CUDA device).
DeviceContext& context(int device);
inline DeviceContext& context(Device d) { return context(d.index); }
inline cudaStream_t stream(Device d) { return context(d).stream; }

}  // namespace caption::cuda
