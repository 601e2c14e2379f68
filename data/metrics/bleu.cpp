// BLEU as NLTK 3.8 computes it; the contract and NLTK's corner cases are listed in
// bleu.h. Every sample is encoded with one TokenInterner per sample: BLEU only compares
// a hypothesis with its own references, so ids need not be shared across samples.
#include "data/metrics/bleu.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <string>
#include <vector>

#include "data/metrics/ngram.h"
#include "engine/error.h"

namespace caption::metrics {

namespace {

using detail::count_ngrams;
using detail::NgramCounts;
using detail::TokenId;

// Exactly rounded sum of finite doubles: CPython's math.fsum (Shewchuk's algorithm
// with the round-half-even correction of its final step). NLTK sums the weighted log
// precisions with math.fsum; a naive sum may differ from it in the last bits.
double exact_sum(const std::vector<double>& values) {
  std::vector<double> partials;
  for (double x : values) {
    std::size_t kept = 0;
    for (double y : partials) {
      if (std::fabs(x) < std::fabs(y)) std::swap(x, y);
      const double hi = x + y;
      const double lo = y - (hi - x);
      if (lo != 0.0) partials[kept++] = lo;
      x = hi;
    }
    partials.resize(kept);
    if (x != 0.0) partials.push_back(x);
  }
  std::size_t n = partials.size();
  if (n == 0) return 0.0;
  double hi = partials[--n];
  double lo = 0.0;
  while (n > 0) {
    const double x = hi;
    const double y = partials[--n];
    hi = x + y;
    lo = y - (hi - x);
    if (lo != 0.0) break;
  }
  // Round half to even across the remaining partials: if the dropped tail has the
  // same sign as lo, hi + 2*lo decides the rounding direction.
  if (n > 0 && ((lo < 0.0 && partials[n - 1] < 0.0) || (lo > 0.0 && partials[n - 1] > 0.0))) {
    const double y = lo * 2.0;
    const double x = hi + y;
    if (y == x - hi) hi = x;
  }
  return hi;
}

// Clipped matches of one order given the encoded hypothesis and references.
NgramPrecision precision_of_order(const std::vector<std::vector<TokenId>>& references,
                                  const std::vector<TokenId>& hypothesis, std::size_t order) {
  const NgramCounts hypothesis_counts = count_ngrams(hypothesis, order);
  NgramPrecision precision;
  precision.denominator = std::max<std::int64_t>(1, detail::ngram_total(hypothesis.size(), order));
  if (hypothesis_counts.empty()) return precision;
  // max_counts[g] = max over references of the count of g in that one reference.
  NgramCounts max_counts;
  max_counts.reserve(hypothesis_counts.size());
  for (const auto& reference : references) {
    if (reference.size() < order) continue;
    const NgramCounts reference_counts = count_ngrams(reference, order);
    for (const auto& [ngram, count] : hypothesis_counts) {
      const auto found = reference_counts.find(ngram);
      if (found == reference_counts.end()) continue;
      std::int64_t& best = max_counts[ngram];
      best = std::max(best, found->second);
    }
  }
  for (const auto& [ngram, count] : hypothesis_counts) {
    const auto found = max_counts.find(ngram);
    if (found != max_counts.end()) precision.numerator += std::min(count, found->second);
  }
  return precision;
}

// Adds one sample (hypothesis and its references) to corpus statistics.
void accumulate(const std::vector<Tokens>& references, const Tokens& hypothesis,
                BleuStatistics& statistics) {
  detail::TokenInterner interner;
  const std::vector<TokenId> hypothesis_ids = interner.encode(hypothesis);
  std::vector<std::vector<TokenId>> reference_ids;
  reference_ids.reserve(references.size());
  for (const Tokens& reference : references) reference_ids.push_back(interner.encode(reference));

  for (std::size_t order = 1; order <= statistics.matches.size(); ++order) {
    const NgramPrecision precision = precision_of_order(reference_ids, hypothesis_ids, order);
    statistics.matches[order - 1] += precision.numerator;
    statistics.totals[order - 1] += precision.denominator;
  }
  statistics.hypothesis_length += static_cast<std::int64_t>(hypothesis.size());
  statistics.reference_length +=
      static_cast<std::int64_t>(closest_ref_length(references, hypothesis.size()));
}

void check_weights(const BleuWeights& weights) {
  CAPTION_CHECK(!weights.empty(), "BLEU weights: at least one n-gram order is required");
  for (std::size_t i = 0; i < weights.size(); ++i) {
    CAPTION_CHECK(std::isfinite(weights[i]), "BLEU weights: weight ", i + 1, " is ",
                  weights[i], " (weights must be finite)");
  }
}

}  // namespace

BleuWeights uniform_bleu_weights(std::size_t max_order) {
  CAPTION_CHECK(max_order >= 1, "BLEU order: ", max_order, " (must be at least 1)");
  return BleuWeights(max_order, 1.0 / static_cast<double>(max_order));
}

NgramPrecision modified_precision(const std::vector<Tokens>& references,
                                  const Tokens& hypothesis, std::size_t order) {
  CAPTION_CHECK(order >= 1, "modified precision: n-gram order ", order,
                " (must be at least 1)");
  detail::TokenInterner interner;
  const std::vector<TokenId> hypothesis_ids = interner.encode(hypothesis);
  std::vector<std::vector<TokenId>> reference_ids;
  for (const Tokens& reference : references) reference_ids.push_back(interner.encode(reference));
  return precision_of_order(reference_ids, hypothesis_ids, order);
}

std::size_t closest_ref_length(const std::vector<Tokens>& references,
                               std::size_t hypothesis_length) {
  check_references(references, "BLEU closest reference length");
  auto distance = [&](std::size_t length) {
    return length > hypothesis_length ? length - hypothesis_length : hypothesis_length - length;
  };
  std::size_t best = references.front().size();
  for (const Tokens& reference : references) {
    const std::size_t length = reference.size();
    // NLTK: min over (|ref - hyp|, ref), i.e. ties go to the shorter reference.
    if (distance(length) < distance(best) || (distance(length) == distance(best) && length < best))
      best = length;
  }
  return best;
}

double brevity_penalty(std::size_t closest_ref_length, std::size_t hypothesis_length) {
  if (hypothesis_length > closest_ref_length) return 1.0;
  if (hypothesis_length == 0) return 0.0;
  // Both lengths convert exactly, so the quotient is rounded like Python's int / int.
  return std::exp(1.0 - static_cast<double>(closest_ref_length) /
                            static_cast<double>(hypothesis_length));
}

BleuStatistics bleu_statistics(const std::vector<Sample>& corpus, std::size_t max_order) {
  CAPTION_CHECK(max_order >= 1, "BLEU order: ", max_order, " (must be at least 1)");
  check_corpus(corpus, "BLEU");
  BleuStatistics statistics;
  statistics.matches.assign(max_order, 0);
  statistics.totals.assign(max_order, 0);
  for (const Sample& sample : corpus) accumulate(sample.references, sample.hypothesis, statistics);
  return statistics;
}

double bleu_from_statistics(const BleuStatistics& statistics, const BleuWeights& weights) {
  check_weights(weights);
  CAPTION_CHECK(weights.size() <= statistics.matches.size(), "BLEU weights: ", weights.size(),
                " orders weighted but the statistics hold only ", statistics.matches.size());
  CAPTION_CHECK(statistics.matches.size() == statistics.totals.size(),
                "BLEU statistics: matches and totals differ in length");
  // NLTK returns 0 (before any logarithm) when no unigram matches at all.
  if (statistics.matches[0] == 0) return 0.0;
  const double bp =
      brevity_penalty(static_cast<std::size_t>(statistics.reference_length),
                      static_cast<std::size_t>(statistics.hypothesis_length));
  std::vector<double> terms;
  terms.reserve(weights.size());
  for (std::size_t i = 0; i < weights.size(); ++i) {
    CAPTION_CHECK(statistics.totals[i] > 0, "BLEU statistics: order ", i + 1,
                  " has no n-gram slot (totals must be positive)");
    // method0: a zero precision becomes DBL_MIN so that log() stays finite.
    const double precision =
        statistics.matches[i] > 0
            ? static_cast<double>(statistics.matches[i]) / static_cast<double>(statistics.totals[i])
            : DBL_MIN;
    terms.push_back(weights[i] * std::log(precision));
  }
  return bp * std::exp(exact_sum(terms));
}

double corpus_bleu(const std::vector<Sample>& corpus, const BleuWeights& weights) {
  check_weights(weights);
  return bleu_from_statistics(bleu_statistics(corpus, weights.size()), weights);
}

std::vector<double> corpus_bleu_for_weights(const std::vector<Sample>& corpus,
                                            const std::vector<BleuWeights>& weight_sets) {
  CAPTION_CHECK(!weight_sets.empty(), "BLEU weight sets: at least one is required");
  std::size_t max_order = 0;
  for (const BleuWeights& weights : weight_sets) {
    check_weights(weights);
    max_order = std::max(max_order, weights.size());
  }
  const BleuStatistics statistics = bleu_statistics(corpus, max_order);
  std::vector<double> scores;
  scores.reserve(weight_sets.size());
  for (const BleuWeights& weights : weight_sets)
    scores.push_back(bleu_from_statistics(statistics, weights));
  return scores;
}

double sentence_bleu(const std::vector<Tokens>& references, const Tokens& hypothesis,
                     const BleuWeights& weights) {
  check_weights(weights);
  check_references(references, "sentence BLEU");
  BleuStatistics statistics;
  statistics.matches.assign(weights.size(), 0);
  statistics.totals.assign(weights.size(), 0);
  accumulate(references, hypothesis, statistics);
  return bleu_from_statistics(statistics, weights);
}

std::array<double, 4> bleu_1_to_4(const std::vector<Sample>& corpus) {
  const BleuStatistics statistics = bleu_statistics(corpus, 4);
  std::array<double, 4> scores{};
  for (std::size_t n = 1; n <= 4; ++n)
    scores[n - 1] = bleu_from_statistics(statistics, uniform_bleu_weights(n));
  return scores;
}

}  // namespace caption::metrics
