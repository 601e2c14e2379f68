// Tests of data/metrics: BLEU against NLTK 3.8 (published doc/unit-test vectors and a
// differential test that runs NLTK itself on a few hundred random corpora), CIDEr-D and
// ROUGE-L against coco-caption values, input validation, and a 1,000-image corpus.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <iostream>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "data/metrics/bleu.h"
#include "data/metrics/cider.h"
#include "data/metrics/metrics.h"
#include "data/metrics/rouge.h"
#include "engine/error.h"

namespace caption::metrics {
namespace {

// Splits on single spaces exactly; "" gives no token.
Tokens split(std::string_view text) {
  Tokens tokens;
  if (text.empty()) return tokens;
  std::size_t start = 0;
  while (true) {
    const std::size_t end = text.find(' ', start);
    tokens.emplace_back(text.substr(start, end - start));
    if (end == std::string_view::npos) break;
    start = end + 1;
  }
  return tokens;
}

std::vector<Tokens> split_all(const std::vector<std::string_view>& texts) {
  std::vector<Tokens> out;
  for (std::string_view text : texts) out.push_back(split(text));
  return out;
}

// ---- the NLTK documentation corpus -----------------------------------------------
const Tokens kHyp1 = split(
    "It is a guide to action which ensures that the military always obeys the commands of "
    "the party");
const Tokens kRef1a = split(
    "It is a guide to action that ensures that the military will forever heed Party commands");
const Tokens kRef1b = split(
    "It is the guiding principle which guarantees the military forces always being under the "
    "command of the Party");
const Tokens kRef1c = split(
    "It is the practical guide for the army always to heed the directions of the party");
const Tokens kHyp2 = split("he read the book because he was interested in world history");
const Tokens kRef2a = split("he was interested in world history because he read the book");

std::vector<Sample> nltk_corpus() {
  return {Sample{kHyp1, {kRef1a, kRef1b, kRef1c}}, Sample{kHyp2, {kRef2a}}};
}

TEST(Bleu, CorpusBleuMatchesNltkDocExample) {
  const auto corpus = nltk_corpus();
  EXPECT_NEAR(corpus_bleu(corpus), 0.5920778868801042, 1e-12);
  EXPECT_NEAR(corpus_bleu(corpus, {0.5, 0.5}), 0.8242, 1e-4);
  EXPECT_NEAR(corpus_bleu(corpus, {0.333, 0.333, 0.334}), 0.7067, 1e-4);
  EXPECT_NEAR(corpus_bleu(corpus, {0.2, 0.2, 0.2, 0.2, 0.2}), 0.4719, 1e-4);
  EXPECT_NEAR(corpus_bleu(corpus, {0.1, 0.3, 0.5, 0.1}), 0.5818, 1e-4);
}

TEST(Bleu, ManyWeightSetsEqualSeparateCalls) {
  const auto corpus = nltk_corpus();
  const std::vector<BleuWeights> sets = {
      {0.5, 0.5}, {0.333, 0.333, 0.334}, {0.25, 0.25, 0.25, 0.25}, {0.2, 0.2, 0.2, 0.2, 0.2}};
  const std::vector<double> scores = corpus_bleu_for_weights(corpus, sets);
  ASSERT_EQ(scores.size(), sets.size());
  for (std::size_t i = 0; i < sets.size(); ++i)
    EXPECT_EQ(scores[i], corpus_bleu(corpus, sets[i])) << "weight set " << i;
  const auto bleu = bleu_1_to_4(corpus);
  for (std::size_t n = 1; n <= 4; ++n)
    EXPECT_EQ(bleu[n - 1], corpus_bleu(corpus, uniform_bleu_weights(n))) << "BLEU-" << n;
  EXPECT_EQ(bleu[3], corpus_bleu(corpus));
}

TEST(Bleu, SentenceBleuMatchesNltk) {
  const std::vector<Tokens> refs = {kRef1a, kRef1b, kRef1c};
  EXPECT_NEAR(sentence_bleu(refs, kHyp1), 0.5045, 1e-4);
  EXPECT_NEAR(sentence_bleu(refs, kHyp1, uniform_bleu_weights(2)), 0.7453, 1e-4);
  EXPECT_NEAR(sentence_bleu(refs, kHyp1, uniform_bleu_weights(3)), 0.6240, 1e-4);
  // NLTK doc: corpus BLEU differs from the mean of sentence BLEU (0.6223...).
  const double mean = (sentence_bleu(refs, kHyp1) + sentence_bleu({kRef2a}, kHyp2)) / 2;
  EXPECT_NEAR(mean, 0.6223, 1e-4);
}

TEST(Bleu, ModifiedPrecisionMatchesNltk) {
  const std::vector<Tokens> cats = split_all({"the cat is on the mat", "there is a cat on the mat"});
  const Tokens the7 = split("the the the the the the the");
  const NgramPrecision p1 = modified_precision(cats, the7, 1);
  EXPECT_EQ(p1.numerator, 2);
  EXPECT_EQ(p1.denominator, 7);
  EXPECT_NEAR(p1.value(), 0.2857, 1e-4);
  EXPECT_EQ(modified_precision(cats, the7, 2).value(), 0.0);

  const std::vector<Tokens> refs = {kRef1a, kRef1b, kRef1c};
  const Tokens of_the = split("of the");
  EXPECT_EQ(modified_precision(refs, of_the, 1).value(), 1.0);
  EXPECT_EQ(modified_precision(refs, of_the, 2).value(), 1.0);
  const Tokens hyp2 = split(
      "It is to insure the troops forever hearing the activity guidebook that party direct");
  EXPECT_NEAR(modified_precision(refs, kHyp1, 1).value(), 0.9444, 1e-4);
  EXPECT_NEAR(modified_precision(refs, hyp2, 1).value(), 0.5714, 1e-4);
  EXPECT_EQ(modified_precision(refs, kHyp1, 2).value(), 0.5882352941176471);
  EXPECT_NEAR(modified_precision(refs, hyp2, 2).value(), 0.07692, 1e-5);
  // Denominator is max(1, count): an empty hypothesis gives 0/1.
  const NgramPrecision empty = modified_precision(refs, Tokens{}, 3);
  EXPECT_EQ(empty.numerator, 0);
  EXPECT_EQ(empty.denominator, 1);
}

std::vector<Tokens> as_of_lengths(std::initializer_list<std::size_t> lengths) {
  std::vector<Tokens> out;
  for (std::size_t length : lengths) out.emplace_back(length, "a");
  return out;
}

double bp_for(std::initializer_list<std::size_t> ref_lengths, std::size_t hyp_length) {
  return brevity_penalty(closest_ref_length(as_of_lengths(ref_lengths), hyp_length), hyp_length);
}

TEST(Bleu, BrevityPenaltyMatchesNltk) {
  EXPECT_EQ(bp_for({12, 15, 17}, 12), 1.0);
  EXPECT_EQ(bp_for({28, 28}, 12), 0.2635971381157267);
  EXPECT_NEAR(bp_for({13, 2}, 12), 0.9200, 1e-4);
  EXPECT_EQ(bp_for({13, 11}, 12), 1.0);
  EXPECT_EQ(bp_for({11, 13}, 12), 1.0);  // ties go to the shorter whatever the order
  EXPECT_EQ(closest_ref_length(as_of_lengths({13, 11}), 12), 11u);
  EXPECT_NEAR(bp_for({11, 8}, 7), 0.8668, 1e-4);
  EXPECT_EQ(bp_for({11, 8, 6, 7}, 7), 1.0);
  EXPECT_EQ(brevity_penalty(5, 0), 0.0);  // empty hypothesis
}

TEST(Bleu, ZeroMatchesFollowNltkMethod0) {
  // No unigram match at all: exactly 0 (NLTK returns before any logarithm).
  const std::vector<Tokens> refs = {split("The candidate has no alignment to any of the references")};
  EXPECT_EQ(sentence_bleu(refs, split("John loves Mary")), 0.0);
  EXPECT_EQ(sentence_bleu(refs, Tokens{}), 0.0);
  EXPECT_EQ(sentence_bleu({Tokens{}}, split("John loves Mary")), 0.0);
  EXPECT_EQ(sentence_bleu({Tokens{}}, Tokens{}), 0.0);
  // Two zero orders at weight 1/4: exp(0.5 log DBL_MIN), tiny but not zero (NLTK value).
  EXPECT_EQ(sentence_bleu({split("a b")}, split("a b")), 1.491668146240062e-154);
  // One zero order: DBL_MIN^(1/4) times the rest (values printed by NLTK 3.8).
  EXPECT_DOUBLE_EQ(sentence_bleu({split("John loves Mary")}, split("John loves Mary who loves Mike")),
                   5.775353993361614e-78);
  EXPECT_DOUBLE_EQ(sentence_bleu({split("John loves Mary ?")}, split("John loves Mary")),
                   8.751273976943354e-78);
  // Full match is exactly 1.
  EXPECT_EQ(sentence_bleu({kRef1a}, kRef1a), 1.0);
}

TEST(Bleu, RejectsMalformedInput) {
  EXPECT_THROW(corpus_bleu({}), Error);
  EXPECT_THROW(corpus_bleu({Sample{split("a b"), {}}}), Error);
  EXPECT_THROW(corpus_bleu(nltk_corpus(), BleuWeights{}), Error);
  EXPECT_THROW(corpus_bleu(nltk_corpus(), BleuWeights{0.5, std::nan("")}), Error);
  EXPECT_THROW(sentence_bleu({}, split("a")), Error);
  EXPECT_THROW(modified_precision({split("a")}, split("a"), 0), Error);
  EXPECT_THROW(uniform_bleu_weights(0), Error);
  const BleuStatistics two = bleu_statistics(nltk_corpus(), 2);
  EXPECT_THROW(bleu_from_statistics(two, uniform_bleu_weights(3)), Error);
}

// ---- differential test against NLTK -------------------------------------------------

// Random corpora over small vocabularies so that n-grams of every order match often;
// covers empty and one-word hypotheses, empty references, and near-copies of a
// reference (high-order matches). std::mt19937 is fully specified by the standard, and
// only raw draws are used (distributions are implementation-defined), so the corpora
// are the same on every platform.
class CorpusGenerator {
 public:
  explicit CorpusGenerator(std::uint32_t seed) : rng_(seed) {}

  std::vector<Sample> corpus() {
    const std::size_t vocabulary = 2 + below(7);
    std::vector<Sample> samples(1 + below(6));
    for (Sample& sample : samples) {
      const std::size_t reference_count = 1 + below(4);
      for (std::size_t r = 0; r < reference_count; ++r)
        sample.references.push_back(sentence(vocabulary, below(10) == 0 ? 0 : 1 + below(14)));
      const std::size_t kind = below(10);
      if (kind == 0) {
        // empty hypothesis
      } else if (kind == 1) {
        sample.hypothesis = sentence(vocabulary, 1);
      } else if (kind < 6) {
        sample.hypothesis = sentence(vocabulary, 1 + below(12));
      } else {
        sample.hypothesis = mutate(sample.references[below(reference_count)], vocabulary);
      }
    }
    return samples;
  }

 private:
  std::size_t below(std::size_t n) { return static_cast<std::size_t>(rng_() % n); }

  std::string word(std::size_t vocabulary) {
    // Upper and lower case are different tokens (NLTK compares exact strings).
    static const char* const kWords[] = {"the", "a", "dog", "The", "runs", "on", "grass", "cat"};
    return kWords[below(vocabulary)];
  }

  Tokens sentence(std::size_t vocabulary, std::size_t length) {
    Tokens tokens;
    for (std::size_t i = 0; i < length; ++i) tokens.push_back(word(vocabulary));
    return tokens;
  }

  Tokens mutate(const Tokens& reference, std::size_t vocabulary) {
    Tokens tokens;
    for (const std::string& token : reference) {
      const std::size_t action = below(8);
      if (action == 0) continue;                                   // drop
      tokens.push_back(action == 1 ? word(vocabulary) : token);    // replace or keep
      if (action == 2) tokens.push_back(word(vocabulary));         // insert
    }
    return tokens;
  }

  std::mt19937 rng_;
};

std::string run_command(const std::string& command, int& status) {
  std::string output;
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) {
    status = -1;
    return output;
  }
  char buffer[4096];
  std::size_t read = 0;
  while ((read = std::fread(buffer, 1, sizeof buffer, pipe)) > 0) output.append(buffer, read);
  status = pclose(pipe);
  return output;
}

TEST(Bleu, MatchesNltkOnRandomCorpora) {
  const std::string python = CAPTION_REFERENCE_PYTHON;
  if (!std::filesystem::exists(python)) GTEST_SKIP() << python << " is missing: cannot run NLTK";
  if (std::system((python + " -c 'import nltk.translate.bleu_score' >/dev/null 2>&1").c_str()) != 0)
    GTEST_SKIP() << "nltk is not importable by " << python;
  const std::filesystem::path script =
      std::filesystem::path(CAPTION_SOURCE_DIR) / "tests/data/nltk_bleu_reference.py";
  ASSERT_TRUE(std::filesystem::exists(script)) << script;

  const std::vector<BleuWeights> weight_sets = {
      uniform_bleu_weights(1), uniform_bleu_weights(2), uniform_bleu_weights(3),
      uniform_bleu_weights(4), {0.1, 0.3, 0.5, 0.1},    {0.2, 0.2, 0.2, 0.2, 0.2},
      {0.333, 0.333, 0.334},   {0.5, 0.5, 0.0, 0.0}};
  constexpr std::size_t kCorpora = 400;
  CorpusGenerator generator(20240611);
  std::vector<std::vector<Sample>> corpora;
  for (std::size_t i = 0; i < kCorpora; ++i) corpora.push_back(generator.corpus());

  const std::filesystem::path dir(CAPTION_TEST_TMP);
  std::filesystem::create_directories(dir);
  const std::filesystem::path input = dir / ("nltk_bleu_corpora_" + std::to_string(getpid()) + ".txt");
  {
    std::ofstream out(input);
    out.precision(17);
    for (const BleuWeights& weights : weight_sets) {
      out << "W";
      for (double w : weights) out << ' ' << w;
      out << '\n';
    }
    for (const auto& corpus : corpora) {
      out << "C " << corpus.size() << '\n';
      for (const Sample& sample : corpus) {
        out << "S " << sample.references.size() << "\nH";
        for (const auto& token : sample.hypothesis) out << ' ' << token;
        out << '\n';
        for (const Tokens& reference : sample.references) {
          out << 'R';
          for (const auto& token : reference) out << ' ' << token;
          out << '\n';
        }
      }
    }
    ASSERT_TRUE(out.good()) << "cannot write " << input;
  }

  int status = 0;
  const std::string output =
      run_command(python + " '" + script.string() + "' '" + input.string() + "'", status);
  std::filesystem::remove(input);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 3)
    GTEST_SKIP() << "the NLTK reference script cannot import nltk";
  ASSERT_EQ(status, 0) << "the NLTK reference script failed:\n" << output;

  std::istringstream lines(output);
  std::size_t exact = 0;
  std::size_t compared = 0;
  std::size_t zeros = 0;
  std::size_t tiny = 0;
  for (std::size_t c = 0; c < kCorpora; ++c) {
    std::string line;
    ASSERT_TRUE(std::getline(lines, line)) << "NLTK printed only " << c << " lines";
    std::istringstream fields(line);
    const std::vector<double> ours = corpus_bleu_for_weights(corpora[c], weight_sets);
    for (std::size_t w = 0; w < weight_sets.size(); ++w) {
      std::string field;
      ASSERT_TRUE(fields >> field) << "corpus " << c << ": missing score " << w;
      const double nltk = std::strtod(field.c_str(), nullptr);
      ++compared;
      if (nltk == 0.0) ++zeros;
      if (nltk != 0.0 && nltk < 1e-30) ++tiny;
      if (ours[w] == nltk) ++exact;
      // Contract: 1e-9 relative (in practice the values agree to the bit, since the
      // same libm computes the same operations and the log sum is exactly rounded).
      EXPECT_LE(std::fabs(ours[w] - nltk), 1e-9 * std::fabs(nltk))
          << "corpus " << c << ", weight set " << w << ": ours " << ours[w] << ", NLTK "
          << field;
    }
  }
  std::cout << "compared " << compared << " scores with NLTK: " << exact << " bit-identical, "
            << zeros << " exact zeros, " << tiny << " below 1e-30\n";
  // The corpora must exercise the corner cases, or the comparison proves little.
  EXPECT_GT(zeros, 0u);
  EXPECT_GT(tiny, 0u);
  EXPECT_GT(compared - zeros - tiny, compared / 4);
}

// ---- CIDEr-D and ROUGE-L (coco-caption) ---------------------------------------------

std::vector<Sample> coco_corpus() {
  return {
      Sample{split("a dog is running on the grass"),
             split_all({"a dog runs on the grass", "a brown dog is running through the grass",
                        "the dog plays outside"})},
      Sample{split("a man riding a bike"),
             split_all({"a man rides a bike down the street", "a person riding a bicycle on a road"})},
      Sample{split("a dog in the water"),
             split_all({"two children play in the water", "kids splash in a pool"})},
  };
}

TEST(Cider, MatchesCocoCaption) {
  const CiderResult result = cider_d(coco_corpus());
  ASSERT_EQ(result.per_image.size(), 3u);
  EXPECT_NEAR(result.per_image[0], 2.52050, 1e-4);
  EXPECT_NEAR(result.per_image[1], 1.50822, 1e-4);
  EXPECT_NEAR(result.per_image[2], 1.90461, 1e-4);
  EXPECT_NEAR(result.corpus, 1.97778, 1e-4);
}

TEST(Cider, HypothesisEqualToFirstReference) {
  auto corpus = coco_corpus();
  for (Sample& sample : corpus) sample.hypothesis = sample.references.front();
  const CiderResult result = cider_d(corpus);
  EXPECT_NEAR(result.per_image[0], 4.08703, 1e-4);
  // Image 2's references share only "a", whose idf is log(3/3) = 0: exactly 10 * 1/2.
  EXPECT_NEAR(result.per_image[1], 5.0, 1e-12);
  EXPECT_NEAR(result.per_image[2], 5.27565, 1e-4);
}

TEST(Cider, EdgeCases) {
  // One image: every idf is log(1) - log(1) = 0, so every vector is zero.
  const CiderResult single = cider_d({coco_corpus().front()});
  EXPECT_EQ(single.corpus, 0.0);
  // An empty hypothesis scores 0 and does not disturb the others.
  auto corpus = coco_corpus();
  corpus[1].hypothesis.clear();
  const CiderResult result = cider_d(corpus);
  EXPECT_EQ(result.per_image[1], 0.0);
  EXPECT_NEAR(result.per_image[0], 2.52050, 1e-4);
  EXPECT_THROW(cider_d({}), Error);
  EXPECT_THROW(cider_d({Sample{split("a"), {}}}), Error);
  EXPECT_THROW(cider_d(coco_corpus(), CiderOptions{.max_order = 0}), Error);
  EXPECT_THROW(cider_d(coco_corpus(), CiderOptions{.sigma = 0.0}), Error);
}

TEST(Rouge, LongestCommonSubsequence) {
  EXPECT_EQ(lcs_length(split("a b c d e"), split("a c e")), 3u);
  EXPECT_EQ(lcs_length(split("a c e"), split("a b c d e")), 3u);
  EXPECT_EQ(lcs_length(split("x y"), split("a b")), 0u);
  EXPECT_EQ(lcs_length(Tokens{}, split("a b")), 0u);
  EXPECT_EQ(lcs_length(split("he read the book because he was interested in world history"),
                       split("he was interested in world history because he read the book")),
            6u);
}

TEST(Rouge, MatchesCocoCaption) {
  const RougeResult result = rouge_l(coco_corpus());
  ASSERT_EQ(result.per_image.size(), 3u);
  EXPECT_NEAR(result.per_image[0], 0.84293, 1e-5);
  EXPECT_NEAR(result.per_image[1], 0.59080, 1e-5);
  EXPECT_NEAR(result.per_image[2], 0.53666, 1e-5);
  EXPECT_NEAR(result.corpus, 0.65680, 1e-5);
}

TEST(Rouge, EdgeCases) {
  EXPECT_EQ(rouge_l_sentence({split("a b")}, Tokens{}), 0.0);
  EXPECT_EQ(rouge_l_sentence({Tokens{}}, split("a b")), 0.0);
  EXPECT_EQ(rouge_l_sentence({split("x")}, split("a b")), 0.0);
  EXPECT_DOUBLE_EQ(rouge_l_sentence({split("a b")}, split("a b")), 1.0);
  // Precision and recall are maximised over different references.
  // ref 1 "a b c d": LCS 2 -> P 2/2, R 2/4; ref 2 "a": LCS 1 -> P 1/2, R 1/1.
  const double p = 1.0, r = 1.0, b2 = 1.44;
  EXPECT_DOUBLE_EQ(rouge_l_sentence(split_all({"a b c d", "a"}), split("a b")),
                   (1 + b2) * p * r / (r + b2 * p));
  EXPECT_THROW(rouge_l({}), Error);
  EXPECT_THROW(rouge_l_sentence({}, split("a")), Error);
}

TEST(ScoreAll, CombinesTheMetrics) {
  const auto corpus = coco_corpus();
  const CaptionScores scores = score_all(corpus);
  EXPECT_EQ(scores.bleu, bleu_1_to_4(corpus));
  EXPECT_EQ(scores.cider_d, cider_d(corpus).corpus);
  EXPECT_EQ(scores.rouge_l, rouge_l(corpus).corpus);
  EXPECT_NEAR(scores.cider_d, 1.97778, 1e-4);
  EXPECT_NEAR(scores.rouge_l, 0.65680, 1e-5);
  EXPECT_EQ(scores.cider_d_per_image.size(), 3u);
  EXPECT_EQ(scores.rouge_l_per_image.size(), 3u);
  EXPECT_THROW(score_all({}), Error);
}

// The size of a real evaluation; its speed is measured by bench/data_bench.cpp.
TEST(ScoreAll, ThousandImagesWithFiveReferences) {
  // 1,000 images x 5 references of 8-14 words over a 2,000-word vocabulary.
  std::mt19937 rng(7);
  auto sentence = [&] {
    Tokens tokens(8 + rng() % 7);
    for (auto& token : tokens) {
      // (snprintf rather than "w" + to_string: GCC 12 warns falsely on the latter)
      char word[16];
      std::snprintf(word, sizeof word, "w%u", static_cast<unsigned>(rng() % 2000));
      token = word;
    }
    return tokens;
  };
  std::vector<Sample> corpus(1000);
  for (Sample& sample : corpus) {
    for (int r = 0; r < 5; ++r) sample.references.push_back(sentence());
    sample.hypothesis = sample.references[0];
    sample.hypothesis.resize(sample.hypothesis.size() - 2);
  }
  const CaptionScores scores = score_all(corpus);
  EXPECT_GT(scores.bleu[3], 0.0);
  EXPECT_EQ(scores.cider_d_per_image.size(), 1000u);
  EXPECT_EQ(scores.rouge_l_per_image.size(), 1000u);
}

}  // namespace
}  // namespace caption::metrics
