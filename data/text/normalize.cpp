// The caption normaliser. Steps 1-3 (lowercase, punctuation, split) run in one pass
// over the bytes; the per-token steps follow in the order normalize.h lists. No step
// allocates beyond the tokens themselves unless lemmatising or stemming, so 40k
// captions take a few milliseconds with the default options.
#include "data/text/normalize.h"

#include "data/text/porter.h"
#include "data/text/stopwords.h"
#include "data/text/strings.h"
#include "engine/error.h"

namespace caption::text {

namespace {

// Python's str.split() whitespace, restricted to ASCII.
bool is_split_space(unsigned char c) {
  return c == ' ' || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F);
}

}  // namespace

bool is_ascii_punctuation(char c) {
  // string.punctuation: !"#$%&'()*+,-./:;<=>?@[\]^_`{|}~
  return (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x40) || (c >= 0x5B && c <= 0x60) ||
         (c >= 0x7B && c <= 0x7E);
}

bool is_ascii_alpha(std::string_view token) {
  if (token.empty()) return false;
  for (char c : token)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))) return false;
  return true;
}

Normalizer::Normalizer(const TextOptions& options, const NormalizerResources& resources)
    : options_(options) {
  if (options_.lemmatize)
    lemmatizer_ = std::make_shared<const WordNetLemmatizer>(resources.wordnet_dir);
}

Normalizer::Normalizer(const TextOptions& options,
                       std::shared_ptr<const WordNetLemmatizer> lemmatizer)
    : options_(options), lemmatizer_(std::move(lemmatizer)) {
  CAPTION_CHECK(!options_.lemmatize || lemmatizer_, "text normaliser: lemmatize is on but no "
                                                    "WordNet lemmatiser was given");
}

// Steps 4-8 on one token; false when the token is dropped.
bool Normalizer::keep_token(std::string& token) const {
  if (options_.remove_stopwords && is_english_stopword(token)) return false;
  if (options_.lemmatize) token = lemmatizer_->lemmatize(token, options_.lemmatize_pos);
  if (options_.stem) token = porter_stem(token);
  if (options_.alpha_only && !is_ascii_alpha(token)) return false;
  // Tokens are never empty (nor are lemmas and stems of non-empty words), so only a
  // minimum above 1 can drop anything; lengths are code points, as Python's len().
  if (options_.min_token_len > 1 &&
      static_cast<int64_t>(utf8_length(token)) < options_.min_token_len)
    return false;
  return true;
}

std::vector<std::string> Normalizer::normalize(std::string_view caption) const {
  std::vector<std::string> tokens;
  std::string current;
  auto flush = [&] {
    if (current.empty()) return;
    if (keep_token(current)) tokens.push_back(std::move(current));
    current.clear();
  };
  for (char ch : caption) {
    auto c = static_cast<unsigned char>(ch);
    if (is_split_space(c)) {
      flush();
      continue;
    }
    if (options_.remove_punctuation && is_ascii_punctuation(ch)) continue;
    if (options_.lowercase && c >= 'A' && c <= 'Z') ch = static_cast<char>(c - 'A' + 'a');
    current.push_back(ch);
  }
  flush();
  return tokens;
}

}  // namespace caption::text
