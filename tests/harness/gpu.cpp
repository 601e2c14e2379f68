#include "tests/harness/gpu.h"

#include <cstdlib>
#include <cstring>

#include "engine/device.h"

namespace caption::testing {

bool gpu_required() {
  const char* v = std::getenv("CAPTION_REQUIRE_GPU");
  return v != nullptr && std::strcmp(v, "1") == 0;
}

bool gpu_available() { return cuda_device_count() > 0; }

std::string gpu_unavailable_reason() { return cuda_probe_message(); }

}  // namespace caption::testing
