// Small string helpers shared by the text code: a hash that lets unordered containers
// of std::string be searched with a std::string_view (no temporary string per lookup,
// which matters when scanning a 400k-line GloVe file), and UTF-8 character counting
// (NLTK measures lengths in Unicode code points, not bytes).
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

namespace caption::text {

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept {
    return std::hash<std::string_view>{}(s);
  }
};

using StringSet = std::unordered_set<std::string, StringHash, std::equal_to<>>;
template <typename V>
using StringMap = std::unordered_map<std::string, V, StringHash, std::equal_to<>>;

// Number of code points in UTF-8 text: every byte that is not a continuation byte
// (10xxxxxx) starts one. Invalid UTF-8 is counted byte-wise and never throws.
inline size_t utf8_length(std::string_view s) noexcept {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

inline bool is_ascii(std::string_view s) noexcept {
  for (unsigned char c : s)
    if (c >= 0x80) return false;
  return true;
}

}  // namespace caption::text
