// Caption normalisation: raw caption text -> tokens (MODEL_SPEC.md section 1).
//
// Pipeline, in this order (the original project's):
//   1. lowercase                 (option `lowercase`, on)
//   2. delete ASCII punctuation  (option `remove_punctuation`, on): the 32 characters
//      of Python's string.punctuation are removed, not replaced by spaces, so
//      "don't" -> "dont" and "t-shirt" -> "tshirt", as in the Karpathy split files
//   3. split on whitespace
//   4. stopword removal          (option `remove_stopwords`, off): NLTK's English list,
//      matched against the tokens of step 3, i.e. after punctuation is gone
//      ("dont" is not a stopword, "don" is); see stopwords.h
//   5. lemmatising               (option `lemmatize`, off; `lemmatize_pos`, noun)
//   6. Porter stemming           (option `stem`, off)
//   7. alphabetic filter         (option `alpha_only`, on): drop tokens that are not
//      purely letters (numbers such as "2" survive only with it off)
//   8. length filter             (option `min_token_len`, 1, in code points)
//
// Text is UTF-8. Lowercasing, punctuation, whitespace and "letters" are ASCII notions
// here, by choice: the Karpathy tokens are ASCII, and the exact Unicode tables of
// Python are not worth carrying. So non-ASCII letters keep their case, non-ASCII
// punctuation (curly quotes) stays inside its token, and with `alpha_only` a token with
// any non-ASCII byte is dropped (Python's isalpha would keep "café"). Whitespace is
// Python's ASCII set: space, \t \n \v \f \r and \x1c-\x1f.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "data/text/options.h"
#include "data/text/wordnet.h"

namespace caption::text {

// Where the normaliser finds what its options need beyond the options themselves.
struct NormalizerResources {
  std::filesystem::path wordnet_dir = default_wordnet_dir();  // read only if lemmatising
};

class Normalizer {
 public:
  // Loads the WordNet database when options.lemmatize is on (errors name the missing
  // file); otherwise touches no file.
  explicit Normalizer(const TextOptions& options, const NormalizerResources& resources = {});
  // Shares a lemmatiser that is already loaded (it must not be null when lemmatising).
  Normalizer(const TextOptions& options, std::shared_ptr<const WordNetLemmatizer> lemmatizer);

  // The tokens of one caption. Thread-safe; never throws on any text.
  std::vector<std::string> normalize(std::string_view caption) const;

  const TextOptions& options() const { return options_; }

 private:
  bool keep_token(std::string& token) const;

  TextOptions options_;
  std::shared_ptr<const WordNetLemmatizer> lemmatizer_;  // null unless lemmatising
};

// True for the 32 characters of Python's string.punctuation.
bool is_ascii_punctuation(char c);
// True when every byte is an ASCII letter (and there is at least one).
bool is_ascii_alpha(std::string_view token);

}  // namespace caption::text
