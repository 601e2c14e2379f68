// score_all: runs each metric with its reference implementation's default settings.
#include "data/metrics/metrics.h"

#include <utility>

namespace caption::metrics {

CaptionScores score_all(const std::vector<Sample>& corpus) {
  check_corpus(corpus, "caption metrics");
  CaptionScores scores;
  scores.bleu = bleu_1_to_4(corpus);
  CiderResult cider = cider_d(corpus);
  scores.cider_d = cider.corpus;
  scores.cider_d_per_image = std::move(cider.per_image);
  RougeResult rouge = rouge_l(corpus);
  scores.rouge_l = rouge.corpus;
  scores.rouge_l_per_image = std::move(rouge.per_image);
  return scores;
}

}  // namespace caption::metrics
