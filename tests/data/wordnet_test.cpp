// WordNet lemmatiser: the required values (checked by hand against NLTK 3.8), morphy's
// candidate order, and the rules of morphy on a tiny database written by the test (so
// that they are checked even where /usr/share/wordnet is absent), plus the errors for
// missing files and malformed lines.
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "data/text/wordnet.h"
#include "engine/error.h"
#include "tests/harness/scratch.h"

namespace caption::text {
namespace {

namespace fs = std::filesystem;
using Words = std::vector<std::string>;

const WordNetLemmatizer* system_wordnet() {
  static const WordNetLemmatizer* wn = [] () -> const WordNetLemmatizer* {
    if (!fs::exists(default_wordnet_dir() / "index.noun")) return nullptr;
    return new WordNetLemmatizer();
  }();
  return wn;
}

#define REQUIRE_WORDNET()                                                              \
  do {                                                                                 \
    if (system_wordnet() == nullptr)                                                   \
      GTEST_SKIP() << "WordNet database not found at " << default_wordnet_dir()        \
                   << " (Debian package wordnet-base)";                                \
  } while (0)

TEST(WordNet, RequiredValues) {
  REQUIRE_WORDNET();
  const auto& wn = *system_wordnet();
  EXPECT_EQ(wn.lemmatize("dogs"), "dog");
  EXPECT_EQ(wn.lemmatize("children"), "child");
  EXPECT_EQ(wn.lemmatize("was"), "wa");  // noun by default, as NLTK
  EXPECT_EQ(wn.lemmatize("has"), "ha");
  EXPECT_EQ(wn.lemmatize("running", PartOfSpeech::Verb), "run");
  EXPECT_EQ(wn.lemmatize("running", PartOfSpeech::Noun), "running");
  EXPECT_EQ(wn.lemmatize("better", PartOfSpeech::Adjective), "good");  // adj.exc
}

TEST(WordNet, MoreValuesFromNltk) {
  REQUIRE_WORDNET();
  const auto& wn = *system_wordnet();
  struct Case {
    const char* word;
    PartOfSpeech pos;
    const char* lemma;
  };
  const Case cases[] = {
      {"were", PartOfSpeech::Noun, "were"},     {"were", PartOfSpeech::Verb, "be"},
      {"geese", PartOfSpeech::Noun, "goose"},   {"leaves", PartOfSpeech::Noun, "leaf"},
      {"leaves", PartOfSpeech::Verb, "leave"},  {"women", PartOfSpeech::Noun, "woman"},
      {"Dogs", PartOfSpeech::Noun, "Dogs"},     {"dogsss", PartOfSpeech::Noun, "dog"},
      {"abaci", PartOfSpeech::Noun, "abacus"},  {"hardrock", PartOfSpeech::Noun, "hardrock"},
      {"churches", PartOfSpeech::Noun, "church"}, {"men", PartOfSpeech::Noun, "men"},
      {"axes", PartOfSpeech::Noun, "ax"},       {"saw", PartOfSpeech::Verb, "saw"},
      {"best", PartOfSpeech::Adjective, "best"}, {"better", PartOfSpeech::Adverb, "well"},
      {"bigger", PartOfSpeech::Adjective, "big"}, {"whiter", PartOfSpeech::Adjective, "white"},
      {"flies", PartOfSpeech::Noun, "fly"},     {"ridden", PartOfSpeech::Verb, "ride"},
      {"has", PartOfSpeech::Verb, "have"},      {"happily", PartOfSpeech::Adverb, "happily"},
  };
  for (const auto& c : cases)
    EXPECT_EQ(wn.lemmatize(c.word, c.pos), c.lemma) << c.word << " as " << pos_letter(c.pos);
}

TEST(WordNet, MorphyCandidatesInNltkOrder) {
  REQUIRE_WORDNET();
  const auto& wn = *system_wordnet();
  EXPECT_EQ(wn.morphy("better", PartOfSpeech::Adjective), (Words{"better", "good", "well"}));
  EXPECT_EQ(wn.morphy("leaves", PartOfSpeech::Noun), (Words{"leaf", "leave"}));
  EXPECT_EQ(wn.morphy("men", PartOfSpeech::Noun), (Words{"men", "man"}));
  EXPECT_EQ(wn.morphy("were", PartOfSpeech::Noun), Words{});
  EXPECT_TRUE(wn.has_lemma("dog", PartOfSpeech::Noun));
  EXPECT_FALSE(wn.has_lemma("dogs", PartOfSpeech::Noun));
}

// ---- a tiny database ----------------------------------------------------------------

struct TinyWordNet {
  fs::path dir;
  explicit TinyWordNet(const std::string& name) {
    dir = caption::testing::scratch_dir("wordnet") / name;
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  void write(const std::string& file, const std::string& text) const {
    std::ofstream(dir / file) << text;
  }
  void write_default() const {
    write("index.noun",
          "  1 license header line\n"
          "box n 1 0 1 0 00000001\n"
          "axis n 1 0 1 0 00000002\n"
          "ax n 1 0 1 0 00000003\n"
          "glass n 1 0 1 0 00000004\n"
          "glas n 1 0 1 0 00000005\n");
    write("index.verb", "run v 1 0 1 0 00000006\n");
    write("index.adj", "good a 1 0 1 0 00000007\n");
    write("index.adv", "well r 1 0 1 0 00000008\n");
    // "oddities" names bases that are not lemmas: the exception decides, no rules run.
    write("noun.exc", "axes ax axis\noddities\nboxen box\nglasses nothing\n");
    write("verb.exc", "ran run\n");
    write("adj.exc", "better good\n");
    write("adv.exc", "better well\n");
  }
};

TEST(WordNetTiny, RulesAndExceptions) {
  TinyWordNet t("rules");
  t.write_default();
  WordNetLemmatizer wn(t.dir);
  EXPECT_EQ(wn.morphy("axes", PartOfSpeech::Noun), (Words{"ax", "axis"}));
  EXPECT_EQ(wn.lemmatize("axes"), "ax");
  EXPECT_EQ(wn.lemmatize("boxen"), "box");
  EXPECT_EQ(wn.lemmatize("boxes"), "box");  // "xes" -> "x"
  // The exception list names "glasses" but none of its bases is a lemma: the answer is
  // empty and the word stays, although the rules would have found "glass".
  EXPECT_EQ(wn.morphy("glasses", PartOfSpeech::Noun), Words{});
  EXPECT_EQ(wn.lemmatize("glasses"), "glasses");
  // The exception list applies to the word only, not to the forms the rules make:
  // round 1 gives "glassese" and "glasses" (no lemma), round 2 "glasse" and "glass".
  EXPECT_EQ(wn.morphy("glasseses", PartOfSpeech::Noun), Words{"glass"});
  EXPECT_EQ(wn.lemmatize("ran", PartOfSpeech::Verb), "run");
  EXPECT_EQ(wn.lemmatize("running", PartOfSpeech::Verb), "running");  // no "runn" rule
  EXPECT_EQ(wn.lemmatize("runs", PartOfSpeech::Verb), "run");
  EXPECT_EQ(wn.lemmatize("better", PartOfSpeech::Adjective), "good");
  EXPECT_EQ(wn.lemmatize("better", PartOfSpeech::Adverb), "well");
  EXPECT_EQ(wn.lemmatize("gooder", PartOfSpeech::Adjective), "good");
  EXPECT_EQ(wn.lemmatize("oddities"), "oddities");
  EXPECT_EQ(wn.lemmatize(""), "");
}

TEST(WordNetTiny, MissingFileNamesThePath) {
  TinyWordNet t("missing");
  t.write_default();
  fs::remove(t.dir / "verb.exc");
  try {
    WordNetLemmatizer wn(t.dir);
    FAIL() << "expected caption::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find((t.dir / "verb.exc").string()), std::string::npos)
        << e.what();
  }
}

TEST(WordNetTiny, MalformedIndexLineNamesFileAndLine) {
  TinyWordNet t("malformed");
  t.write_default();
  t.write("index.adv", "well r 1 0 1 0 00000008\nlonely\n");
  try {
    WordNetLemmatizer wn(t.dir);
    FAIL() << "expected caption::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find((t.dir / "index.adv").string() + ":2"),
              std::string::npos)
        << e.what();
  }
  t.write("index.adv", "well q 1 0 1 0 00000008\n");
  EXPECT_THROW(WordNetLemmatizer{t.dir}, Error);
}

}  // namespace
}  // namespace caption::text
