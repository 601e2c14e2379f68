// Vocabulary: specials and their ids, min_word_freq, deterministic ids and tie-breaking,
// encoding (unknown words, <sos>/<eos>, the long-caption policies and their counts),
// decoding with and without specials, and the JSON file (round trip, malformed files).
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "data/text/vocab.h"
#include "engine/error.h"
#include "tests/harness/scratch.h"

namespace caption::text {
namespace {

namespace fs = std::filesystem;
using Caption = std::vector<std::string>;
using Ids = std::vector<TokenId>;

std::vector<Caption> corpus() {
  return {
      {"a", "dog", "on", "a", "beach"},
      {"a", "cat", "on", "a", "mat"},
      {"the", "dog", "and", "the", "cat"},
      {"zebra", "dog", "cat", "a"},
  };
}

fs::path tmp_dir() { return caption::testing::scratch_dir("vocab"); }

void expect_error_with(const std::function<void()>& fn, const std::vector<std::string>& parts) {
  try {
    fn();
    ADD_FAILURE() << "expected caption::Error";
  } catch (const Error& e) {
    for (const auto& p : parts)
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what() << "\n  lacks: " << p;
  }
}

TEST(Vocab, SpecialsAndOrderByCountThenBytes) {
  auto v = Vocabulary::build(corpus(), {.min_word_freq = 1});
  // counts: a 5, dog 3, cat 3, on 2, the 2, and 1, beach 1, mat 1, zebra 1
  EXPECT_EQ(v.tokens(), (Caption{"<pad>", "<sos>", "<eos>", "<unk>", "a", "cat", "dog", "on",
                                 "the", "and", "beach", "mat", "zebra"}));
  EXPECT_EQ(kPadId, 0);
  EXPECT_EQ(kSosId, 1);
  EXPECT_EQ(kEosId, 2);
  EXPECT_EQ(kUnkId, 3);
  EXPECT_EQ(v.id("<pad>"), 0);
  EXPECT_EQ(v.id("a"), 4);
  EXPECT_EQ(v.size(), 13);
}

TEST(Vocab, TiesBrokenByByteOrder) {
  // Uppercase sorts before lowercase in byte order; "B" < "a" < "b".
  std::vector<Caption> c = {{"b", "a", "B", "ab", "aa"}};
  auto v = Vocabulary::build(c, {.min_word_freq = 1});
  EXPECT_EQ(v.tokens(), (Caption{"<pad>", "<sos>", "<eos>", "<unk>", "B", "a", "aa", "ab", "b"}));
}

TEST(Vocab, SameDataSameIdsWhateverTheOrder) {
  auto c = corpus();
  auto v1 = Vocabulary::build(c, {.min_word_freq = 1});
  std::mt19937 rng(7);  // shuffling only; ids must not depend on it
  for (int i = 0; i < 5; ++i) {
    std::shuffle(c.begin(), c.end(), rng);
    for (auto& cap : c) std::shuffle(cap.begin(), cap.end(), rng);
    EXPECT_EQ(Vocabulary::build(c, {.min_word_freq = 1}), v1);
  }
}

TEST(Vocab, MinWordFreq) {
  auto v = Vocabulary::build(corpus(), {.min_word_freq = 3});
  EXPECT_EQ(v.tokens(), (Caption{"<pad>", "<sos>", "<eos>", "<unk>", "a", "cat", "dog"}));
  EXPECT_EQ(Vocabulary::build(corpus()).size(), 5);  // default 5: only "a"
  EXPECT_EQ(Vocabulary::build(corpus(), {.min_word_freq = 100}).size(), 4);
  EXPECT_THROW(Vocabulary::build(corpus(), {.min_word_freq = 0}), Error);
}

TEST(Vocab, SpecialSpellingsAreNotWords) {
  std::vector<Caption> c = {{"<unk>", "<eos>", "dog", "<pad>", ""}};
  auto v = Vocabulary::build(c, {.min_word_freq = 1});
  EXPECT_EQ(v.tokens(), (Caption{"<pad>", "<sos>", "<eos>", "<unk>", "dog"}));
}

TEST(Vocab, EncodeAndDecode) {
  auto v = Vocabulary::build(corpus(), {.min_word_freq = 2});
  EXPECT_EQ(v.encode(Caption{"a", "giraffe", "on", "the", "dog"}), (Ids{4, kUnkId, 7, 8, 6}));
  Ids ids = {kSosId, 4, kUnkId, 6, kEosId, kPadId, kPadId};
  EXPECT_EQ(v.decode(ids, DecodeSpecials::Keep),
            (Caption{"<sos>", "a", "<unk>", "dog", "<eos>", "<pad>", "<pad>"}));
  EXPECT_EQ(v.decode(ids, DecodeSpecials::DropMarkers), (Caption{"a", "<unk>", "dog"}));
  EXPECT_EQ(v.decode(ids, DecodeSpecials::DropAll), (Caption{"a", "dog"}));
  EXPECT_EQ(v.decode_text(ids, DecodeSpecials::DropMarkers), "a <unk> dog");
  expect_error_with([&] { v.decode(Ids{4, 99}, DecodeSpecials::Keep); }, {"99", "outside"});
  expect_error_with([&] { v.decode(Ids{-1}, DecodeSpecials::DropAll); }, {"-1"});
}

TEST(Vocab, TrainingCaptionsTruncateOrDrop) {
  auto v = Vocabulary::build(corpus(), {.min_word_freq = 1});
  std::vector<Caption> caps = {{"a", "dog"}, {"a", "cat", "on", "a", "mat"}, {}, {"zebra", "x"}};
  CaptionEncodeOptions o{.max_caption_len = 3, .long_captions = LongCaptionPolicy::Truncate};
  auto e = v.encode_captions(caps, o);
  ASSERT_EQ(e.captions.size(), 4u);
  EXPECT_EQ(e.captions[0], (Ids{kSosId, 4, 6, kEosId}));
  EXPECT_EQ(e.captions[1], (Ids{kSosId, 4, 5, 7, kEosId}));  // cut after 3 words
  EXPECT_EQ(e.captions[2], (Ids{kSosId, kEosId}));
  EXPECT_EQ(e.captions[3], (Ids{kSosId, 12, kUnkId, kEosId}));
  EXPECT_EQ(e.truncated, 1u);
  EXPECT_EQ(e.dropped, 0u);
  EXPECT_EQ(e.empty, 1u);
  EXPECT_EQ(e.words, 2u + 3u + 0u + 2u);
  EXPECT_EQ(e.unknown_words, 1u);
  EXPECT_EQ(e.source_index, (std::vector<size_t>{0, 1, 2, 3}));

  o.long_captions = LongCaptionPolicy::Drop;
  e = v.encode_captions(caps, o);
  ASSERT_EQ(e.captions.size(), 3u);
  EXPECT_EQ(e.truncated, 0u);
  EXPECT_EQ(e.dropped, 1u);
  EXPECT_EQ(e.source_index, (std::vector<size_t>{0, 2, 3}));
  EXPECT_FALSE(v.encode_caption(caps[1], o).has_value());

  // Exactly max_caption_len words is not "too long".
  o.max_caption_len = 5;
  EXPECT_EQ(v.encode_captions(caps, o).dropped, 0u);
  EXPECT_EQ(CaptionEncodeOptions{}.max_caption_len, 50);
  o.max_caption_len = 0;
  EXPECT_THROW(v.encode_caption(caps[0], o), Error);
}

TEST(Vocab, SaveLoadRoundTrip) {
  auto v = Vocabulary::build(corpus(), {.min_word_freq = 1});
  fs::path p = tmp_dir() / "vocab.json";
  v.save(p);
  auto loaded = Vocabulary::load(p);
  EXPECT_EQ(loaded, v);
  EXPECT_EQ(loaded.id("zebra"), v.id("zebra"));
  // The file is a plain JSON array of the tokens in id order.
  std::ifstream in(p);
  auto j = nlohmann::json::parse(in);
  ASSERT_TRUE(j.is_array());
  EXPECT_EQ(j.get<Caption>(), v.tokens());
  EXPECT_EQ(Vocabulary::from_json(v.to_json(), "memory"), v);
}

void write(const fs::path& p, const std::string& text) { std::ofstream(p) << text; }

TEST(Vocab, MalformedFilesNameTheFile) {
  fs::path p = tmp_dir() / "bad.json";
  const std::string name = p.string();
  write(p, R"(["<pad>", "<sos>", "<eos>"])");
  expect_error_with([&] { Vocabulary::load(p); }, {name, "at least the 4 special tokens"});
  write(p, R"(["<pad>", "<eos>", "<sos>", "<unk>", "a"])");
  expect_error_with([&] { Vocabulary::load(p); }, {name, "token 1 must be '<sos>'"});
  write(p, R"(["<pad>", "<sos>", "<eos>", "<unk>", "a", "b", "a"])");
  expect_error_with([&] { Vocabulary::load(p); }, {name, "'a' appears twice", "4", "6"});
  write(p, R"(["<pad>", "<sos>", "<eos>", "<unk>", 5])");
  expect_error_with([&] { Vocabulary::load(p); }, {name, "token 4 must be a string"});
  write(p, R"(["<pad>", "<sos>", "<eos>", "<unk>", ""])");
  expect_error_with([&] { Vocabulary::load(p); }, {name, "token 4 is empty"});
  write(p, R"({"tokens": []})");
  expect_error_with([&] { Vocabulary::load(p); }, {name, "JSON array"});
  write(p, R"(["<pad>", "<sos>", )");
  expect_error_with([&] { Vocabulary::load(p); }, {name, "not valid JSON"});
  expect_error_with([&] { Vocabulary::load(tmp_dir() / "absent.json"); },
                    {(tmp_dir() / "absent.json").string(), "cannot open"});
  expect_error_with([&] { Vocabulary::build(corpus()).save(tmp_dir() / "no/such/dir/v.json"); },
                    {"no/such/dir/v.json", "cannot write"});
}

}  // namespace
}  // namespace caption::text
