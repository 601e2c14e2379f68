#include "pipeline/train_options.h"

#include "engine/error.h"

namespace caption::pipeline {

const char* metric_name(TrackedMetric m) {
  switch (m) {
    case TrackedMetric::Bleu4: return "bleu4";
    case TrackedMetric::Cider: return "cider";
    case TrackedMetric::ValLoss: return "val_loss";
  }
  return "?";
}

void TrainOptions::validate() const {
  if (data.format == DatasetFormat::Flickr8k)
    CAPTION_CHECK(!data.root.empty(), "--data: a Flickr8k-layout folder is required");
  else
    CAPTION_CHECK(!data.karpathy_json.empty(), "--karpathy-json: the split file is required");
  CAPTION_CHECK(min_word_freq >= 1, "--min-word-freq must be at least 1, got ", min_word_freq);
  CAPTION_CHECK(teacher_forcing >= 0 && teacher_forcing <= 1, "--teacher-forcing must be in [0, 1], got ", teacher_forcing);
  CAPTION_CHECK(alpha_c >= 0, "--alpha-c must be non-negative, got ", alpha_c);
  CAPTION_CHECK(encoder_lr > 0 && decoder_lr > 0, "learning rates must be positive");
  CAPTION_CHECK(weight_decay >= 0, "--weight-decay must be non-negative");
  CAPTION_CHECK(grad_clip >= 0, "--grad-clip must be non-negative");
  CAPTION_CHECK(step_bucket >= 1 && step_bucket <= 64, "--step-bucket must be between 1 and 64, got ",
                step_bucket);
  CAPTION_CHECK(batch_size >= 1 && eval_batch_size >= 1, "batch sizes must be at least 1");
  CAPTION_CHECK(epochs >= 1, "--epochs must be at least 1, got ", epochs);
  CAPTION_CHECK(pct_start > 0 && pct_start < 1, "--pct-start must be in (0, 1)");
  CAPTION_CHECK(plateau_factor > 0 && plateau_factor < 1, "--plateau-factor must be in (0, 1)");
  CAPTION_CHECK(plateau_patience >= 0 && plateau_cooldown >= 0, "plateau patience and cooldown must be >= 0");
  CAPTION_CHECK(early_stopping >= 0, "--early-stopping must be >= 0");
  CAPTION_CHECK(eval_beam >= 1, "--beam must be at least 1, got ", eval_beam);
  CAPTION_CHECK(threads >= 0 && workers >= 0, "--threads and --workers must be >= 0");
  CAPTION_CHECK(!output.empty(), "--output must name a folder");
  CAPTION_CHECK(stop_after >= 0, "--stop-after must be >= 0");
}

}  // namespace caption::pipeline
