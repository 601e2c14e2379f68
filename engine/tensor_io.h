// Named tensors to and from safetensors files (engine/safetensors.h holds the format).
// Checkpoints of the model and of the trainer are built on these two calls.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "engine/tensor.h"

namespace caption {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

// Writes the tensors (any device, any layout; copied to the host) atomically.
void save_tensors(const std::string& path, const NamedTensors& tensors,
                  const std::map<std::string, std::string>& metadata = {});

struct LoadedTensors {
  std::map<std::string, Tensor> tensors;
  std::map<std::string, std::string> metadata;
  std::string path;
  // The tensor called `name`; throws naming the file when it is missing.
  const Tensor& at(const std::string& name) const;
};

// Reads every tensor of a file into new tensors on `device`.
LoadedTensors load_tensors(const std::string& path, Device device = Device::cpu());

}  // namespace caption
