// Tensor glue over the safetensors reader and writer.
#include "engine/tensor_io.h"

#include <cstring>

#include "engine/safetensors.h"

namespace caption {

void save_tensors(const std::string& path, const NamedTensors& tensors,
                  const std::map<std::string, std::string>& metadata) {
  std::vector<Tensor> host;
  std::vector<TensorToWrite> items;
  host.reserve(tensors.size());
  for (const auto& [name, t] : tensors) {
    CAPTION_CHECK(t.defined(), path, ": tensor '", name, "' is undefined");
    host.push_back(t.detach().to(Device::cpu()).contiguous());
  }
  for (size_t i = 0; i < tensors.size(); ++i)
    items.push_back({tensors[i].first, host[i].dtype(), host[i].shape(), host[i].raw_data()});
  write_safetensors(path, items, metadata);
}

const Tensor& LoadedTensors::at(const std::string& name) const {
  auto it = tensors.find(name);
  CAPTION_CHECK(it != tensors.end(), path, ": no tensor named '", name, "'");
  return it->second;
}

LoadedTensors load_tensors(const std::string& path, Device device) {
  SafetensorsReader reader = SafetensorsReader::open(path);
  LoadedTensors out;
  out.path = path;
  out.metadata = reader.metadata();
  for (const TensorInfo& info : reader.tensors()) {
    Tensor t = Tensor::empty(info.shape, info.dtype);
    const auto bytes = reader.data(info);
    if (!bytes.empty()) std::memcpy(t.raw_data(), bytes.data(), bytes.size());
    out.tensors.emplace(info.name, device.is_cpu() ? t : t.to(device));
  }
  return out;
}

}  // namespace caption
