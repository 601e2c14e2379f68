// CIDEr-D as coco-caption computes it; the definition is in cider.h. All sentences of
// the corpus share one TokenInterner because document frequencies compare n-grams
// across images. Each sentence's tf-idf vector is built once (coco-caption rebuilds the
// reference vectors per call; the numbers are the same).
#include "data/metrics/cider.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

#include "data/metrics/ngram.h"
#include "engine/error.h"

namespace caption::metrics {

namespace {

using detail::NgramCounts;
using detail::NgramKey;
using detail::TokenId;

// Per-order n-gram counts of one sentence.
using SentenceCounts = std::vector<NgramCounts>;

// Per-order tf-idf vector with its norms and the coco-caption "length".
struct TfIdfVector {
  std::vector<std::unordered_map<NgramKey, double>> weights;  // [n-1]
  std::vector<double> norms;                                  // [n-1]
  std::int64_t length = 0;                                    // number of bigrams
};

SentenceCounts count_sentence(const std::vector<TokenId>& ids, std::size_t max_order) {
  SentenceCounts counts(max_order);
  for (std::size_t order = 1; order <= max_order; ++order)
    counts[order - 1] = detail::count_ngrams(ids, order);
  return counts;
}

TfIdfVector to_vector(const SentenceCounts& counts,
                      const std::vector<std::unordered_map<NgramKey, std::int64_t>>& document_frequency,
                      double log_corpus_size) {
  TfIdfVector vector;
  const std::size_t max_order = counts.size();
  vector.weights.resize(max_order);
  vector.norms.assign(max_order, 0.0);
  for (std::size_t n = 0; n < max_order; ++n) {
    vector.weights[n].reserve(counts[n].size());
    for (const auto& [ngram, term_frequency] : counts[n]) {
      const auto found = document_frequency[n].find(ngram);
      const std::int64_t df = found == document_frequency[n].end() ? 0 : found->second;
      const double log_df = std::log(std::max(1.0, static_cast<double>(df)));
      const double weight = static_cast<double>(term_frequency) * (log_corpus_size - log_df);
      vector.weights[n].emplace(ngram, weight);
      vector.norms[n] += weight * weight;
      // coco-caption counts the length in bigrams (its "n == 1" is the bigram index).
      if (n == 1) vector.length += term_frequency;
    }
  }
  for (double& norm : vector.norms) norm = std::sqrt(norm);
  return vector;
}

// coco-caption's sim(): one value per order, accumulated into `sum`.
void add_similarity(const TfIdfVector& hypothesis, const TfIdfVector& reference, double sigma,
                    std::vector<double>& sum) {
  const double delta = static_cast<double>(hypothesis.length - reference.length);
  // coco-caption writes np.e ** x, i.e. pow(e, x); keep it for bit-level agreement.
  const double penalty = std::pow(std::numbers::e, -(delta * delta) / (2.0 * sigma * sigma));
  for (std::size_t n = 0; n < hypothesis.weights.size(); ++n) {
    double value = 0.0;
    const auto& reference_weights = reference.weights[n];
    for (const auto& [ngram, hypothesis_weight] : hypothesis.weights[n]) {
      const auto found = reference_weights.find(ngram);
      if (found == reference_weights.end()) continue;
      value += std::min(hypothesis_weight, found->second) * found->second;
    }
    if (hypothesis.norms[n] != 0.0 && reference.norms[n] != 0.0)
      value /= hypothesis.norms[n] * reference.norms[n];
    sum[n] += value * penalty;
  }
}

}  // namespace

CiderResult cider_d(const std::vector<Sample>& corpus, const CiderOptions& options) {
  check_corpus(corpus, "CIDEr-D");
  CAPTION_CHECK(options.max_order >= 1, "CIDEr-D max_order: ", options.max_order,
                " (must be at least 1)");
  CAPTION_CHECK(options.sigma > 0.0 && std::isfinite(options.sigma), "CIDEr-D sigma: ",
                options.sigma, " (must be positive and finite)");
  const std::size_t max_order = options.max_order;

  detail::TokenInterner interner;
  std::vector<SentenceCounts> hypothesis_counts;
  std::vector<std::vector<SentenceCounts>> reference_counts;
  hypothesis_counts.reserve(corpus.size());
  reference_counts.reserve(corpus.size());
  std::vector<std::unordered_map<NgramKey, std::int64_t>> document_frequency(max_order);

  for (const Sample& sample : corpus) {
    hypothesis_counts.push_back(count_sentence(interner.encode(sample.hypothesis), max_order));
    auto& references = reference_counts.emplace_back();
    references.reserve(sample.references.size());
    for (const Tokens& reference : sample.references)
      references.push_back(count_sentence(interner.encode(reference), max_order));
    // df counts images, so an n-gram in several references of one image counts once.
    for (std::size_t n = 0; n < max_order; ++n) {
      std::unordered_set<std::string_view> seen;
      for (const SentenceCounts& reference : references) {
        for (const auto& entry : reference[n]) {
          if (seen.insert(entry.first).second) ++document_frequency[n][entry.first];
        }
      }
    }
  }

  const double log_corpus_size = std::log(static_cast<double>(corpus.size()));
  CiderResult result;
  result.per_image.reserve(corpus.size());
  double total = 0.0;
  for (std::size_t i = 0; i < corpus.size(); ++i) {
    const TfIdfVector hypothesis =
        to_vector(hypothesis_counts[i], document_frequency, log_corpus_size);
    std::vector<double> sum(max_order, 0.0);
    for (const SentenceCounts& reference : reference_counts[i]) {
      add_similarity(hypothesis, to_vector(reference, document_frequency, log_corpus_size),
                     options.sigma, sum);
    }
    double mean_over_orders = 0.0;
    for (double value : sum) mean_over_orders += value;
    mean_over_orders /= static_cast<double>(max_order);
    const double score =
        mean_over_orders / static_cast<double>(reference_counts[i].size()) * 10.0;
    result.per_image.push_back(score);
    total += score;
  }
  result.corpus = total / static_cast<double>(corpus.size());
  return result;
}

}  // namespace caption::metrics
