// Model checkpoints (MODEL_SPEC section 7): one safetensors file with the tensors under
// their PyTorch names and `__metadata__` {format, config, vocab}. Loading rebuilds the
// model from the config and refuses, naming the file and the tensor, anything that does
// not fit: a missing or unexpected tensor, a wrong shape or dtype, a vocabulary whose
// size disagrees with the config.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "engine/tensor_io.h"
#include "nn/caption_model.h"

namespace caption::nn {

inline constexpr const char* kCheckpointFormat = "caption-checkpoint/1";

struct Checkpoint {
  ModelConfig config;
  std::vector<std::string> vocab;  // tokens in id order, <pad> first
  std::unique_ptr<CaptionModel> model;
};

void save_checkpoint(const std::string& path, CaptionModel& model, const std::vector<std::string>& vocab);
Checkpoint load_checkpoint(const std::string& path, Device device = Device::cpu());

enum class Strictness { All, Subset };
// Copies tensors from `loaded` into the module's parameters and buffers with the same
// names. Strictness::All: every state tensor must be present and nothing else;
// Subset: only names under `prefix` are required, and names outside the module refused.
void load_state(Module& module, const LoadedTensors& loaded, Strictness strictness,
                const std::string& prefix = "");

// Loads converted torchvision weights (weights-tools/convert_torchvision.py) into the
// encoder: every encoder tensor must be in the file, and only encoder tensors.
void load_encoder_weights(CaptionModel& model, const std::string& path);

}  // namespace caption::nn
