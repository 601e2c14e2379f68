// Checkpoint files.
#include "nn/checkpoint.h"

#include <algorithm>
#include <map>
#include <set>

namespace caption::nn {

void save_checkpoint(const std::string& path, CaptionModel& model, const std::vector<std::string>& vocab) {
  CAPTION_CHECK(static_cast<int>(vocab.size()) == model.config().vocab_size, path, ": vocabulary of ",
                vocab.size(), " tokens but the model has vocab_size ", model.config().vocab_size);
  NamedTensors tensors;
  for (const auto& ref : model.named_state()) tensors.emplace_back(ref.name, *ref.tensor);
  std::map<std::string, std::string> meta;
  meta["format"] = kCheckpointFormat;
  meta["config"] = model.config().to_json().dump();
  meta["vocab"] = nlohmann::json(vocab).dump();
  save_tensors(path, tensors, meta);
}

void load_state(Module& module, const LoadedTensors& loaded, Strictness strictness, const std::string& prefix) {
  std::set<std::string> expected;
  for (const auto& ref : module.named_state()) {
    expected.insert(ref.name);
    const bool required = strictness == Strictness::All || ref.name.rfind(prefix, 0) == 0;
    auto it = loaded.tensors.find(ref.name);
    if (it == loaded.tensors.end()) {
      CAPTION_CHECK(!required, loaded.path, ": missing tensor '", ref.name, "' (", shape_string(ref.tensor->shape()), ")");
      continue;
    }
    const Tensor& src = it->second;
    CAPTION_CHECK(src.shape() == ref.tensor->shape(), loaded.path, ": tensor '", ref.name, "' has shape ",
                  shape_string(src.shape()), ", the model expects ", shape_string(ref.tensor->shape()));
    CAPTION_CHECK(src.dtype() == ref.tensor->dtype(), loaded.path, ": tensor '", ref.name, "' is ",
                  dtype_name(src.dtype()), ", the model expects ", dtype_name(ref.tensor->dtype()));
    NoGradGuard no_grad;
    ref.tensor->copy_(src);
  }
  for (const auto& [name, t] : loaded.tensors)
    CAPTION_CHECK(expected.count(name), loaded.path, ": unexpected tensor '", name, "' (",
                  shape_string(t.shape()), ") that the model does not have");
}

Checkpoint load_checkpoint(const std::string& path, Device device) {
  LoadedTensors loaded = load_tensors(path);
  auto meta = [&](const char* key) -> const std::string& {
    auto it = loaded.metadata.find(key);
    CAPTION_CHECK(it != loaded.metadata.end(), path, ": not a caption checkpoint (no '", key, "' in its metadata)");
    return it->second;
  };
  CAPTION_CHECK(meta("format") == kCheckpointFormat, path, ": checkpoint format '", meta("format"),
                "', expected ", kCheckpointFormat);
  Checkpoint ck;
  try {
    ck.config = ModelConfig::from_json(nlohmann::json::parse(meta("config")), path);
    const nlohmann::json v = nlohmann::json::parse(meta("vocab"));
    CAPTION_CHECK(v.is_array(), path, ": metadata 'vocab' is not a JSON array");
    ck.vocab = v.get<std::vector<std::string>>();
  } catch (const nlohmann::json::exception& e) {
    throw Error(str(path, ": malformed metadata: ", e.what()));
  }
  const std::vector<std::string> specials{"<pad>", "<sos>", "<eos>", "<unk>"};
  CAPTION_CHECK(ck.vocab.size() > specials.size() &&
                    std::equal(specials.begin(), specials.end(), ck.vocab.begin()),
                path, ": vocabulary must start with <pad> <sos> <eos> <unk> and hold words");
  if (ck.config.vocab_size == 0) ck.config.vocab_size = static_cast<int>(ck.vocab.size());
  CAPTION_CHECK(ck.config.vocab_size == static_cast<int>(ck.vocab.size()), path, ": config vocab_size ",
                ck.config.vocab_size, " but the vocabulary holds ", ck.vocab.size(), " tokens");
  ck.config.validate();
  Generator gen(0);  // initial values are overwritten by the file
  ck.model = std::make_unique<CaptionModel>(ck.config, gen);
  load_state(*ck.model, loaded, Strictness::All);
  ck.model->to(device);
  ck.model->eval();
  return ck;
}

void load_encoder_weights(CaptionModel& model, const std::string& path) {
  LoadedTensors loaded = load_tensors(path);
  for (const auto& [name, t] : loaded.tensors)
    CAPTION_CHECK(name.rfind("encoder.", 0) == 0, path, ": tensor '", name,
                  "' is not an encoder tensor (expected converted torchvision weights)");
  load_state(model, loaded, Strictness::Subset, "encoder.");
}

}  // namespace caption::nn
