// Assembling data, vocabulary and model.
#include "pipeline/session.h"

#include <cstring>

#include "data/datasets/flickr8k_reader.h"
#include "data/datasets/karpathy_reader.h"
#include "data/text/glove.h"

namespace caption::pipeline {

data::CaptionDataset load_dataset(const DatasetSpec& spec) {
  if (spec.format == DatasetFormat::Flickr8k) {
    data::Flickr8kOptions o;
    o.check_images = data::ImageFileCheck::RequireExists;
    data::Flickr8kData d = data::read_flickr8k(spec.root, o);
    if (d.report.skipped_keys > 0)
      log_info(str(spec.root, ": skipped ", d.report.skipped_keys, " caption lines whose key is not an image name"));
    return std::move(d.dataset);
  }
  data::KarpathyOptions o;
  o.image_root = spec.image_root;
  o.check_images = data::ImageFileCheck::RequireExists;
  return data::read_karpathy_json(spec.karpathy_json, o);
}

text::Vocabulary build_vocabulary(const data::CaptionDataset& dataset, const text::Normalizer& normalizer,
                                  int min_word_freq) {
  std::vector<std::vector<std::string>> captions;
  for (const auto& s : dataset.samples) {
    if (s.split != data::Split::Train) continue;
    for (const auto& c : s.captions) captions.push_back(normalizer.normalize(c));
  }
  CAPTION_CHECK(!captions.empty(), dataset.name, ": the training split has no captions");
  text::VocabBuildOptions o;
  o.min_word_freq = min_word_freq;
  return text::Vocabulary::build(captions, o);
}

data::ImageTransform image_transform(const nn::ModelConfig& config) {
  data::ImageTransform t;
  t.image_size = config.image_size;
  for (int c = 0; c < 3; ++c) {
    t.normalization.mean[c] = static_cast<float>(config.mean[c]);
    t.normalization.std[c] = static_cast<float>(config.std[c]);
  }
  return t;
}

text::TextOptions text_options_of(const nn::ModelConfig& config, const std::string& source) {
  return text::text_options_from_json(config.text, source);
}

std::string apply_glove(nn::CaptionModel& model, const text::Vocabulary& vocab, const std::string& path,
                        uint64_t seed) {
  text::GloveEmbedding g = text::load_glove_embedding(path, vocab, seed);
  Tensor& w = model.decoder.embedding.weight;
  CAPTION_CHECK(g.dim == w.size(1), path, ": GloVe vectors have ", g.dim, " dimensions but embed_dim is ",
                w.size(1), " (set --embed-dim ", g.dim, ")");
  NoGradGuard ng;
  w.copy_(Tensor::from_vector<float>(g.weights, {g.rows, g.dim}).to(w.device()));
  return g.coverage_report(path);
}

std::string encoder_identity(nn::CaptionModel& model) {
  // FNV-1a over every encoder tensor's name and bytes.
  uint64_t h = 1469598103934665603ull;
  auto mix = [&](const void* p, size_t n) {
    const auto* b = static_cast<const unsigned char*>(p);
    for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 1099511628211ull;
  };
  for (const auto& r : model.encoder.named_state()) {
    mix(r.name.data(), r.name.size());
    const Tensor t = r.tensor->detach().to(Device::cpu()).contiguous();
    mix(t.raw_data(), t.nbytes());
  }
  char hex[17];
  std::snprintf(hex, sizeof(hex), "%016llx", static_cast<unsigned long long>(h));
  return str(model.config().encoder, "@", hex);
}

}  // namespace caption::pipeline
