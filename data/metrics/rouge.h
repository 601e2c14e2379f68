// ROUGE-L as coco-caption computes it (pycocoevalcap/rouge, beta = 1.2).
//
// Per image: for every reference, LCS = longest common subsequence of tokens with the
// hypothesis; precision = LCS / |hyp| and recall = LCS / |ref| are each maximised over
// the references independently (the two maxima may come from different references);
// score = (1 + beta^2) P R / (R + beta^2 P) when both maxima are non-zero, else 0.
// Corpus score = mean over images.
// coco-caption splits strings on " ", so it never sees a sentence of zero tokens; here
// an empty hypothesis or reference has no common subsequence and contributes 0 (no
// division by zero), which is what coco-caption gives for the empty string.
// Rejects an empty corpus or a sample without references.
#pragma once

#include <cstddef>
#include <vector>

#include "data/metrics/sample.h"

namespace caption::metrics {

struct RougeOptions {
  double beta = 1.2;  // weight of recall relative to precision
};

struct RougeResult {
  double corpus = 0.0;            // mean of per_image
  std::vector<double> per_image;  // in corpus order
};

// Length of the longest common subsequence of two token sequences.
std::size_t lcs_length(const Tokens& a, const Tokens& b);

// ROUGE-L of one hypothesis against its references.
double rouge_l_sentence(const std::vector<Tokens>& references, const Tokens& hypothesis,
                        const RougeOptions& options = {});

RougeResult rouge_l(const std::vector<Sample>& corpus, const RougeOptions& options = {});

}  // namespace caption::metrics
