// Evaluation loops and prediction files.
#include "pipeline/evaluate.h"

#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "data/image/file_io.h"
#include "nn/folded_resnet.h"

namespace caption::pipeline {

namespace {
// The encoder of one evaluation loop. Nothing changes the weights during the loop, so its
// batch norms are folded once (nn/folded_resnet.h), as `caption` folds them: the scores
// are those of the captions `caption` would print. The snapshot is made at the first batch
// that needs the encoder (none when the features are cached); CAPTION_FOLD_BN=0 keeps the
// model's own pass.
class LoopEncoder {
 public:
  explicit LoopEncoder(const nn::CaptionModel& model) : model_(model) {}
  Tensor features(const data::Batch& b, Device device) {
    if (b.features.defined()) return b.features.to(device);
    const Tensor images = b.images.to(device);
    if (!snapshot_made_) {
      folded_ = nn::inference_snapshot(model_.encoder);
      snapshot_made_ = true;
    }
    return model_.encode_distinct(images, folded_.get());
  }

 private:
  const nn::CaptionModel& model_;
  std::unique_ptr<nn::FoldedResNet> folded_;  // null when folding is off
  bool snapshot_made_ = false;
};
}  // namespace

double teacher_forced_loss(nn::CaptionModel& model, data::DataLoader& loader, double alpha_c, Device device) {
  NoGradGuard ng;
  const nn::Mode was = model.mode();
  model.eval();
  Generator unused(0);  // eval mode draws nothing
  LoopEncoder encoder(model);
  // The batches' losses are read back after the last batch (on a GPU, reading each at
  // once would make the host wait before loading and launching the next); summed in the
  // same order.
  std::vector<std::pair<Tensor, int64_t>> losses;
  while (auto b = loader.next()) {
    nn::CaptionBatch cb{b->captions, b->lengths.to_vector<int64_t>()};
    nn::DecoderOutput out = model.decoder.forward(encoder.features(*b, device), cb, 1.0, unused);
    losses.emplace_back(nn::caption_loss(out, alpha_c).total, out.targets.numel());
  }
  double total = 0;
  int64_t rows = 0;
  for (const auto& [loss, n] : losses) {
    total += loss.item() * static_cast<double>(n);
    rows += n;
  }
  model.set_mode(was);
  CAPTION_CHECK(rows > 0, "teacher-forced loss: the validation loader yielded no captions");
  return total / static_cast<double>(rows);
}

FreeRunningResult evaluate_free_running(nn::CaptionModel& model, data::DataLoader& loader,
                                        const text::Vocabulary& vocab, const nn::DecodeOptions& decode,
                                        Device device, int max_images) {
  NoGradGuard ng;
  const nn::Mode was = model.mode();
  model.eval();
  FreeRunningResult r;
  LoopEncoder encoder(model);
  std::vector<metrics::Sample> samples;
  std::set<std::string> seen;
  bool done = false;
  while (!done) {
    auto b = loader.next();
    if (!b) break;
    const std::vector<nn::DecodedCaption> captions =
        nn::decode(model.decoder, encoder.features(*b, device), decode);
    for (int64_t i = 0; i < b->size(); ++i) {
      if (!seen.insert(b->image_ids[i]).second) continue;  // one score per image
      Prediction p{b->image_ids[i], {}};
      for (int64_t id : captions[i].tokens) p.words.push_back(vocab.token(static_cast<text::TokenId>(id)));
      samples.push_back({p.words, b->references[i]});
      r.predictions.push_back(std::move(p));
      if (max_images > 0 && static_cast<int>(samples.size()) >= max_images) {
        done = true;
        break;
      }
    }
  }
  if (done) {
    // Finish the epoch so the loader is at the start of the next one.
    while (loader.next()) {
    }
  }
  model.set_mode(was);
  CAPTION_CHECK(!samples.empty(), "evaluation: the loader yielded no images");
  r.images = samples.size();
  r.scores = metrics::score_all(samples);
  return r;
}

void write_predictions(const std::string& path, const std::vector<Prediction>& predictions) {
  std::string text;
  for (const auto& p : predictions) {
    std::string caption;
    for (size_t i = 0; i < p.words.size(); ++i) caption += (i ? " " : "") + p.words[i];
    text += nlohmann::json{{"image_id", p.image_id}, {"caption", caption}}.dump() + "\n";
  }
  data::write_file_atomic(path, text);
}

std::vector<Prediction> read_predictions(const std::string& path) {
  std::ifstream in(path);
  CAPTION_CHECK(in, path, ": cannot open the predictions file");
  std::vector<Prediction> out;
  std::string line;
  size_t number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    try {
      const nlohmann::json j = nlohmann::json::parse(line);
      Prediction p;
      p.image_id = j.at("image_id").get<std::string>();
      std::string caption = j.at("caption").get<std::string>(), word;
      for (char c : caption + " ") {
        if (c == ' ') {
          if (!word.empty()) p.words.push_back(word);
          word.clear();
        } else {
          word += c;
        }
      }
      out.push_back(std::move(p));
    } catch (const nlohmann::json::exception& e) {
      throw Error(str(path, ":", number, ": expected {\"image_id\": ..., \"caption\": ...} (", e.what(), ")"));
    }
  }
  CAPTION_CHECK(!out.empty(), path, ": no predictions in the file");
  return out;
}

metrics::CaptionScores score_predictions(const std::vector<Prediction>& predictions,
                                         const data::CaptionDataset& dataset, data::Split split,
                                         const text::Normalizer& normalizer, const std::string& source) {
  std::map<std::string, const data::CaptionSample*> refs;
  for (const auto& s : dataset.samples)
    if (s.split == split) refs[s.image_id] = &s;
  std::vector<metrics::Sample> samples;
  std::set<std::string> seen;
  for (const auto& p : predictions) {
    auto it = refs.find(p.image_id);
    CAPTION_CHECK(it != refs.end(), source, ": image '", p.image_id, "' is not in the ", data::split_name(split),
                  " split of ", dataset.name);
    CAPTION_CHECK(seen.insert(p.image_id).second, source, ": image '", p.image_id, "' predicted twice");
    metrics::Sample s;
    // Hypotheses are normalised like the references, so both sides compare equally.
    std::string joined;
    for (const auto& w : p.words) joined += w + " ";
    s.hypothesis = normalizer.normalize(joined);
    for (const auto& c : it->second->captions) s.references.push_back(normalizer.normalize(c));
    samples.push_back(std::move(s));
  }
  CAPTION_CHECK(seen.size() == refs.size(), source, ": ", refs.size() - seen.size(), " of the ", refs.size(),
                " images of the ", data::split_name(split), " split have no prediction");
  return metrics::score_all(samples);
}

std::string format_scores(const metrics::CaptionScores& s) {
  char buf[256];
  std::snprintf(buf, sizeof(buf), "BLEU-1 %.4f  BLEU-2 %.4f  BLEU-3 %.4f  BLEU-4 %.4f  CIDEr-D %.4f  ROUGE-L %.4f",
                s.bleu[0], s.bleu[1], s.bleu[2], s.bleu[3], s.cider_d, s.rouge_l);
  return buf;
}

}  // namespace caption::pipeline
