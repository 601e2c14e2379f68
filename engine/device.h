// Devices: where a tensor's storage lives. CPU always exists; CUDA devices exist when
// the library was compiled with CUDA and a driver and GPU are present. Probing never
// throws on a machine without a driver: it reports zero GPUs and keeps the reason.
#pragma once

#include <string>

namespace caption {

enum class DeviceType : unsigned char { CPU = 0, CUDA = 1 };
inline constexpr int kDeviceTypeCount = 2;

struct Device {
  DeviceType type = DeviceType::CPU;
  int index = 0;

  static Device cpu() { return {DeviceType::CPU, 0}; }
  static Device cuda(int index = 0) { return {DeviceType::CUDA, index}; }
  bool is_cpu() const { return type == DeviceType::CPU; }
  bool is_cuda() const { return type == DeviceType::CUDA; }
  bool operator==(const Device&) const = default;
  std::string to_string() const;  // "cpu", "cuda:0"
};

// True when the library was built with the CUDA backend.
bool cuda_compiled();
// Number of usable CUDA devices (0 without a driver, a GPU, or the CUDA backend).
int cuda_device_count();
// Why cuda_device_count() is 0 (e.g. "CUDA driver version is insufficient for CUDA
// runtime version"), or a description of device 0 when there is one.
std::string cuda_probe_message();
// Parses "cpu", "cuda", "cuda:N" or "auto" (CUDA device 0 when present, else CPU).
Device parse_device(const std::string& text);

}  // namespace caption
