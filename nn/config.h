// The model's configuration: everything needed to rebuild the network from a checkpoint
// (MODEL_SPEC section 7, the `config` metadata). The text normalisation options are kept
// as an opaque JSON object here: they belong to data/text, which nn/ does not depend on;
// the layer that ties model and data together interprets them.
#pragma once

#include <array>
#include <string>

#include <nlohmann/json.hpp>

namespace caption::nn {

enum class AttentionActivation { Tanh, Relu };

// Which encoder layers train: none (default), all, or layerN and later (N in 2..4).
struct FineTune {
  enum class Kind { None, All, From } kind = Kind::None;
  int from_layer = 0;  // with Kind::From
  static FineTune parse(const std::string& text);  // "none", "all", "from:N"
  std::string to_string() const;
};

struct ModelConfig {
  std::string encoder = "resnet50";  // resnet18/34/50/101/152
  int encoder_size = 14;             // S: the encoder grid is S x S, P = S * S
  int image_size = 224;
  std::array<double, 3> mean{0.485, 0.456, 0.406};
  std::array<double, 3> std{0.229, 0.224, 0.225};
  int vocab_size = 0;                // V (from the vocabulary)
  int embed_dim = 512;               // E
  int decoder_dim = 512;             // H
  int attention_dim = 512;           // A
  AttentionActivation attention_activation = AttentionActivation::Tanh;
  double dropout = 0.5;
  int max_decode_len = 50;
  int max_caption_len = 50;
  FineTune fine_tune;
  nlohmann::json text = nlohmann::json::object();

  int encoder_depth() const;    // 50 for "resnet50"; refuses other names
  int encoder_channels() const; // D: 2048 or 512
  int positions() const { return encoder_size * encoder_size; }
  // Refuses sizes that are not positive and names that are unknown, naming the field.
  void validate() const;

  nlohmann::json to_json() const;
  // Reads a config; `source` names the file in error messages. Missing required keys,
  // wrong types and unknown keys are refused.
  static ModelConfig from_json(const nlohmann::json& j, const std::string& source);
};

std::string activation_name(AttentionActivation a);
AttentionActivation parse_activation(const std::string& s, const std::string& source);

}  // namespace caption::nn
