// BLEU as NLTK 3.8 computes it (nltk.translate.bleu_score, no smoothing = method0).
//
// The contract, mirrored from NLTK's source rather than from the BLEU paper where they
// differ:
//  - modified precision of order n clips each hypothesis n-gram count to its maximum
//    count in any single reference; its denominator is max(1, number of hypothesis
//    n-grams), so an empty or too short hypothesis still adds 1 to the denominator;
//  - corpus BLEU sums numerators and denominators over the samples (micro average) and
//    applies one brevity penalty to the summed hypothesis length and the summed closest
//    reference lengths (closest by |ref - hyp|, ties to the shorter reference);
//    BP = 1 if hyp > ref, 0 if hyp == 0, exp(1 - ref / hyp) otherwise;
//  - if the corpus has no unigram match at all the score is exactly 0 (NLTK returns the
//    int 0 before any logarithm); this covers an all-empty hypothesis corpus;
//  - otherwise an order with zero matches has its precision replaced by
//    DBL_MIN (sys.float_info.min), so the score is tiny but not zero: e.g. two zero
//    orders at weight 1/4 give exp(0.5 * log(DBL_MIN)) = 1.491668146240062e-154;
//  - score = BP * exp(fsum(w_i * log p_i)) where the weights are zipped with the
//    precisions (weights of any length >= 1; BLEU-n uses n weights of 1/n). The sum is
//    exactly rounded like Python's math.fsum so the result matches NLTK to the last bit
//    in the usual case.
// An empty corpus or a sample without references is rejected (NLTK raises on both).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "data/metrics/sample.h"

namespace caption::metrics {

// Weights of the n-gram orders 1..weights.size().
using BleuWeights = std::vector<double>;

// (1/n, ..., 1/n) with n entries: the weights of BLEU-n.
BleuWeights uniform_bleu_weights(std::size_t max_order);

// Clipped n-gram matches over the number of hypothesis n-grams (at least 1).
struct NgramPrecision {
  std::int64_t numerator = 0;
  std::int64_t denominator = 1;
  double value() const {
    return static_cast<double>(numerator) / static_cast<double>(denominator);
  }
};

// NLTK's modified_precision(references, hypothesis, n); order >= 1. References may be
// empty here (NLTK allows it: nothing is matched).
NgramPrecision modified_precision(const std::vector<Tokens>& references,
                                  const Tokens& hypothesis, std::size_t order);

// Length of the reference closest in length to the hypothesis; ties go to the shorter.
std::size_t closest_ref_length(const std::vector<Tokens>& references,
                               std::size_t hypothesis_length);

// NLTK's brevity_penalty(closest_ref_len, hyp_len) for one sentence or corpus totals.
double brevity_penalty(std::size_t closest_ref_length, std::size_t hypothesis_length);

// Sufficient statistics of corpus BLEU up to max_order: everything the score needs.
struct BleuStatistics {
  std::vector<std::int64_t> matches;  // [n-1]: clipped n-gram matches summed over samples
  std::vector<std::int64_t> totals;   // [n-1]: sum over samples of max(1, hypothesis n-grams)
  std::int64_t hypothesis_length = 0;
  std::int64_t reference_length = 0;  // sum of closest reference lengths
};

BleuStatistics bleu_statistics(const std::vector<Sample>& corpus, std::size_t max_order);

// Score from statistics; weights.size() must not exceed the statistics' order.
double bleu_from_statistics(const BleuStatistics& statistics, const BleuWeights& weights);

// NLTK corpus_bleu(list_of_references, hypotheses, weights).
double corpus_bleu(const std::vector<Sample>& corpus,
                   const BleuWeights& weights = uniform_bleu_weights(4));

// NLTK corpus_bleu with a list of weight tuples: one pass over the corpus, one score
// per weight vector (in order).
std::vector<double> corpus_bleu_for_weights(const std::vector<Sample>& corpus,
                                            const std::vector<BleuWeights>& weight_sets);

// NLTK sentence_bleu(references, hypothesis, weights): corpus BLEU of one sample.
double sentence_bleu(const std::vector<Tokens>& references, const Tokens& hypothesis,
                     const BleuWeights& weights = uniform_bleu_weights(4));

// BLEU-1..4 of a corpus ([n-1] = BLEU-n with uniform weights), in one pass.
std::array<double, 4> bleu_1_to_4(const std::vector<Sample>& corpus);

}  // namespace caption::metrics
