// The input of the captioning metrics: one Sample per image, holding the tokens of the
// generated caption (the hypothesis) and the token lists of its reference captions.
// Tokenisation and case folding happen before the metrics: they compare tokens as
// exact, case-sensitive strings, which is what NLTK and coco-caption do once their own
// tokenisers have run. check_corpus() is the one place that validates the shared
// preconditions, so that every metric rejects the same malformed input the same way.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace caption::metrics {

// One sentence, already split into tokens.
using Tokens = std::vector<std::string>;

// One evaluated image: its hypothesis and (at least one) reference.
struct Sample {
  Tokens hypothesis;
  std::vector<Tokens> references;
};

// Throws caption::Error when the corpus is empty or a sample has no reference; `metric`
// names the caller in the message. Neither case has a defined score (NLTK raises on
// both, coco-caption asserts).
void check_corpus(const std::vector<Sample>& corpus, std::string_view metric);

// Same check for one sample's references (sentence-level functions).
void check_references(const std::vector<Tokens>& references, std::string_view metric);

}  // namespace caption::metrics
