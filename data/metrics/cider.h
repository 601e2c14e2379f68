// CIDEr-D as coco-caption computes it (pycocoevalcap/cider, the "Cider" scorer, which
// is the CIDEr-D variant of Vedantam et al.).
//
// For the N images of one evaluation:
//  - every sentence becomes, per order n = 1..4, a vector of raw n-gram counts (term
//    frequency) times log(N) - log(max(1, df)), where df is the number of images whose
//    reference set contains the n-gram (hypotheses never count towards df). The idf is
//    therefore corpus-dependent: scoring a subset gives different numbers;
//  - similarity of a hypothesis with one reference, per order: sum over hypothesis
//    n-grams of min(v_hyp, v_ref) * v_ref (the "D" clipping), divided by the product
//    of the two vector norms when both are non-zero, times the Gaussian length penalty
//    exp(-delta^2 / (2 sigma^2)) with sigma = 6;
//  - image score = 10 * mean over orders of (sum over references / number of refs);
//    corpus score = mean of the image scores.
// coco-caption measures the "length" of a sentence as its number of bigrams, not
// words (a quirk of its counts2vec). We keep that definition; it gives the same delta
// as word lengths whenever both sentences are non-empty, and when one is empty its
// vector is zero and the similarity is 0 either way. (With max_order = 1 no bigram
// is counted, so every length is 0 and there is no length penalty, as in coco-caption.)
// Rejects an empty corpus or a sample without references.
#pragma once

#include <cstddef>
#include <vector>

#include "data/metrics/sample.h"

namespace caption::metrics {

struct CiderOptions {
  std::size_t max_order = 4;  // n-gram orders 1..max_order
  double sigma = 6.0;         // width of the Gaussian length penalty
};

struct CiderResult {
  double corpus = 0.0;             // mean of per_image
  std::vector<double> per_image;   // in corpus order
};

CiderResult cider_d(const std::vector<Sample>& corpus, const CiderOptions& options = {});

}  // namespace caption::metrics
