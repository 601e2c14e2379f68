// ModelConfig validation and JSON form.
#include "nn/config.h"

#include <set>

#include "engine/error.h"

namespace caption::nn {

FineTune FineTune::parse(const std::string& text) {
  if (text == "none") return {};
  if (text == "all") return {Kind::All, 0};
  if (text.rfind("from:", 0) == 0 && text.size() == 6 && text[5] >= '2' && text[5] <= '4')
    return {Kind::From, text[5] - '0'};
  throw Error(str("fine-tune mode '", text, "': expected none, all or from:N with N in 2..4"));
}

std::string FineTune::to_string() const {
  switch (kind) {
    case Kind::None: return "none";
    case Kind::All: return "all";
    case Kind::From: return "from:" + std::to_string(from_layer);
  }
  return "none";
}

std::string activation_name(AttentionActivation a) { return a == AttentionActivation::Tanh ? "tanh" : "relu"; }

AttentionActivation parse_activation(const std::string& s, const std::string& source) {
  if (s == "tanh") return AttentionActivation::Tanh;
  if (s == "relu") return AttentionActivation::Relu;
  throw Error(str(source, ": attention_activation '", s, "': expected tanh or relu"));
}

int ModelConfig::encoder_depth() const {
  for (int d : {18, 34, 50, 101, 152})
    if (encoder == "resnet" + std::to_string(d)) return d;
  throw Error(str("encoder '", encoder, "': expected resnet18, resnet34, resnet50, resnet101 or resnet152"));
}

int ModelConfig::encoder_channels() const { return encoder_depth() >= 50 ? 2048 : 512; }

void ModelConfig::validate() const {
  (void)encoder_depth();
  auto positive = [](int v, const char* name) {
    CAPTION_CHECK(v > 0, "model config: ", name, " must be positive, got ", v);
  };
  positive(encoder_size, "encoder_size");
  positive(image_size, "image_size");
  positive(vocab_size, "vocab_size");
  positive(embed_dim, "embed_dim");
  positive(decoder_dim, "decoder_dim");
  positive(attention_dim, "attention_dim");
  positive(max_decode_len, "max_decode_len");
  positive(max_caption_len, "max_caption_len");
  CAPTION_CHECK(vocab_size > 4, "model config: vocab_size ", vocab_size, " leaves no words after the 4 special tokens");
  CAPTION_CHECK(dropout >= 0 && dropout < 1, "model config: dropout must be in [0, 1), got ", dropout);
  for (double s : std) CAPTION_CHECK(s > 0, "model config: std values must be positive");
}

nlohmann::json ModelConfig::to_json() const {
  nlohmann::json j;
  j["encoder"] = encoder;
  j["encoder_size"] = encoder_size;
  j["image_size"] = image_size;
  j["mean"] = mean;
  j["std"] = std;
  j["vocab_size"] = vocab_size;
  j["embed_dim"] = embed_dim;
  j["decoder_dim"] = decoder_dim;
  j["attention_dim"] = attention_dim;
  j["attention_activation"] = activation_name(attention_activation);
  j["dropout"] = dropout;
  j["max_decode_len"] = max_decode_len;
  j["max_caption_len"] = max_caption_len;
  j["fine_tune"] = fine_tune.to_string();
  j["text"] = text;
  return j;
}

ModelConfig ModelConfig::from_json(const nlohmann::json& j, const std::string& source) {
  CAPTION_CHECK(j.is_object(), source, ": config is not a JSON object");
  static const std::set<std::string> known{
      "encoder", "encoder_size", "image_size", "mean", "std", "vocab_size", "embed_dim",
      "decoder_dim", "attention_dim", "attention_activation", "dropout", "max_decode_len",
      "max_caption_len", "fine_tune", "text"};
  for (auto it = j.begin(); it != j.end(); ++it)
    CAPTION_CHECK(known.count(it.key()), source, ": unknown config key '", it.key(), "'");
  ModelConfig c;
  auto need = [&](const char* key) -> const nlohmann::json& {
    CAPTION_CHECK(j.contains(key), source, ": config misses '", key, "'");
    return j.at(key);
  };
  try {
    c.encoder = need("encoder").get<std::string>();
    c.encoder_size = need("encoder_size").get<int>();
    c.image_size = need("image_size").get<int>();
    c.mean = need("mean").get<std::array<double, 3>>();
    c.std = need("std").get<std::array<double, 3>>();
    c.embed_dim = need("embed_dim").get<int>();
    c.decoder_dim = need("decoder_dim").get<int>();
    c.attention_dim = need("attention_dim").get<int>();
    c.attention_activation = parse_activation(need("attention_activation").get<std::string>(), source);
    c.dropout = need("dropout").get<double>();
    c.max_decode_len = need("max_decode_len").get<int>();
    c.max_caption_len = need("max_caption_len").get<int>();
    c.text = need("text");
    // Optional: the vocabulary gives vocab_size when absent; fine_tune defaults to none.
    if (j.contains("vocab_size")) c.vocab_size = j.at("vocab_size").get<int>();
    if (j.contains("fine_tune")) c.fine_tune = FineTune::parse(j.at("fine_tune").get<std::string>());
  } catch (const nlohmann::json::exception& e) {
    throw Error(str(source, ": malformed config: ", e.what()));
  }
  CAPTION_CHECK(c.text.is_object(), source, ": config 'text' must be an object");
  return c;
}

}  // namespace caption::nn
