// Timing events of engine/profile.h: a pool of cudaEvent_t per process (created with
// timing, reused after each report), recorded on a device's current stream.
#include <cuda_runtime.h>

#include <mutex>
#include <vector>

#include "engine/backend.h"
#include "engine/cuda/check.h"
#include "engine/cuda/context.h"

namespace caption {

namespace {
std::mutex pool_mutex;
std::vector<cudaEvent_t>& pool() {
  static auto* p = new std::vector<cudaEvent_t>();  // kept for the process
  return *p;
}
}  // namespace

void* cuda_event_record(int device) {
  cudaEvent_t e = nullptr;
  {
    std::lock_guard lock(pool_mutex);
    if (!pool().empty()) {
      e = pool().back();
      pool().pop_back();
    }
  }
  if (e == nullptr) CAPTION_CUDA_CHECK(cudaEventCreate(&e));
  CAPTION_CUDA_CHECK(cudaEventRecord(e, cuda::stream(Device::cuda(device))));
  return e;
}

double cuda_event_elapsed_ms(int, void* start, void* end) {
  CAPTION_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(end)));
  float ms = 0.f;
  CAPTION_CUDA_CHECK(cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(start), static_cast<cudaEvent_t>(end)));
  return ms;
}

void cuda_event_release(int, void* event) noexcept {
  if (event == nullptr) return;
  std::lock_guard lock(pool_mutex);
  pool().push_back(static_cast<cudaEvent_t>(event));
}

}  // namespace caption
