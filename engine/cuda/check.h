// The check macros of the CUDA backend: each reports the failing statement, file and
// line, the device and the library's own message, and throws caption::Error. Every
// kernel launch is followed by CAPTION_CUDA_LAUNCH_CHECK(); with CAPTION_CUDA_SYNC=1 in
// the environment it also synchronises, so an asynchronous fault names its kernel.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include "engine/error.h"

namespace caption::cuda {

[[noreturn]] void throw_cuda_error(cudaError_t status, const char* stmt, const char* file, int line);
[[noreturn]] void throw_cublas_error(cublasStatus_t status, const char* stmt, const char* file, int line);
[[noreturn]] void throw_cudnn_error(cudnnStatus_t status, const char* stmt, const char* file, int line);
void launch_check(const char* what, const char* file, int line);
bool sync_after_launch();  // CAPTION_CUDA_SYNC=1

}  // namespace caption::cuda

#define CAPTION_CUDA_CHECK(stmt)                                                    \
  do {                                                                              \
    const cudaError_t caption_status_ = (stmt);                                     \
    if (caption_status_ != cudaSuccess)                                             \
      ::caption::cuda::throw_cuda_error(caption_status_, #stmt, __FILE__, __LINE__); \
  } while (0)

#define CAPTION_CUBLAS_CHECK(stmt)                                                      \
  do {                                                                                  \
    const cublasStatus_t caption_status_ = (stmt);                                      \
    if (caption_status_ != CUBLAS_STATUS_SUCCESS)                                       \
      ::caption::cuda::throw_cublas_error(caption_status_, #stmt, __FILE__, __LINE__);   \
  } while (0)

#define CAPTION_CUDNN_CHECK(stmt)                                                      \
  do {                                                                                 \
    const cudnnStatus_t caption_status_ = (stmt);                                      \
    if (caption_status_ != CUDNN_STATUS_SUCCESS)                                       \
      ::caption::cuda::throw_cudnn_error(caption_status_, #stmt, __FILE__, __LINE__);   \
  } while (0)

// After every <<<...>>> launch.
#define CAPTION_CUDA_LAUNCH_CHECK(name) ::caption::cuda::launch_check(name, __FILE__, __LINE__)
