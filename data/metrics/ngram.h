// N-gram counting shared by the metrics (an implementation header of data/metrics).
//
// Tokens are interned to dense integer ids once, and an n-gram's key is the
// concatenation of its ids' LEB128 varint encodings. Varints are prefix-free, so a key
// of exactly n ids decodes uniquely: two different n-grams of the same order never
// share a key (keys of different orders may, so counts are always kept per order).
// Small vocabularies give 1-2 bytes per token, which keeps keys of order <= 4 inside
// std::string's small-string buffer: counting allocates no key memory in practice.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "data/metrics/sample.h"

namespace caption::metrics::detail {

using TokenId = std::uint32_t;
using NgramKey = std::string;
// Count of each n-gram of one order in one sentence (or a union of sentences).
using NgramCounts = std::unordered_map<NgramKey, std::int64_t>;

// Maps token strings to dense ids; ids are only meaningful within one interner, so a
// computation that compares sentences must encode all of them with the same one.
class TokenInterner {
 public:
  std::vector<TokenId> encode(const Tokens& tokens);

 private:
  std::unordered_map<std::string, TokenId> ids_;
};

// Counts the n-grams of exactly `order` tokens (order >= 1); a sentence shorter than
// `order` has none.
NgramCounts count_ngrams(std::span<const TokenId> ids, std::size_t order);

// Total number of n-grams of `order` in a sentence of `length` tokens.
inline std::int64_t ngram_total(std::size_t length, std::size_t order) {
  return length >= order ? static_cast<std::int64_t>(length - order + 1) : 0;
}

}  // namespace caption::metrics::detail
