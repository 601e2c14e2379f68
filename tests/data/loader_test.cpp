// Tests of data/loader (the DataLoader and its epoch plan) on a tiny synthetic set
// (24 train images at 32x32, five captions each) generated per test in CAPTION_TEST_TMP,
// so that tests of this program may run in parallel processes: shapes, padding, the
// sort by length, both epoch modes, shuffling, drop_last, bit-identical batches for any
// worker count (and with the image cache), resuming from a position, long captions,
// and a corrupt image surfacing as an error in the consumer.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "data/datasets/flickr8k_reader.h"
#include "data/image/file_io.h"
#include "data/image/transform.h"
#include "data/loader/loader.h"
#include "data/synthetic/generator.h"
#include "data/text/normalize.h"
#include "data/text/vocab.h"
#include "engine/error.h"
#include "tests/harness/harness.h"

namespace caption::data {
namespace {

namespace fs = std::filesystem;
using text::Normalizer;
using text::TextOptions;
using text::Vocabulary;

constexpr int kImageSize = 32;
constexpr int kTrainImages = 24;

// A synthetic set, its vocabulary and the loader's inputs, made fresh for each test in a
// directory named after it.
class LoaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    root_ = fs::path(CAPTION_TEST_TMP) / (std::string("loader_") + info->name());
    SyntheticOptions synth;
    synth.seed = 11;
    synth.image_size = kImageSize;
    synth.train_images = kTrainImages;
    synth.val_images = 4;
    synth.test_images = 4;
    synth.existing = ExistingOutput::Replace;
    fs::create_directories(root_.parent_path());
    generate_synthetic_dataset(root_, synth);
    dataset_ = read_flickr8k(root_).dataset;
    std::vector<std::vector<std::string>> train;
    for (const CaptionSample* s : dataset_.of_split(Split::Train))
      for (const std::string& c : s->captions) train.push_back(normalizer_.normalize(c));
    vocab_ = std::make_unique<Vocabulary>(Vocabulary::build(train, {.min_word_freq = 1}));
    transform_.image_size = kImageSize;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }

  DataLoader make(const LoaderOptions& options) {
    return DataLoader(dataset_, normalizer_, *vocab_, transform_, options);
  }

  fs::path root_;
  CaptionDataset dataset_;
  Normalizer normalizer_{TextOptions{}};
  std::unique_ptr<Vocabulary> vocab_;
  ImageTransform transform_;
};

std::vector<Batch> one_epoch(DataLoader& loader) {
  std::vector<Batch> out;
  while (auto b = loader.next()) out.push_back(std::move(*b));
  return out;
}

// Every field of two batches, bit for bit.
void expect_same(const Batch& a, const Batch& b, const std::string& what) {
  EXPECT_EQ(a.epoch, b.epoch) << what;
  EXPECT_EQ(a.index, b.index) << what;
  EXPECT_EQ(a.images.defined(), b.images.defined()) << what;
  if (a.images.defined() && b.images.defined()) {
    EXPECT_TRUE(testing::equal(a.images, b.images, what + " images"));
  }
  EXPECT_TRUE(testing::equal(a.captions, b.captions, what + " captions"));
  EXPECT_TRUE(testing::equal(a.lengths, b.lengths, what + " lengths"));
  EXPECT_EQ(a.image_ids, b.image_ids) << what;
  EXPECT_EQ(a.sample_indices, b.sample_indices) << what;
  EXPECT_EQ(a.references, b.references) << what;
}

void expect_same(const std::vector<Batch>& a, const std::vector<Batch>& b, const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (size_t i = 0; i < a.size(); ++i) expect_same(a[i], b[i], what + ", batch " + std::to_string(i));
}

// The caption rows of a batch as token vectors (without padding).
std::vector<std::vector<int64_t>> rows(const Batch& b) {
  const auto tokens = b.captions.to_vector<int64_t>();
  const auto lengths = b.lengths.to_vector<int64_t>();
  const int64_t width = b.captions.size(1);
  std::vector<std::vector<int64_t>> out;
  for (int64_t i = 0; i < b.size(); ++i)
    out.emplace_back(tokens.begin() + i * width, tokens.begin() + i * width + lengths[i]);
  return out;
}

TEST_F(LoaderTest, ShapesPaddingSortingAndPixels) {
  LoaderOptions options;
  options.batch_size = 7;
  DataLoader loader = make(options);
  EXPECT_EQ(loader.items_per_epoch(), kTrainImages * 5);
  EXPECT_EQ(loader.batches_per_epoch(), (kTrainImages * 5 + 6) / 7);
  const std::vector<Batch> batches = one_epoch(loader);
  ASSERT_EQ(static_cast<int64_t>(batches.size()), loader.batches_per_epoch());
  EXPECT_EQ(loader.position(), (LoaderPosition{1, 0}));
  for (const Batch& b : batches) {
    const int64_t n = b.size();
    EXPECT_EQ(n, b.index + 1 < loader.batches_per_epoch() ? 7 : kTrainImages * 5 % 7);
    EXPECT_EQ(b.images.shape(), (caption::Shape{n, 3, kImageSize, kImageSize}));
    EXPECT_EQ(b.images.dtype(), DType::F32);
    EXPECT_FALSE(b.features.defined());
    EXPECT_EQ(b.captions.dtype(), DType::I64);
    EXPECT_EQ(b.lengths.shape(), (caption::Shape{n}));
    EXPECT_EQ(b.lengths.dtype(), DType::I64);
    const auto lengths = b.lengths.to_vector<int64_t>();
    EXPECT_EQ(b.captions.size(1), lengths[0]);
    EXPECT_TRUE(std::is_sorted(lengths.begin(), lengths.end(), std::greater<>()));
    const auto tokens = b.captions.to_vector<int64_t>();
    const int64_t width = b.captions.size(1);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t* row = tokens.data() + i * width;
      EXPECT_EQ(row[0], text::kSosId);
      EXPECT_EQ(row[lengths[i] - 1], text::kEosId);
      for (int64_t t = 1; t < lengths[i] - 1; ++t) EXPECT_GE(row[t], text::kUnkId);
      for (int64_t t = lengths[i]; t < width; ++t) EXPECT_EQ(row[t], text::kPadId);
      const CaptionSample& sample = dataset_.samples[static_cast<size_t>(b.sample_indices[i])];
      EXPECT_EQ(sample.image_id, b.image_ids[i]);
      ASSERT_EQ(b.references[i].size(), sample.captions.size());
      for (size_t r = 0; r < sample.captions.size(); ++r)
        EXPECT_EQ(b.references[i][r], normalizer_.normalize(sample.captions[r]));
      // The pixels are the image's normalised pixels.
      const ChwImage want = load_and_preprocess(sample.image_path, transform_);
      const Tensor got = b.images.select(0, i).contiguous();
      ASSERT_EQ(want.data.size(), static_cast<size_t>(got.numel()));
      EXPECT_TRUE(std::equal(want.data.begin(), want.data.end(), got.data<float>()))
          << b.image_ids[i];
    }
  }
}

TEST_F(LoaderTest, EveryCaptionCoversEachPairOnce) {
  LoaderOptions options;
  options.batch_size = 8;
  DataLoader loader = make(options);
  std::multiset<std::pair<std::string, std::vector<int64_t>>> seen, want;
  for (const Batch& b : one_epoch(loader)) {
    const auto caption_rows = rows(b);
    for (int64_t i = 0; i < b.size(); ++i) seen.emplace(b.image_ids[i], caption_rows[i]);
  }
  for (const CaptionSample* s : dataset_.of_split(Split::Train))
    for (const std::string& c : s->captions) {
      auto ids = vocab_->encode_caption(normalizer_.normalize(c), options.encode).value();
      want.emplace(s->image_id, std::vector<int64_t>(ids.begin(), ids.end()));
    }
  EXPECT_EQ(seen, want);
}

TEST_F(LoaderTest, OneCaptionPerImageDrawsFromSeedAndEpoch) {
  LoaderOptions options;
  options.items = EpochItems::OneCaptionPerImage;
  options.batch_size = 5;
  options.seed = 4;
  DataLoader loader = make(options);
  EXPECT_EQ(loader.items_per_epoch(), kTrainImages);
  std::vector<std::map<std::string, std::vector<int64_t>>> chosen(3);
  for (int epoch = 0; epoch < 3; ++epoch) {
    for (const Batch& b : one_epoch(loader)) {
      const auto caption_rows = rows(b);
      for (int64_t i = 0; i < b.size(); ++i)
        EXPECT_TRUE(chosen[epoch].emplace(b.image_ids[i], caption_rows[i]).second)
            << b.image_ids[i] << " twice in epoch " << epoch;
    }
    EXPECT_EQ(chosen[epoch].size(), static_cast<size_t>(kTrainImages));
  }
  // Each chosen caption is one of the image's own; the choice changes between epochs.
  int changed = 0;
  for (const auto& [id, caption] : chosen[0]) {
    changed += chosen[1].at(id) != caption;
    const std::string& image_id = id;  // clang before 16 captures no structured binding
    const auto it = std::find_if(dataset_.samples.begin(), dataset_.samples.end(),
                                 [&](const CaptionSample& s) { return s.image_id == image_id; });
    bool found = false;
    for (const std::string& c : it->captions) {
      auto ids = vocab_->encode_caption(normalizer_.normalize(c), options.encode).value();
      found |= std::vector<int64_t>(ids.begin(), ids.end()) == caption;
    }
    EXPECT_TRUE(found) << id;
  }
  EXPECT_GT(changed, kTrainImages / 2);
  // Same seed, same choices; another loader at epoch 2 agrees without epochs 0 and 1.
  DataLoader again = make(options);
  again.seek({2, 0});
  std::map<std::string, std::vector<int64_t>> epoch2;
  for (const Batch& b : one_epoch(again)) {
    const auto caption_rows = rows(b);
    for (int64_t i = 0; i < b.size(); ++i) epoch2.emplace(b.image_ids[i], caption_rows[i]);
  }
  EXPECT_EQ(epoch2, chosen[2]);
}

TEST_F(LoaderTest, ShuffleFollowsSeedAndEpoch) {
  // Batches of one: the batch order is the epoch's item order, untouched by the sort.
  auto order = [&](uint64_t seed, int64_t epoch, Shuffle shuffle) {
    LoaderOptions o;
    o.batch_size = 1;
    o.seed = seed;
    o.shuffle = shuffle;
    o.image_cache_bytes = 1 << 20;
    DataLoader loader = make(o);
    loader.seek({epoch, 0});
    std::vector<std::pair<int64_t, std::vector<int64_t>>> items;
    for (const Batch& b : one_epoch(loader)) items.emplace_back(b.sample_indices[0], rows(b)[0]);
    return items;
  };
  const auto unshuffled = order(1, 0, Shuffle::No);
  ASSERT_EQ(unshuffled.size(), static_cast<size_t>(kTrainImages * 5));
  // Unshuffled: data set order, captions in file order.
  const auto train = dataset_.of_split(Split::Train);
  for (size_t i = 0; i < unshuffled.size(); ++i) {
    EXPECT_EQ(&dataset_.samples[static_cast<size_t>(unshuffled[i].first)], train[i / 5]);
    auto ids = vocab_->encode_caption(normalizer_.normalize(train[i / 5]->captions[i % 5]), {}).value();
    EXPECT_EQ(unshuffled[i].second, std::vector<int64_t>(ids.begin(), ids.end()));
  }
  EXPECT_EQ(order(2, 3, Shuffle::No), unshuffled);
  // Shuffled: a function of (seed, epoch), a permutation, different for each pair.
  EXPECT_EQ(order(1, 1, Shuffle::Yes), order(1, 1, Shuffle::Yes));
  std::set<std::vector<std::pair<int64_t, std::vector<int64_t>>>> orders;
  for (uint64_t seed : {1, 2, 3})
    for (int64_t epoch : {0, 1}) {
      auto shuffled = order(seed, epoch, Shuffle::Yes);
      auto sorted = shuffled;
      std::sort(sorted.begin(), sorted.end());
      auto expected = unshuffled;
      std::sort(expected.begin(), expected.end());
      EXPECT_EQ(sorted, expected);
      orders.insert(std::move(shuffled));
    }
  EXPECT_EQ(orders.size(), 6u);
}

TEST_F(LoaderTest, DropLast) {
  LoaderOptions options;
  options.batch_size = 7;  // 120 items: 17 full batches and one of 1
  options.last_batch = LastBatch::Keep;
  DataLoader keep = make(options);
  const auto kept = one_epoch(keep);
  ASSERT_EQ(kept.size(), 18u);
  EXPECT_EQ(kept.back().size(), 1);
  options.last_batch = LastBatch::Drop;
  DataLoader drop = make(options);
  const auto dropped = one_epoch(drop);
  ASSERT_EQ(dropped.size(), 17u);
  for (const Batch& b : dropped) EXPECT_EQ(b.size(), 7);
  // Dropping the last batch changes nothing before it.
  for (size_t i = 0; i < dropped.size(); ++i) expect_same(dropped[i], kept[i], "drop_last");
  // A selection too small for one batch is refused, naming the count.
  options.batch_size = 500;
  EXPECT_THROW(make(options), Error);
}

TEST_F(LoaderTest, BitIdenticalForAnyWorkerCountAndWithImageCache) {
  LoaderOptions options;
  options.batch_size = 9;
  options.seed = 7;
  options.workers = 0;
  std::vector<Batch> reference;
  {
    DataLoader loader = make(options);
    reference = one_epoch(loader);
    auto second = one_epoch(loader);
    reference.insert(reference.end(), second.begin(), second.end());
  }
  for (int workers : {1, 2, 5}) {
    for (int prefetch : {1, 3}) {
      for (size_t cache : {size_t{0}, size_t{1} << 20}) {
        LoaderOptions o = options;
        o.workers = workers;
        o.prefetch_batches = prefetch;
        o.image_cache_bytes = cache;
        DataLoader loader = make(o);
        auto got = one_epoch(loader);
        auto second = one_epoch(loader);
        got.insert(got.end(), second.begin(), second.end());
        expect_same(got, reference,
                    "workers " + std::to_string(workers) + ", prefetch " + std::to_string(prefetch) +
                        ", cache " + std::to_string(cache));
        if (cache > 0) {
          ASSERT_NE(loader.image_cache(), nullptr);
          EXPECT_EQ(loader.image_cache()->images(), static_cast<size_t>(kTrainImages));
          EXPECT_GT(loader.image_cache()->hits(), 0u);
        }
      }
    }
  }
}

TEST_F(LoaderTest, ImageCacheRespectsItsByteCap) {
  LoaderOptions options;
  options.batch_size = 10;
  const size_t per_image = size_t{3} * kImageSize * kImageSize;
  options.image_cache_bytes = per_image * 5 + per_image / 2;
  DataLoader loader = make(options);
  one_epoch(loader);
  EXPECT_EQ(loader.image_cache()->images(), 5u);
  EXPECT_EQ(loader.image_cache()->bytes(), per_image * 5);
}

TEST_F(LoaderTest, ResumeContinuesWithTheSameBatches) {
  LoaderOptions options;
  options.batch_size = 11;
  options.seed = 21;
  std::vector<Batch> uninterrupted;
  {
    DataLoader loader = make(options);
    for (int epoch = 0; epoch < 3; ++epoch) {
      auto e = one_epoch(loader);
      uninterrupted.insert(uninterrupted.end(), e.begin(), e.end());
    }
  }
  const int64_t per_epoch = static_cast<int64_t>(uninterrupted.size()) / 3;
  // Stop after batch 4 of epoch 1 and save the position; a new loader continues.
  LoaderPosition saved;
  {
    DataLoader loader = make(options);
    one_epoch(loader);
    for (int i = 0; i < 5; ++i) loader.next();
    saved = loader.position();
  }  // destroyed mid-epoch with batches prefetched
  EXPECT_EQ(saved, (LoaderPosition{1, 5}));
  DataLoader resumed = make(options);
  resumed.seek(saved);
  std::vector<Batch> rest = one_epoch(resumed);
  auto e2 = one_epoch(resumed);
  rest.insert(rest.end(), e2.begin(), e2.end());
  expect_same(rest, std::vector<Batch>(uninterrupted.begin() + per_epoch + 5, uninterrupted.end()),
              "resumed at epoch 1, batch 5");
  // A position at the end of an epoch resumes with the end-of-epoch signal.
  DataLoader at_end = make(options);
  at_end.seek({0, per_epoch});
  EXPECT_FALSE(at_end.next().has_value());
  EXPECT_EQ(at_end.position(), (LoaderPosition{1, 0}));
  expect_same(*at_end.next(), uninterrupted[static_cast<size_t>(per_epoch)], "after the end");
  // Seeking back on a running loader drops what it had prefetched.
  at_end.seek({0, 2});
  expect_same(*at_end.next(), uninterrupted[2], "seek back");
  EXPECT_THROW(at_end.seek({0, per_epoch + 1}), Error);
  EXPECT_THROW(at_end.seek({-1, 0}), Error);
}

TEST_F(LoaderTest, LongCaptionsAreTruncatedOrDroppedAndCounted) {
  LoaderOptions options;
  options.batch_size = 16;
  options.encode.max_caption_len = 4;
  options.encode.long_captions = text::LongCaptionPolicy::Truncate;
  size_t long_captions = 0;
  for (const CaptionSample* s : dataset_.of_split(Split::Train))
    for (const std::string& c : s->captions) long_captions += normalizer_.normalize(c).size() > 4;
  ASSERT_GT(long_captions, 0u);
  {
    DataLoader loader = make(options);
    EXPECT_EQ(loader.report().truncated, long_captions);
    EXPECT_EQ(loader.report().dropped, 0u);
    EXPECT_EQ(loader.items_per_epoch(), kTrainImages * 5);
    for (const Batch& b : one_epoch(loader)) {
      EXPECT_LE(b.captions.size(1), 6);
      // References stay whole: they are for evaluation.
      for (const auto& refs : b.references)
        for (const auto& r : refs) EXPECT_GE(r.size(), 1u);
    }
  }
  options.encode.long_captions = text::LongCaptionPolicy::Drop;
  DataLoader loader = make(options);
  EXPECT_EQ(loader.report().dropped, long_captions);
  EXPECT_EQ(loader.report().truncated, 0u);
  EXPECT_EQ(loader.items_per_epoch(), static_cast<int64_t>(kTrainImages * 5 - long_captions));
  int64_t items = 0;
  for (const Batch& b : one_epoch(loader)) items += b.size();
  EXPECT_EQ(items, loader.items_per_epoch());
  EXPECT_NE(loader.report().summary().find("dropped"), std::string::npos);
}

TEST_F(LoaderTest, SplitSelection) {
  LoaderOptions options;
  options.splits = {Split::Val, Split::Test};
  options.items = EpochItems::OneCaptionPerImage;
  options.shuffle = Shuffle::No;
  options.batch_size = 3;
  DataLoader loader = make(options);
  EXPECT_EQ(loader.items_per_epoch(), 8);
  EXPECT_EQ(loader.report().splits, "val+test");
  std::set<Split> splits;
  for (const Batch& b : one_epoch(loader))
    for (int64_t index : b.sample_indices) splits.insert(dataset_.samples[static_cast<size_t>(index)].split);
  EXPECT_EQ(splits, (std::set<Split>{Split::Val, Split::Test}));
  options.splits = {Split::Restval};  // empty in this set
  EXPECT_THROW(make(options), Error);
}

TEST_F(LoaderTest, BadOptionsAreRefused) {
  LoaderOptions options;
  options.batch_size = 0;
  EXPECT_THROW(make(options), Error);
  options = {};
  options.prefetch_batches = 0;
  EXPECT_THROW(make(options), Error);
  options = {};
  options.workers = -1;
  EXPECT_THROW(make(options), Error);
  options = {};
  options.splits.clear();
  EXPECT_THROW(make(options), Error);
}

TEST_F(LoaderTest, CorruptImageSurfacesInTheConsumerNamingTheFile) {
  // Corrupt the first training image (in data set order): truncated PNG bytes.
  const CaptionSample& victim = *dataset_.of_split(Split::Train)[0];
  const auto bytes = read_file_bytes(victim.image_path);
  write_file_atomic(victim.image_path,
                    std::span<const std::uint8_t>(bytes.data(), bytes.size() / 3));
  for (int workers : {0, 2, 4}) {
    LoaderOptions options;
    options.items = EpochItems::OneCaptionPerImage;
    options.shuffle = Shuffle::No;
    options.batch_size = 4;
    options.workers = workers;
    DataLoader loader = make(options);
    try {
      loader.next();
      FAIL() << "expected caption::Error for " << victim.image_path;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(victim.image_path.string()), std::string::npos)
          << e.what();
    }
    // The position moved past the failed batch; the loader carries on.
    EXPECT_EQ(loader.position(), (LoaderPosition{0, 1}));
    const auto b = loader.next();
    ASSERT_TRUE(b.has_value());
    EXPECT_EQ(b->index, 1);
    // The second epoch meets the same image again, as an error again.
    while (loader.next()) {
    }
    EXPECT_THROW(loader.next(), Error);
  }
}

TEST_F(LoaderTest, DestroyedMidEpochWithoutHanging) {
  for (int round = 0; round < 5; ++round) {
    LoaderOptions options;
    options.batch_size = 3;
    options.workers = 4;
    options.prefetch_batches = 4;
    DataLoader loader = make(options);
    for (int i = 0; i < round; ++i) ASSERT_TRUE(loader.next().has_value());
  }  // each destructor joins its busy workers
  SUCCEED();
}

}  // namespace
}  // namespace caption::data
