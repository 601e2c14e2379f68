// Evaluation: the teacher-forced validation loss (labelled as such), free-running
// decoding (greedy or beam) of a split scored with BLEU-1..4, CIDEr-D and ROUGE-L
// against every reference of each image (MODEL_SPEC section 8), and prediction files
// (JSON lines of image id and caption) that can be scored without a model.
#pragma once

#include <string>
#include <vector>

#include "data/loader/loader.h"
#include "data/metrics/metrics.h"
#include "nn/caption_model.h"

namespace caption::pipeline {

struct Prediction {
  std::string image_id;
  std::vector<std::string> words;
};

struct FreeRunningResult {
  metrics::CaptionScores scores;
  std::vector<Prediction> predictions;
  size_t images = 0;
};

// Mean teacher-forced loss (cross-entropy + attention term) over the loader's next
// epoch; the model runs in eval mode (no dropout).
double teacher_forced_loss(nn::CaptionModel& model, data::DataLoader& loader, double alpha_c,
                           Device device);

// Decodes each image the loader yields once (build it with one item per image and no
// shuffling) and scores the captions. `max_images` > 0 stops early.
FreeRunningResult evaluate_free_running(nn::CaptionModel& model, data::DataLoader& loader,
                                        const text::Vocabulary& vocab, const nn::DecodeOptions& decode,
                                        Device device, int max_images = 0);

void write_predictions(const std::string& path, const std::vector<Prediction>& predictions);
std::vector<Prediction> read_predictions(const std::string& path);

// Scores predictions against the references of a data set's split (normalised with
// `normalizer`); every image of the split must have a prediction, and no other image.
metrics::CaptionScores score_predictions(const std::vector<Prediction>& predictions,
                                         const data::CaptionDataset& dataset, data::Split split,
                                         const text::Normalizer& normalizer, const std::string& source);

// "BLEU-1 0.712  BLEU-2 ...  CIDEr-D 1.234  ROUGE-L 0.567"
std::string format_scores(const metrics::CaptionScores& s);

}  // namespace caption::pipeline
