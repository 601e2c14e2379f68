// Porter stemmer: values from NLTK 3.8's PorterStemmer() (NLTK_EXTENSIONS), covering
// each step, NLTK's extensions and irregular forms, case and non-ASCII input. The
// exhaustive comparison with NLTK itself is in nltk_text_test.cpp.
#include <string>

#include <gtest/gtest.h>

#include "data/text/porter.h"

namespace caption::text {
namespace {

TEST(Porter, ValuesFromNltk) {
  const std::pair<const char*, const char*> cases[] = {
      // step 1a
      {"caresses", "caress"}, {"ponies", "poni"}, {"ties", "tie"}, {"cats", "cat"},
      // step 1b
      {"feed", "feed"}, {"agreed", "agre"}, {"plastered", "plaster"}, {"bled", "bled"},
      {"motoring", "motor"}, {"sing", "sing"}, {"conflated", "conflat"},
      {"troubled", "troubl"}, {"sized", "size"}, {"hopping", "hop"}, {"tanned", "tan"},
      {"falling", "fall"}, {"hissing", "hiss"}, {"fizzed", "fizz"}, {"failing", "fail"},
      {"filing", "file"},
      // step 1c and NLTK's y rule
      {"happy", "happi"}, {"yyyy", "yyyi"},
      // steps 2-5
      {"relational", "relat"}, {"conditional", "condit"}, {"rational", "ration"},
      {"generalization", "gener"}, {"hopefulness", "hope"}, {"electrical", "electr"},
      {"goodness", "good"}, {"adjustment", "adjust"}, {"adoption", "adopt"},
      {"controlling", "control"}, {"rolling", "roll"}, {"generously", "gener"},
      {"archaeology", "archaeolog"}, {"geology", "geolog"},
      // NLTK's extensions and irregular forms
      {"flies", "fli"}, {"dies", "die"}, {"spied", "spi"}, {"died", "die"},
      {"sky", "sky"}, {"skies", "sky"}, {"dying", "die"}, {"news", "news"},
      // short words, case
      {"running", "run"}, {"dogs", "dog"}, {"was", "wa"}, {"is", "is"}, {"a", "a"},
      {"it", "it"}, {"y", "y"}, {"geese", "gees"}, {"Running", "run"},
      // the irregular table is looked up before lowercasing, as in NLTK
      {"SKIES", "ski"},
      // non-ASCII: lengths in code points
      {"café", "café"}, {"naïvely", "naïv"}, {"", ""},
  };
  for (const auto& [word, stem] : cases) EXPECT_EQ(porter_stem(word), stem) << word;
}

TEST(Porter, OddInputDoesNotCrash) {
  EXPECT_EQ(porter_stem(std::string(100000, 'y')).size(), 100000u);
  std::string bad = "ab\xff\xfe" "cs";  // invalid UTF-8 passes through byte for byte
  EXPECT_EQ(porter_stem(bad), "ab\xff\xfe" "c");
}

}  // namespace
}  // namespace caption::text
