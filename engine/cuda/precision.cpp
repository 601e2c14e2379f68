// See precision.h.
#include "engine/cuda/precision.h"

#include <cstdlib>
#include <cstring>

#include "engine/backend.h"
#include "engine/cuda/context.h"
#include "engine/error.h"

namespace caption::cuda {

bool tf32_enabled() {
  static const bool tf32 = [] {
    const char* v = std::getenv("CAPTION_TF32");
    const bool on = v != nullptr && std::strcmp(v, "1") == 0;
    log_info(on ? "CUDA precision: TF32 tensor cores for float32 products and convolutions "
                  "(CAPTION_TF32=1)"
                : "CUDA precision: full float32 products and convolutions (CAPTION_TF32=1 "
                  "selects TF32)");
    return on;
  }();
  return tf32;
}

Bf16ProductScope::Bf16ProductScope(bool on, Device device)
    : products_(on), device_(device), previous_(kernels::cuda::bf16_scratch()) {
  kernels::cuda::set_bf16_scratch(this);
}

Bf16ProductScope::~Bf16ProductScope() { kernels::cuda::set_bf16_scratch(previous_); }

void* Bf16ProductScope::get(size_t bytes) {
  // Freed when the scope closes; the caching allocator reuses blocks in stream order, so
  // the products queued on the stream finish with them first.
  blocks_.push_back(Tensor::empty({static_cast<int64_t>((bytes + 3) / 4)}, DType::F32, device_));
  return blocks_.back().raw_data();
}

}  // namespace caption::cuda

namespace caption {

void cuda_bf16_copy(int device, const float* src, int64_t n, uint16_t* dst) {
  if (n == 0) return;
  kernels::cuda::convert_to_bf16(src, 1, n, n, 1, 0, dst, cuda::stream(Device::cuda(device)));
}

}  // namespace caption
