// NLTK's English stopword list (nltk_data corpora/stopwords/english as shipped with
// NLTK 3.8: 179 words). The corpus is not installed on the build machines and cannot be
// downloaded, so the list is embedded; its order is the file's order.
//
// The list holds apostrophe forms ("don't", "it's"). With `remove_punctuation` on (the
// default) the apostrophe is gone before stopword removal runs, so "don't" reaches the
// filter as "dont", which is not on the list, while "don", "t", "s" ... are; this is the
// order of the original project (punctuation first) and is kept for its tokens.
#pragma once

#include <array>
#include <string_view>

namespace caption::text {

inline constexpr size_t kEnglishStopwordCount = 179;

// The words in the corpus file's order.
const std::array<std::string_view, kEnglishStopwordCount>& english_stopwords();

// True when `word` (compared exactly, case-sensitive as NLTK's `w in stopwords`) is on
// the list.
bool is_english_stopword(std::string_view word);

}  // namespace caption::text
