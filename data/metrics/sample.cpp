// Validation shared by all metrics (see sample.h).
#include "data/metrics/sample.h"

#include "engine/error.h"

namespace caption::metrics {

void check_references(const std::vector<Tokens>& references, std::string_view metric) {
  CAPTION_CHECK(!references.empty(), metric,
                ": a hypothesis has no reference sentence (at least one is required)");
}

void check_corpus(const std::vector<Sample>& corpus, std::string_view metric) {
  CAPTION_CHECK(!corpus.empty(), metric, ": the corpus is empty (no sample to score)");
  for (std::size_t i = 0; i < corpus.size(); ++i) {
    CAPTION_CHECK(!corpus[i].references.empty(), metric, ": sample ", i,
                  " has no reference sentence (at least one is required)");
  }
}

}  // namespace caption::metrics
