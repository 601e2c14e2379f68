// Caption normalisation: each option on its own, the order of the steps, the JSON form
// of the options, the stopword list, and a 40k-caption corpus. Lemmatising needs
// the WordNet database (/usr/share/wordnet); those tests skip, saying so, without it.
#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "data/text/normalize.h"
#include "data/text/options.h"
#include "data/text/stopwords.h"
#include "engine/error.h"

namespace caption::text {
namespace {

using Tokens = std::vector<std::string>;

bool have_wordnet() {
  return std::filesystem::exists(default_wordnet_dir() / "index.noun");
}

#define REQUIRE_WORDNET()                                                              \
  do {                                                                                 \
    if (!have_wordnet())                                                               \
      GTEST_SKIP() << "WordNet database not found at " << default_wordnet_dir()        \
                   << " (Debian package wordnet-base)";                                \
  } while (0)

Tokens norm(const TextOptions& o, std::string_view caption) {
  return Normalizer(o).normalize(caption);
}

TEST(Normalize, DefaultsMatchKarpathyTokens) {
  TextOptions o;
  EXPECT_EQ(norm(o, "A man riding a wave on top of a surfboard."),
            (Tokens{"a", "man", "riding", "a", "wave", "on", "top", "of", "a", "surfboard"}));
  EXPECT_EQ(norm(o, "  Two dogs\tplay\n in the   snow  "),
            (Tokens{"two", "dogs", "play", "in", "the", "snow"}));
  EXPECT_EQ(norm(o, ""), Tokens{});
  EXPECT_EQ(norm(o, " ... !!! "), Tokens{});
}

TEST(Normalize, PunctuationIsDeletedNotSpaced) {
  TextOptions o;
  EXPECT_EQ(norm(o, "A man's t-shirt, don't."), (Tokens{"a", "mans", "tshirt", "dont"}));
  EXPECT_EQ(norm(o, "a - b"), (Tokens{"a", "b"}));
  // Every character of Python's string.punctuation goes.
  EXPECT_EQ(norm(o, "x!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~y"), (Tokens{"xy"}));
  o.remove_punctuation = false;
  o.alpha_only = false;
  EXPECT_EQ(norm(o, "A man's t-shirt."), (Tokens{"a", "man's", "t-shirt."}));
}

TEST(Normalize, AlphaOnly) {
  TextOptions o;
  EXPECT_EQ(norm(o, "2 dogs and 3d glasses on 1st street"),
            (Tokens{"dogs", "and", "glasses", "on", "street"}));
  o.alpha_only = false;
  EXPECT_EQ(norm(o, "2 dogs and 3d glasses"), (Tokens{"2", "dogs", "and", "3d", "glasses"}));
}

TEST(Normalize, Lowercase) {
  TextOptions o;
  o.lowercase = false;
  EXPECT_EQ(norm(o, "A Dog IN Paris"), (Tokens{"A", "Dog", "IN", "Paris"}));
  o.lowercase = true;
  EXPECT_EQ(norm(o, "A Dog IN Paris"), (Tokens{"a", "dog", "in", "paris"}));
}

TEST(Normalize, NonAsciiIsKeptOnlyWithoutAlphaOnly) {
  TextOptions o;
  EXPECT_EQ(norm(o, "a CAFÉ with a view"), (Tokens{"a", "with", "a", "view"}));
  o.alpha_only = false;
  // ASCII letters are lowercased, others keep their case.
  EXPECT_EQ(norm(o, "a CAFÉ"), (Tokens{"a", "cafÉ"}));
}

TEST(Normalize, Stopwords) {
  TextOptions o;
  o.remove_stopwords = true;
  EXPECT_EQ(norm(o, "A man is riding on the board with his dog"),
            (Tokens{"man", "riding", "board", "dog"}));
  // Punctuation goes first: "don't" becomes "dont", which is not on the list, while
  // the split forms "don" and "t" are.
  EXPECT_EQ(norm(o, "don't don t"), (Tokens{"dont"}));
  o.remove_punctuation = false;
  o.alpha_only = false;
  EXPECT_EQ(norm(o, "don't stop"), (Tokens{"stop"}));
}

TEST(Normalize, MinTokenLength) {
  TextOptions o;
  o.min_token_len = 3;
  EXPECT_EQ(norm(o, "a dog on it ate"), (Tokens{"dog", "ate"}));
  o.min_token_len = 0;
  EXPECT_EQ(norm(o, "a b"), (Tokens{"a", "b"}));
  // Code points, not bytes: "né" is two characters.
  o.alpha_only = false;
  o.min_token_len = 3;
  EXPECT_EQ(norm(o, "né née"), (Tokens{"née"}));
}

TEST(Normalize, Stem) {
  TextOptions o;
  o.stem = true;
  EXPECT_EQ(norm(o, "Two dogs running happily across the skies"),
            (Tokens{"two", "dog", "run", "happili", "across", "the", "sky"}));
}

TEST(Normalize, LemmatizeNounByDefault) {
  REQUIRE_WORDNET();
  TextOptions o;
  o.lemmatize = true;
  EXPECT_EQ(norm(o, "Two dogs were running with children"),
            (Tokens{"two", "dog", "were", "running", "with", "child"}));
  o.lemmatize_pos = PartOfSpeech::Verb;
  EXPECT_EQ(norm(o, "Two dogs were running"), (Tokens{"two", "dog", "be", "run"}));
}

TEST(Normalize, OrderStopwordsBeforeLemmatising) {
  REQUIRE_WORDNET();
  TextOptions o;
  o.lemmatize = true;
  o.remove_stopwords = true;
  // "has" is a stopword and goes before the lemmatiser could turn it into "ha".
  EXPECT_EQ(norm(o, "he has dogs"), (Tokens{"dog"}));
  o.remove_stopwords = false;
  EXPECT_EQ(norm(o, "he has dogs"), (Tokens{"he", "ha", "dog"}));
}

TEST(Normalize, OrderLemmatisingBeforeStemming) {
  REQUIRE_WORDNET();
  TextOptions o;
  o.stem = true;
  EXPECT_EQ(norm(o, "geese"), (Tokens{"gees"}));
  o.lemmatize = true;
  EXPECT_EQ(norm(o, "geese"), (Tokens{"goos"}));  // goose, then stemmed
}

TEST(Normalize, OrderLengthFilterLast) {
  REQUIRE_WORDNET();
  TextOptions o;
  o.min_token_len = 3;
  EXPECT_EQ(norm(o, "was"), (Tokens{"was"}));
  o.lemmatize = true;
  EXPECT_EQ(norm(o, "was"), Tokens{});  // "wa" after lemmatising
  o.lemmatize = false;
  o.stem = true;
  o.min_token_len = 4;
  EXPECT_EQ(norm(o, "ties"), Tokens{});  // "tie" after stemming
}

TEST(Normalize, OrderAlphaFilterAfterStemming) {
  TextOptions o;
  o.stem = true;
  o.remove_punctuation = false;
  // The alphabetic filter sees the stem; a token with punctuation stays non-alphabetic.
  EXPECT_EQ(norm(o, "dogs dog's"), (Tokens{"dog"}));
}

TEST(Normalize, MissingWordNetNamesThePath) {
  TextOptions o;
  o.lemmatize = true;
  NormalizerResources r;
  r.wordnet_dir = "/nonexistent/wordnet-dir";
  try {
    Normalizer n(o, r);
    FAIL() << "expected caption::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/wordnet-dir/index.noun"),
              std::string::npos)
        << e.what();
  }
  // Without lemmatising the directory is never read.
  o.lemmatize = false;
  EXPECT_NO_THROW(Normalizer(o, r));
}

// 40k captions (a Flickr8k-sized corpus) with the default options and with every
// option on. The time this takes is measured by bench/data_bench.cpp, not here.
TEST(Normalize, FortyThousandCaptions) {
  std::vector<std::string> captions;
  const char* base[] = {"A man riding a wave on top of a surfboard.",
                        "Two giraffes standing next to each other in a field!",
                        "A plate of food with broccoli, carrots and rice",
                        "People walking down a busy city street at night."};
  for (int i = 0; i < 40000; ++i) captions.push_back(base[i % 4]);
  Normalizer n{TextOptions{}};
  size_t total = 0;
  for (const auto& c : captions) total += n.normalize(c).size();
  EXPECT_EQ(total, 10000u * (10 + 10 + 9 + 9));

  TextOptions all;
  all.stem = true;
  all.remove_stopwords = true;
  all.lemmatize = have_wordnet();
  Normalizer heavy(all);
  size_t heavy_total = 0;
  for (const auto& c : captions) heavy_total += heavy.normalize(c).size();
  // Stopword removal only ever removes tokens; every caption keeps some content words.
  EXPECT_LT(heavy_total, total);
  EXPECT_GT(heavy_total, 0u);
}

// ---- options JSON -------------------------------------------------------------------

TEST(TextOptionsJson, ExactKeysAndRoundTrip) {
  TextOptions o;
  o.lemmatize = true;
  o.lemmatize_pos = PartOfSpeech::Verb;
  o.min_token_len = 2;
  nlohmann::json j = o;
  EXPECT_EQ(j, nlohmann::json::parse(R"({"lowercase": true, "remove_punctuation": true,
      "alpha_only": true, "lemmatize": true, "lemmatize_pos": "v", "stem": false,
      "remove_stopwords": false, "min_token_len": 2})"));
  EXPECT_EQ(j.get<TextOptions>(), o);
  for (auto pos : {PartOfSpeech::Noun, PartOfSpeech::Verb, PartOfSpeech::Adjective,
                   PartOfSpeech::Adverb}) {
    o.lemmatize_pos = pos;
    EXPECT_EQ(nlohmann::json(o).get<TextOptions>(), o);
  }
}

TEST(TextOptionsJson, MissingKeysKeepDefaults) {
  auto o = text_options_from_json(nlohmann::json::parse(R"({"stem": true})"), "cfg");
  TextOptions expected;
  expected.stem = true;
  EXPECT_EQ(o, expected);
  EXPECT_EQ(text_options_from_json(nlohmann::json::object(), "cfg"), TextOptions{});
  // "s" (adjective satellite) reads as the adjective, as in NLTK 3.8.
  o = text_options_from_json(nlohmann::json::parse(R"({"lemmatize_pos": "s"})"), "cfg");
  EXPECT_EQ(o.lemmatize_pos, PartOfSpeech::Adjective);
}

void expect_error(const char* json_text, const std::string& fragment) {
  try {
    text_options_from_json(nlohmann::json::parse(json_text), "model.ckpt: config.text");
    ADD_FAILURE() << "no error for " << json_text;
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("model.ckpt: config.text"), std::string::npos) << m;
    EXPECT_NE(m.find(fragment), std::string::npos) << m;
  }
}

TEST(TextOptionsJson, RefusesBadInput) {
  expect_error(R"({"stemm": true})", "unknown key 'stemm'");
  expect_error(R"({"stem": 1})", "'stem' must be a boolean");
  expect_error(R"({"lowercase": "yes"})", "'lowercase' must be a boolean");
  expect_error(R"({"lemmatize_pos": "x"})", "must be one of n, v, a, r");
  expect_error(R"({"lemmatize_pos": 1})", "'lemmatize_pos' must be a string");
  expect_error(R"({"min_token_len": 1.5})", "'min_token_len' must be an integer");
  expect_error(R"({"min_token_len": -1})", "must be >= 0");
  expect_error(R"({"min_token_len": "2"})", "'min_token_len' must be an integer");
  expect_error(R"([1, 2])", "must be a JSON object");
  // The nlohmann hook raises the same error type.
  EXPECT_THROW(nlohmann::json::parse(R"({"x": 1})").get<TextOptions>(), Error);
}

// ---- stopwords ----------------------------------------------------------------------

TEST(Stopwords, NltkEnglishList) {
  const auto& words = english_stopwords();
  EXPECT_EQ(words.size(), 179u);
  EXPECT_EQ(words.front(), "i");
  EXPECT_EQ(words.back(), "wouldn't");
  for (auto w : words) {
    EXPECT_FALSE(w.empty());
    EXPECT_TRUE(is_english_stopword(w)) << w;
  }
  EXPECT_TRUE(is_english_stopword("that'll"));
  EXPECT_TRUE(is_english_stopword("don"));
  EXPECT_FALSE(is_english_stopword("dont"));
  EXPECT_FALSE(is_english_stopword("The"));  // case-sensitive, as NLTK's `in`
  EXPECT_FALSE(is_english_stopword("dog"));
}

}  // namespace
}  // namespace caption::text
