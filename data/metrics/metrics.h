// All captioning metrics of one evaluation in one call: BLEU-1..4 (NLTK corpus_bleu),
// CIDEr-D and ROUGE-L (coco-caption). The individual metrics live in bleu.h, cider.h
// and rouge.h, which document exactly which reference implementation each mirrors.
// CIDEr-D's idf depends on the whole corpus, so score the full evaluation set at once.
#pragma once

#include <array>
#include <vector>

#include "data/metrics/bleu.h"
#include "data/metrics/cider.h"
#include "data/metrics/rouge.h"
#include "data/metrics/sample.h"

namespace caption::metrics {

struct CaptionScores {
  std::array<double, 4> bleu{};  // [n-1] = corpus BLEU-n
  double cider_d = 0.0;          // corpus mean
  double rouge_l = 0.0;          // corpus mean
  std::vector<double> cider_d_per_image;
  std::vector<double> rouge_l_per_image;
};

// Rejects an empty corpus or a sample without references (caption::Error).
CaptionScores score_all(const std::vector<Sample>& corpus);

}  // namespace caption::metrics
