// Caption normalisation options (MODEL_SPEC.md section 1) and their JSON form.
//
// The options travel inside a checkpoint's config under `text`, so the JSON keys are a
// contract: exactly `lowercase`, `remove_punctuation`, `alpha_only`, `lemmatize`,
// `lemmatize_pos`, `stem`, `remove_stopwords`, `min_token_len`. Reading refuses unknown
// keys and wrong types (a typo in a config must not silently change the tokens); a key
// that is absent keeps its default, so a config may name only what it changes.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace caption::text {

// WordNet parts of speech that the lemmatiser accepts, written in JSON and on command
// lines as WordNet's letters n, v, a, r. NLTK also accepts "s" (adjective satellite);
// in NLTK 3.8 it looks up exactly what "a" does, so "s" is read as Adjective.
enum class PartOfSpeech { Noun, Verb, Adjective, Adverb };

// "n", "v", "a" or "r".
std::string_view pos_letter(PartOfSpeech pos);
// Parses "n", "v", "a", "r" (or "s", the satellite alias of "a"); throws caption::Error
// naming `context` for anything else.
PartOfSpeech parse_pos(std::string_view letter, std::string_view context);

struct TextOptions {
  bool lowercase = true;           // ASCII letters only (see normalize.h)
  bool remove_punctuation = true;  // deletes the 32 ASCII punctuation characters
  bool alpha_only = true;          // drops tokens that are not purely [A-Za-z]
  bool lemmatize = false;          // WordNet morphy, as NLTK's WordNetLemmatizer
  PartOfSpeech lemmatize_pos = PartOfSpeech::Noun;
  bool stem = false;               // NLTK's PorterStemmer (NLTK_EXTENSIONS mode)
  bool remove_stopwords = false;   // NLTK's English list (stopwords.h)
  int64_t min_token_len = 1;       // in characters (Unicode code points)

  bool operator==(const TextOptions&) const = default;
};

// Reads options from a JSON object; `context` names the input in messages (e.g.
// "checkpoint model.ckpt: config.text"). Throws caption::Error on unknown keys, wrong
// types or out-of-range values.
TextOptions text_options_from_json(const nlohmann::json& j, std::string_view context);

// nlohmann-json hooks (found by ADL). from_json uses the context "text options".
void to_json(nlohmann::json& j, const TextOptions& options);
void from_json(const nlohmann::json& j, TextOptions& options);

}  // namespace caption::text
