// The training recipe: fit (and resume), the LR range test, the overfit-one-batch
// sanity check and the gradient-flow plot. A run lives in one output folder:
//   vocab.json                 the vocabulary (built from the training split)
//   last.safetensors           the model after the latest epoch
//   last.state.safetensors     optimiser, scheduler, early stopping, generator, loader
//                              position and history, so that --resume continues exactly
//   best.safetensors           the model of the best epoch by the tracked metric
//   metrics.jsonl              one JSON object per epoch
//   loss.svg, metrics.svg, lr.svg, grad_flow.svg
//   features/                  the encoder feature cache (frozen encoder)
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "data/loader/loader.h"
#include "data/text/normalize.h"
#include "data/text/vocab.h"
#include "nn/checkpoint.h"
#include "nn/optim.h"
#include "pipeline/evaluate.h"
#include "pipeline/train_options.h"

namespace caption::pipeline {

struct EpochRecord {
  int epoch = 0;                 // 1-based
  double train_loss = 0;         // mean over the epoch's batches
  double val_loss = 0;           // teacher-forced
  metrics::CaptionScores scores; // free-running decoding of the validation split
  double decoder_lr = 0, encoder_lr = 0;
  double seconds = 0;
  bool best = false;
  nlohmann::json to_json() const;
};

struct LrFindResult {
  std::vector<double> lrs, losses;  // smoothed losses
  double suggestion = 0;
  std::string plot;                 // path of the SVG
};

class Trainer {
 public:
  // Assembles data, vocabulary, model, loaders, optimiser and scheduler (or restores
  // them from the output folder with options.resume).
  explicit Trainer(TrainOptions options, std::ostream& log);
  ~Trainer();

  // Trains until options.epochs (or early stopping); returns every epoch's record
  // (those of the run being resumed included).
  std::vector<EpochRecord> fit();
  // The LR range test over `steps` batches from `start` to `end`.
  LrFindResult lr_find(double start, double end, int steps);
  // Trains on one batch for `steps` steps, then prints decoded predictions next to the
  // references; returns the final loss.
  double overfit_one_batch(int steps);
  // Mean and max |grad| per parameter tensor for one batch, plotted as SVG.
  std::string gradient_flow_plot();

  // Per-batch losses of the epochs run by this object (for the resume test).
  const std::vector<double>& batch_losses() const { return batch_losses_; }
  nn::CaptionModel& model() { return *model_; }
  const text::Vocabulary& vocab() const { return *vocab_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::unique_ptr<nn::CaptionModel> model_;
  std::optional<text::Vocabulary> vocab_;
  std::vector<double> batch_losses_;
};

}  // namespace caption::pipeline
