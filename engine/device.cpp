// Device naming and parsing; the CUDA probe itself lives in engine/cuda/ and is replaced
// by the answers of a CPU-only build when CUDA is not compiled in.
#include "engine/device.h"

#include "engine/error.h"

namespace caption {

#ifndef CAPTION_WITH_CUDA
bool cuda_compiled() { return false; }
int cuda_device_count() { return 0; }
std::string cuda_probe_message() { return "built without the CUDA backend"; }
#endif

std::string Device::to_string() const {
  return is_cpu() ? std::string("cpu") : str("cuda:", index);
}

Device parse_device(const std::string& text) {
  if (text == "cpu") return Device::cpu();
  if (text == "auto") return cuda_device_count() > 0 ? Device::cuda(0) : Device::cpu();
  if (text == "cuda" || text.rfind("cuda:", 0) == 0) {
    int index = 0;
    if (text.size() > 5) {
      try {
        size_t used = 0;
        index = std::stoi(text.substr(5), &used);
        CAPTION_CHECK(used == text.size() - 5 && index >= 0, "device '", text,
                      "': expected cuda:N with N a device number");
      } catch (const std::logic_error&) {
        throw Error(str("device '", text, "': expected cuda:N with N a device number"));
      }
    }
    const int count = cuda_device_count();
    CAPTION_CHECK(index < count, "device '", text, "': no such CUDA device (",
                  count, " found: ", cuda_probe_message(), ")");
    return Device::cuda(index);
  }
  throw Error(str("device '", text, "': expected cpu, cuda, cuda:N or auto"));
}

}  // namespace caption
