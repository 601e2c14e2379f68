// The Porter stemmer exactly as NLTK 3.8's `PorterStemmer()` in its default mode
// (NLTK_EXTENSIONS): Porter's 1980 algorithm with Martin Porter's later changes and
// NLTK's own (the irregular-forms table, 'ies'/'ied' on four-letter words, 'alli'
// first, 'fulli', 'logi', the two-letter *o condition, the y -> i rule of step 1c).
//
// Like NLTK, words of one or two characters are returned as they are (lowercased), and
// the stemmer lowercases its input. Differences, by choice: lowercasing touches ASCII
// letters only (NLTK uses Python's Unicode str.lower()); the captions this engine reads
// are lowercased ASCII by the time they are stemmed. Lengths are measured in code
// points, as Python does, so non-ASCII words stem as NLTK stems them.
#pragma once

#include <string>
#include <string_view>

namespace caption::text {

// Stems one word (UTF-8). Never throws on any input; invalid UTF-8 bytes pass through.
std::string porter_stem(std::string_view word);

}  // namespace caption::text
