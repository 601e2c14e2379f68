// N-gram counting for the metrics: token interning and varint-packed n-gram keys (the
// encoding and why it is unambiguous are described in ngram.h).
#include "data/metrics/ngram.h"

#include "engine/error.h"

namespace caption::metrics {

namespace detail {

namespace {

void append_varint(std::string& out, TokenId id) {
  while (id >= 0x80) {
    out.push_back(static_cast<char>((id & 0x7f) | 0x80));
    id >>= 7;
  }
  out.push_back(static_cast<char>(id));
}

}  // namespace

std::vector<TokenId> TokenInterner::encode(const Tokens& tokens) {
  std::vector<TokenId> ids;
  ids.reserve(tokens.size());
  for (const std::string& token : tokens) {
    auto [it, inserted] = ids_.try_emplace(token, static_cast<TokenId>(ids_.size()));
    ids.push_back(it->second);
  }
  return ids;
}

NgramCounts count_ngrams(std::span<const TokenId> ids, std::size_t order) {
  CAPTION_ASSERT(order >= 1, "n-gram order must be positive");
  NgramCounts counts;
  if (ids.size() < order) return counts;
  counts.reserve(ids.size() - order + 1);
  NgramKey key;
  for (std::size_t start = 0; start + order <= ids.size(); ++start) {
    key.clear();
    for (std::size_t k = 0; k < order; ++k) append_varint(key, ids[start + k]);
    ++counts[key];
  }
  return counts;
}

}  // namespace detail
}  // namespace caption::metrics
