// GloVe reading and embedding initialisation, on files the test writes: rows found and
// missing, <pad> zero, coverage, the seeded N(0, 1) rows (determinism, independence of
// other rows, statistics, fixed values), malformed lines reported with file and line,
// dimension mismatch, and the load time of a 400k-line 50-d file.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "data/text/glove.h"
#include "engine/error.h"
#include "tests/harness/scratch.h"

namespace caption::text {
namespace {

namespace fs = std::filesystem;

fs::path fixture(const std::string& name, const std::string& text) {
  fs::path p = caption::testing::scratch_dir("glove") / name;
  std::ofstream(p, std::ios::binary) << text;
  return p;
}

// <pad> <sos> <eos> <unk> the(4) dog(5) cat(6) zebra(7)
Vocabulary vocab() {
  return Vocabulary::from_tokens({"<pad>", "<sos>", "<eos>", "<unk>", "the", "dog", "cat", "zebra"},
                                 "test");
}

std::vector<float> row(const GloveEmbedding& e, TokenId id) {
  auto b = e.weights.begin() + static_cast<std::ptrdiff_t>(id * e.dim);
  return std::vector<float>(b, b + e.dim);
}

void expect_error_with(const std::function<void()>& fn, const std::vector<std::string>& parts) {
  try {
    fn();
    ADD_FAILURE() << "expected caption::Error";
  } catch (const Error& e) {
    for (const auto& p : parts)
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what() << "\n  lacks: " << p;
  }
}

const char* kSmall =
    "the 0.1 0.2 0.3 0.4\n"
    "of 1 2 3 4\n"
    "dog -1.5 2.5e-1 +3 4E2\n"
    "cat 0 0 0 1\n";

TEST(Glove, RowsFoundMissingAndPad) {
  auto p = fixture("small.txt", kSmall);
  auto e = load_glove_embedding(p, vocab(), 42);
  EXPECT_EQ(e.rows, 8);
  EXPECT_EQ(e.dim, 4);
  ASSERT_EQ(e.weights.size(), 32u);
  EXPECT_EQ(row(e, 4), (std::vector<float>{0.1f, 0.2f, 0.3f, 0.4f}));
  EXPECT_EQ(row(e, 5), (std::vector<float>{-1.5f, 0.25f, 3.0f, 400.0f}));
  EXPECT_EQ(row(e, 6), (std::vector<float>{0, 0, 0, 1}));
  EXPECT_EQ(row(e, kPadId), (std::vector<float>{0, 0, 0, 0}));
  // zebra and the specials <sos> <eos> <unk> are drawn from the seeded generator.
  for (TokenId id : {kSosId, kEosId, kUnkId, TokenId{7}}) {
    std::vector<float> expected(4);
    fill_normal_row(42, static_cast<uint64_t>(id), expected);
    EXPECT_EQ(row(e, id), expected) << "row " << id;
  }
  EXPECT_EQ(e.words_found, 3);
  EXPECT_EQ(e.words_total, 4);
  EXPECT_EQ(e.file_vectors, 4);
  EXPECT_DOUBLE_EQ(e.coverage(), 0.75);
  EXPECT_EQ(e.missing_examples, std::vector<std::string>{"zebra"});
  std::string report = e.coverage_report(p);
  EXPECT_NE(report.find("3/4 words found (75.0%)"), std::string::npos) << report;
  EXPECT_NE(report.find("zebra"), std::string::npos) << report;
}

TEST(Glove, SeededRowsAreDeterministicAndIndependent) {
  auto p = fixture("small.txt", kSmall);
  auto a = load_glove_embedding(p, vocab(), 42);
  auto b = load_glove_embedding(p, vocab(), 42);
  auto c = load_glove_embedding(p, vocab(), 43);
  EXPECT_EQ(a.weights, b.weights);
  EXPECT_NE(row(a, 7), row(c, 7));
  // A missing word's row depends on the seed and its id only, not on the other rows.
  auto q = fixture("only_the.txt", "the 1 1 1 1\n");
  auto d = load_glove_embedding(q, vocab(), 42);
  EXPECT_EQ(row(d, 7), row(a, 7));
  EXPECT_EQ(d.words_found, 1);
}

TEST(Glove, NormalGeneratorStatisticsAndFixedValues) {
  std::vector<float> v(200001);
  fill_normal_row(7, 3, v);
  double sum = 0, sq = 0;
  for (float x : v) {
    ASSERT_TRUE(std::isfinite(x));
    sum += x;
    sq += static_cast<double>(x) * x;
  }
  double mean = sum / static_cast<double>(v.size());
  double var = sq / static_cast<double>(v.size()) - mean * mean;
  EXPECT_NEAR(mean, 0.0, 0.01);
  EXPECT_NEAR(var, 1.0, 0.02);
  // Fixed values: the generator is ours, so these hold on every platform (to float
  // rounding of libm's log/cos/sin, hence the tolerance).
  std::vector<float> first(4);
  fill_normal_row(0, 1, first);
  const float expected[4] = {1.32567191f, -0.490824878f, 0.426810592f, -2.45125031f};
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(first[static_cast<size_t>(i)], expected[i], 1e-6f);
}

TEST(Glove, DimensionComesFromTheFirstLine) {
  auto p = fixture("dim.txt", "the 1 2 3\ndog 1 2\n");
  expect_error_with([&] { load_glove_embedding(p, vocab(), 1); },
                    {p.string() + ":2", "expected 3 numbers", "found 2", "line 1"});
  p = fixture("dim_more.txt", "the 1 2\nof 1 2\nxyz 1 2 3\n");
  expect_error_with([&] { load_glove_embedding(p, vocab(), 1); },
                    {p.string() + ":3", "expected 2 numbers", "found 3"});
  // Any dimension is accepted, 1 included.
  p = fixture("dim1.txt", "dog 0.5\n");
  auto e = load_glove_embedding(p, vocab(), 1);
  EXPECT_EQ(e.dim, 1);
  EXPECT_EQ(row(e, 5), std::vector<float>{0.5f});
}

TEST(Glove, NonNumbersAreReportedWithTheLine) {
  // In the vector of a vocabulary word (parsed)...
  auto p = fixture("nan1.txt", "the 1 2\ndog 1 x2\n");
  expect_error_with([&] { load_glove_embedding(p, vocab(), 1); },
                    {p.string() + ":2", "value 2 of 'dog'", "'x2'"});
  p = fixture("nan2.txt", "the 1 2\ndog 1 1.2.3\n");
  expect_error_with([&] { load_glove_embedding(p, vocab(), 1); }, {p.string() + ":2", "1.2.3"});
  p = fixture("nan3.txt", "the 1 nan\n");
  expect_error_with([&] { load_glove_embedding(p, vocab(), 1); }, {p.string() + ":1", "nan"});
  p = fixture("inf.txt", "the 1 1e999\n");
  expect_error_with([&] { load_glove_embedding(p, vocab(), 1); }, {p.string() + ":1", "1e999"});
  // ...and in the vector of a word the vocabulary does not need (checked, not parsed).
  p = fixture("nan4.txt", "the 1 2\nof 1 2\nand 0.5 abc\n");
  expect_error_with([&] { load_glove_embedding(p, vocab(), 1); },
                    {p.string() + ":3", "value 2 of 'and'", "'abc'"});
}

TEST(Glove, OtherMalformedFiles) {
  auto p = fixture("wordonly.txt", "the\n");
  expect_error_with([&] { load_glove_embedding(p, vocab(), 1); },
                    {p.string() + ":1", "found only 'the'"});
  p = fixture("empty.txt", "");
  expect_error_with([&] { load_glove_embedding(p, vocab(), 1); },
                    {p.string(), "no word vectors"});
  p = fixture("blank.txt", "\n  \n\n");
  expect_error_with([&] { load_glove_embedding(p, vocab(), 1); }, {"no word vectors"});
  auto absent = caption::testing::scratch_dir("glove") / "absent.txt";
  expect_error_with([&] { load_glove_embedding(absent, vocab(), 1); },
                    {absent.string(), "cannot open"});
}

TEST(Glove, LenientWhitespaceDuplicatesAndLastLine) {
  // CRLF line ends, blank lines, a trailing space, no final newline; a repeated word
  // keeps its first vector.
  auto p = fixture("crlf.txt", "the 1 2\r\n\r\ndog 3 4 \r\ndog 5 6\r\ncat 7 8");
  auto e = load_glove_embedding(p, vocab(), 1);
  EXPECT_EQ(e.dim, 2);
  EXPECT_EQ(row(e, 4), (std::vector<float>{1, 2}));
  EXPECT_EQ(row(e, 5), (std::vector<float>{3, 4}));
  EXPECT_EQ(row(e, 6), (std::vector<float>{7, 8}));
  EXPECT_EQ(e.words_found, 3);
  EXPECT_EQ(e.file_vectors, 4);
  // A special token's spelling in the file is never used for the special's row.
  p = fixture("special.txt", "<unk> 9 9\nthe 1 2\n");
  e = load_glove_embedding(p, vocab(), 1);
  EXPECT_NE(row(e, kUnkId), (std::vector<float>{9, 9}));
}

// A full-size 50-d file (400k lines): counts and values. Its load time is measured by
// bench/data_bench.cpp, not here (speed goals live in benchmarks).
TEST(Glove, FourHundredThousandLinesOfFifty) {
  fs::path p = caption::testing::scratch_dir("glove") / "big50.txt";
  std::vector<std::string> tokens = {"<pad>", "<sos>", "<eos>", "<unk>"};
  {
    std::FILE* f = std::fopen(p.c_str(), "wb");
    ASSERT_NE(f, nullptr);
    std::string line;
    for (int i = 0; i < 400000; ++i) {
      // (snprintf rather than "w" + to_string: GCC 12 warns falsely on the latter)
      char word[16];
      std::snprintf(word, sizeof word, "w%d", i);
      line = word;
      for (int k = 0; k < 50; ++k) {
        char num[16];
        int n = std::snprintf(num, sizeof num, " %.5f", ((i * 31 + k * 7) % 2001 - 1000) * 0.001);
        line.append(num, static_cast<size_t>(n));
      }
      line += '\n';
      std::fwrite(line.data(), 1, line.size(), f);
      if (i % 40 == 0) tokens.emplace_back(word);  // 10k words
    }
    std::fclose(f);
  }
  tokens.push_back("not_in_glove");
  auto v = Vocabulary::from_tokens(tokens, "big");
  auto e = load_glove_embedding(p, v, 5);
  EXPECT_EQ(e.words_found, 10000);
  EXPECT_EQ(e.words_total, 10001);
  EXPECT_EQ(e.file_vectors, 400000);
  EXPECT_EQ(e.missing_examples, std::vector<std::string>{"not_in_glove"});
  EXPECT_NEAR(row(e, 5)[1], ((40 * 31 + 7) % 2001 - 1000) * 0.001, 1e-6);
  fs::remove(p);
}

}  // namespace
}  // namespace caption::text
