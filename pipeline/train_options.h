// Every option of a training run, in one struct that the command line (and its config
// file) fills and the trainer reads. Defaults are the synthetic demo's where the
// original project had none, and the original project's otherwise.
#pragma once

#include <cstdint>
#include <string>

#include "data/text/options.h"
#include "nn/config.h"

namespace caption::pipeline {

enum class DatasetFormat { Flickr8k, Karpathy };
enum class OptimizerKind { Adam, AdamW, Sgd };
enum class SchedulerKind { None, OneCycle, Plateau };
enum class TrackedMetric { Bleu4, Cider, ValLoss };
enum class ItemsPerEpoch { EveryCaption, OneCaptionPerImage };

struct DatasetSpec {
  DatasetFormat format = DatasetFormat::Flickr8k;
  std::string root;           // Flickr8k layout root (token file, split files, image folder)
  std::string karpathy_json;  // dataset_*.json
  std::string image_root;     // Karpathy images folder
};

struct TrainOptions {
  DatasetSpec data;
  text::TextOptions text;
  int min_word_freq = 5;
  ItemsPerEpoch items = ItemsPerEpoch::EveryCaption;

  nn::ModelConfig model;            // architecture (vocab_size is set from the data)
  std::string encoder_weights;      // converted torchvision weights (empty: random init)
  std::string glove;                // GloVe text file (empty: random embeddings)
  int calibrate_batches = 16;       // without encoder weights: batches that set batch-norm statistics
  bool train_embeddings = true;
  bool amp = false;                 // bfloat16 products in training steps (engine/autocast.h)

  double teacher_forcing = 1.0;
  double alpha_c = 1.0;
  OptimizerKind optimizer = OptimizerKind::AdamW;
  double momentum = 0.9;            // SGD
  bool nesterov = true;             // SGD
  double encoder_lr = 1e-4;
  double decoder_lr = 4e-4;
  double weight_decay = 0.01;
  double grad_clip = 5.0;           // 0: off
  int step_bucket = 4;              // GPU recorded steps: caption steps padded to a multiple of this
  int batch_size = 32;
  int eval_batch_size = 64;
  int epochs = 10;

  SchedulerKind scheduler = SchedulerKind::None;
  double max_lr = 0;                // one-cycle: decoder peak (encoder scaled alike); 0 = decoder_lr
  double min_lr = 0;                // one-cycle: final rate; 0 = max_lr / 10
  double pct_start = 0.3;
  double plateau_factor = 0.6;
  int plateau_patience = 3;
  double plateau_threshold = 1e-4;
  int plateau_cooldown = 0;

  int early_stopping = 0;           // patience in epochs; 0 = off
  TrackedMetric track = TrackedMetric::Bleu4;
  int eval_beam = 1;                // free-running validation decoding
  double length_penalty = 0;
  int max_eval_images = 0;          // 0: the whole validation split

  uint64_t seed = 1;
  int threads = 0;                  // 0: all cores
  int workers = 2;                  // loader threads
  std::string device = "auto";
  std::string output = "runs/default";
  bool resume = false;
  bool feature_cache = true;        // cache encoder features when the encoder is frozen
  int log_every = 20;               // batches between plain progress lines
  int stop_after = 0;               // end this session after so many epochs (0: run to --epochs)

  // Refuses inconsistent settings, naming the option.
  void validate() const;
};

const char* metric_name(TrackedMetric m);

}  // namespace caption::pipeline
