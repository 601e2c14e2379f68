// ROUGE-L as coco-caption computes it; the definition is in rouge.h. The LCS is the
// classic dynamic programme kept to one row of the shorter sequence (O(|a| |b|) time,
// O(min) memory); captions are short, so no bit-parallel variant is needed.
#include "data/metrics/rouge.h"

#include <algorithm>
#include <cmath>

#include "engine/error.h"

namespace caption::metrics {

std::size_t lcs_length(const Tokens& a, const Tokens& b) {
  const Tokens& longer = a.size() >= b.size() ? a : b;
  const Tokens& shorter = a.size() >= b.size() ? b : a;
  if (shorter.empty()) return 0;
  // row[j] = LCS of the prefix of `longer` seen so far and shorter[0, j).
  std::vector<std::size_t> row(shorter.size() + 1, 0);
  for (const std::string& token : longer) {
    std::size_t diagonal = 0;  // previous row's value at j - 1
    for (std::size_t j = 1; j <= shorter.size(); ++j) {
      const std::size_t above = row[j];
      row[j] = token == shorter[j - 1] ? diagonal + 1 : std::max(above, row[j - 1]);
      diagonal = above;
    }
  }
  return row.back();
}

double rouge_l_sentence(const std::vector<Tokens>& references, const Tokens& hypothesis,
                        const RougeOptions& options) {
  check_references(references, "ROUGE-L");
  CAPTION_CHECK(options.beta > 0.0 && std::isfinite(options.beta), "ROUGE-L beta: ",
                options.beta, " (must be positive and finite)");
  double precision_max = 0.0;
  double recall_max = 0.0;
  for (const Tokens& reference : references) {
    const auto lcs = static_cast<double>(lcs_length(reference, hypothesis));
    if (lcs == 0.0) continue;  // also covers empty sentences (no division by zero)
    precision_max = std::max(precision_max, lcs / static_cast<double>(hypothesis.size()));
    recall_max = std::max(recall_max, lcs / static_cast<double>(reference.size()));
  }
  if (precision_max == 0.0 || recall_max == 0.0) return 0.0;
  const double beta2 = options.beta * options.beta;
  return ((1.0 + beta2) * precision_max * recall_max) / (recall_max + beta2 * precision_max);
}

RougeResult rouge_l(const std::vector<Sample>& corpus, const RougeOptions& options) {
  check_corpus(corpus, "ROUGE-L");
  RougeResult result;
  result.per_image.reserve(corpus.size());
  double total = 0.0;
  for (const Sample& sample : corpus) {
    const double score = rouge_l_sentence(sample.references, sample.hypothesis, options);
    result.per_image.push_back(score);
    total += score;
  }
  result.corpus = total / static_cast<double>(corpus.size());
  return result;
}

}  // namespace caption::metrics
