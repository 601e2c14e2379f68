// See precision.h.
#include "engine/cuda/precision.h"

#include <cstdlib>
#include <cstring>

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

}  // namespace caption::cuda
