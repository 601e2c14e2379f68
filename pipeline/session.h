// The pieces a training or evaluation run assembles from its options: the data set,
// the text normaliser, the vocabulary (built from the training split only), and the
// model (new, from converted encoder weights, with GloVe embeddings, or from a
// checkpoint). Shared by the trainer, the evaluator and the apps.
#pragma once

#include <memory>
#include <string>

#include "data/datasets/caption_dataset.h"
#include "data/image/transform.h"
#include "data/text/normalize.h"
#include "data/text/vocab.h"
#include "nn/checkpoint.h"
#include "pipeline/train_options.h"

namespace caption::pipeline {

data::CaptionDataset load_dataset(const DatasetSpec& spec);

// Normalises the training split's captions and builds the vocabulary from them.
text::Vocabulary build_vocabulary(const data::CaptionDataset& dataset, const text::Normalizer& normalizer,
                                  int min_word_freq);

// The image transform a model expects (its image size, mean and std).
data::ImageTransform image_transform(const nn::ModelConfig& config);

// Text options stored in (and read back from) a checkpoint's config.
text::TextOptions text_options_of(const nn::ModelConfig& config, const std::string& source);

// Initialises the embedding from a GloVe file by token id; returns a coverage line.
std::string apply_glove(nn::CaptionModel& model, const text::Vocabulary& vocab, const std::string& path,
                        uint64_t seed);

// A short identity of the encoder's current weights (name and a hash of every byte),
// for the feature cache.
std::string encoder_identity(nn::CaptionModel& model);

}  // namespace caption::pipeline
