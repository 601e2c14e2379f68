// JSON reading and writing of TextOptions. Every key is checked for its JSON type by
// hand (rather than with json::get, whose messages name no key) so that a bad config
// reports "<context>: key 'stem' must be a boolean, got string".
#include "data/text/options.h"

#include <array>

#include "engine/error.h"

namespace caption::text {

namespace {

constexpr std::array<std::string_view, 8> kKeys = {
    "lowercase", "remove_punctuation", "alpha_only",       "lemmatize",
    "lemmatize_pos", "stem",           "remove_stopwords", "min_token_len"};

std::string known_keys() {
  std::string out;
  for (auto key : kKeys) {
    if (!out.empty()) out += ", ";
    out += key;
  }
  return out;
}

bool read_bool(const nlohmann::json& j, std::string_view key, std::string_view context) {
  CAPTION_CHECK(j.is_boolean(), context, ": key '", key, "' must be a boolean, got ",
                j.type_name());
  return j.get<bool>();
}

}  // namespace

std::string_view pos_letter(PartOfSpeech pos) {
  switch (pos) {
    case PartOfSpeech::Noun: return "n";
    case PartOfSpeech::Verb: return "v";
    case PartOfSpeech::Adjective: return "a";
    case PartOfSpeech::Adverb: return "r";
  }
  return "n";
}

PartOfSpeech parse_pos(std::string_view letter, std::string_view context) {
  if (letter == "n") return PartOfSpeech::Noun;
  if (letter == "v") return PartOfSpeech::Verb;
  if (letter == "a" || letter == "s") return PartOfSpeech::Adjective;
  if (letter == "r") return PartOfSpeech::Adverb;
  throw Error(str(context, ": part of speech must be one of n, v, a, r (WordNet's letters), got '",
                  letter, "'"));
}

TextOptions text_options_from_json(const nlohmann::json& j, std::string_view context) {
  CAPTION_CHECK(j.is_object(), context, ": text options must be a JSON object, got ",
                j.type_name());
  TextOptions o;
  for (const auto& [key, value] : j.items()) {
    if (key == "lowercase") {
      o.lowercase = read_bool(value, key, context);
    } else if (key == "remove_punctuation") {
      o.remove_punctuation = read_bool(value, key, context);
    } else if (key == "alpha_only") {
      o.alpha_only = read_bool(value, key, context);
    } else if (key == "lemmatize") {
      o.lemmatize = read_bool(value, key, context);
    } else if (key == "stem") {
      o.stem = read_bool(value, key, context);
    } else if (key == "remove_stopwords") {
      o.remove_stopwords = read_bool(value, key, context);
    } else if (key == "lemmatize_pos") {
      CAPTION_CHECK(value.is_string(), context,
                    ": key 'lemmatize_pos' must be a string (n, v, a or r), got ",
                    value.type_name());
      o.lemmatize_pos = parse_pos(value.get<std::string>(), str(context, ": key 'lemmatize_pos'"));
    } else if (key == "min_token_len") {
      CAPTION_CHECK(value.is_number_integer(), context,
                    ": key 'min_token_len' must be an integer, got ", value.type_name(),
                    value.is_number() ? " (not a whole number)" : "");
      // Unsigned JSON integers above int64 would wrap; reject them with the negatives.
      CAPTION_CHECK(!value.is_number_unsigned() ||
                        value.get<uint64_t>() <= static_cast<uint64_t>(INT64_MAX),
                    context, ": key 'min_token_len' is too large");
      o.min_token_len = value.get<int64_t>();
      CAPTION_CHECK(o.min_token_len >= 0, context,
                    ": key 'min_token_len' must be >= 0, got ", o.min_token_len);
    } else {
      throw Error(str(context, ": unknown key '", key, "' (known keys: ", known_keys(), ")"));
    }
  }
  return o;
}

void to_json(nlohmann::json& j, const TextOptions& o) {
  j = nlohmann::json::object();
  j["lowercase"] = o.lowercase;
  j["remove_punctuation"] = o.remove_punctuation;
  j["alpha_only"] = o.alpha_only;
  j["lemmatize"] = o.lemmatize;
  j["lemmatize_pos"] = std::string(pos_letter(o.lemmatize_pos));
  j["stem"] = o.stem;
  j["remove_stopwords"] = o.remove_stopwords;
  j["min_token_len"] = o.min_token_len;
}

void from_json(const nlohmann::json& j, TextOptions& options) {
  options = text_options_from_json(j, "text options");
}

}  // namespace caption::text
