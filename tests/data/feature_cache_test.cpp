// Tests of data/loader/feature_cache: building a cache through an encode callback (a
// stand-in encoder: per-quadrant channel means, so features depend on every pixel),
// reading it back exactly, the shard layout, refusal when any part of the identity
// differs, checks on the encoder's output, atomicity when a build fails, and the loader
// yielding cached features that equal the features computed directly.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "data/datasets/flickr8k_reader.h"
#include "data/image/file_io.h"
#include "data/loader/feature_cache.h"
#include "data/loader/loader.h"
#include "data/synthetic/generator.h"
#include "engine/error.h"
#include "tests/harness/harness.h"

namespace caption::data {
namespace {

namespace fs = std::filesystem;

constexpr int kImageSize = 32;
constexpr int kEncoderSize = 2;  // P = 4
constexpr int64_t kDim = 5;      // D

// [B, 3, H, W] -> [B, P, D]: feature d of cell p is a weighted mean of the cell's
// pixels in channel d % 3 (weights differ per d, so that all D values differ).
Tensor toy_encoder(const Tensor& images) {
  const int64_t b = images.size(0), h = images.size(2), w = images.size(3);
  const int64_t cell = h / kEncoderSize;
  Tensor out = Tensor::zeros({b, kEncoderSize * kEncoderSize, kDim});
  const float* x = images.data<float>();
  float* y = out.data<float>();
  for (int64_t n = 0; n < b; ++n)
    for (int64_t p = 0; p < kEncoderSize * kEncoderSize; ++p)
      for (int64_t d = 0; d < kDim; ++d) {
        double sum = 0.0;
        const int64_t r0 = (p / kEncoderSize) * cell, c0 = (p % kEncoderSize) * cell;
        for (int64_t r = r0; r < r0 + cell; ++r)
          for (int64_t c = c0; c < c0 + cell; ++c)
            sum += (1.0 + 0.1 * d) * x[((n * 3 + d % 3) * h + r) * w + c];
        y[(n * kEncoderSize * kEncoderSize + p) * kDim + d] = static_cast<float>(sum / (cell * cell));
      }
  return out;
}

class FeatureCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    base_ = fs::path(CAPTION_TEST_TMP) / (std::string("feature_cache_") + info->name());
    fs::remove_all(base_);
    fs::create_directories(base_);
    SyntheticOptions synth;
    synth.seed = 5;
    synth.image_size = kImageSize;
    synth.train_images = 18;
    synth.val_images = 3;
    synth.test_images = 3;
    generate_synthetic_dataset(base_ / "synth", synth);
    dataset_ = read_flickr8k(base_ / "synth").dataset;
    transform_.image_size = kImageSize;
    images_ = cache_images(dataset_);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(base_, ec);
  }

  FeatureCache build(const fs::path& dir, const std::string& encoder = "toy@1",
                     const FeatureCacheBuildOptions& options = small_shards()) {
    return FeatureCache::build(dir, images_, transform_, encoder, kEncoderSize, toy_encoder, options);
  }
  static FeatureCacheBuildOptions small_shards() {
    FeatureCacheBuildOptions o;
    o.images_per_shard = 5;  // 24 images: four full shards and one of 4
    o.batch_size = 3;        // chunks that straddle shard boundaries
    return o;
  }
  // The features of one image computed directly.
  Tensor direct(const CacheImage& image) const {
    const ChwImage chw = load_and_preprocess(image.path, transform_);
    const Tensor pixels =
        Tensor::from_vector(chw.data, {1, 3, kImageSize, kImageSize});  // [1, 3, H, W]
    return toy_encoder(pixels).select(0, 0).contiguous();                 // [P, D]
  }

  fs::path base_;
  CaptionDataset dataset_;
  ImageTransform transform_;
  std::vector<CacheImage> images_;
};

TEST_F(FeatureCacheTest, BuildThenReadEveryImageExactly) {
  const fs::path dir = base_ / "cache";
  const FeatureCache cache = build(dir);
  EXPECT_EQ(cache.size(), 24);
  EXPECT_EQ(cache.positions(), kEncoderSize * kEncoderSize);
  EXPECT_EQ(cache.dim(), kDim);
  EXPECT_TRUE(fs::exists(dir / "index.json"));
  for (int s = 0; s < 5; ++s)
    EXPECT_TRUE(fs::exists(dir / ("shard_0000" + std::to_string(s) + ".safetensors"))) << s;
  EXPECT_FALSE(fs::exists(dir / "shard_00005.safetensors"));
  // Nothing but the cache is left behind (no partial directory, no temporary file).
  size_t entries = 0;
  for (const auto& e : fs::directory_iterator(base_)) entries += e.path().filename() != "synth";
  EXPECT_EQ(entries, 1u);
  for (size_t i = 0; i < images_.size(); ++i) {
    EXPECT_EQ(cache.find(images_[i].id), static_cast<int64_t>(i));
    EXPECT_TRUE(testing::equal(cache.get(static_cast<int64_t>(i)), direct(images_[i]), images_[i].id));
  }
  EXPECT_FALSE(cache.find("no-such-image.png").has_value());
  EXPECT_THROW(cache.get(24), Error);

  // Reopened from disk with the same identity: the same values.
  const FeatureCache reopened = FeatureCache::open(dir, cache.identity());
  for (int64_t i = 0; i < reopened.size(); ++i)
    EXPECT_TRUE(testing::equal(reopened.get(i), cache.get(i), "reopened"));
}

TEST_F(FeatureCacheTest, AnotherIdentityIsRefusedNamingWhatDiffers) {
  const fs::path dir = base_ / "cache";
  const FeatureCache cache = build(dir);
  auto refused_with = [&](const FeatureCacheIdentity& requested) -> std::string {
    try {
      FeatureCache::open(dir, requested);
    } catch (const Error& e) {
      return e.what();
    }
    return "not refused";
  };
  FeatureCacheIdentity id = cache.identity();
  id.encoder = "toy@2";
  std::string message = refused_with(id);
  EXPECT_NE(message.find("encoder: 'toy@1' in the cache, 'toy@2' requested"), std::string::npos)
      << message;
  EXPECT_NE(message.find(dir.string()), std::string::npos) << message;

  id = cache.identity();
  id.image_size = 64;
  id.encoder_size = 7;
  message = refused_with(id);
  EXPECT_NE(message.find("image_size: 32 in the cache, 64 requested"), std::string::npos) << message;
  EXPECT_NE(message.find("encoder_size: 2 in the cache, 7 requested"), std::string::npos) << message;
  EXPECT_EQ(message.find("encoder:"), std::string::npos) << message;

  id = cache.identity();
  id.normalization.std[1] = 0.5f;
  EXPECT_NE(refused_with(id).find("normalisation std"), std::string::npos);

  id = cache.identity();
  id.image_ids[3] = "other.png";
  message = refused_with(id);
  EXPECT_NE(message.find("first difference at #3"), std::string::npos) << message;
  id.image_ids.pop_back();
  EXPECT_NE(refused_with(id).find("24 images in the cache, 23 requested"), std::string::npos);

  // build() with Reuse refuses a mismatching cache the same way, Refuse refuses any
  // existing directory, and Replace rebuilds it for the new identity.
  EXPECT_THROW(build(dir, "toy@2"), Error);
  FeatureCacheBuildOptions options = small_shards();
  options.existing = ExistingCache::Refuse;
  EXPECT_THROW(build(dir, "toy@1", options), Error);
  options.existing = ExistingCache::Replace;
  const FeatureCache replaced = build(dir, "toy@2", options);
  EXPECT_EQ(replaced.identity().encoder, "toy@2");
  EXPECT_NO_THROW(build(dir, "toy@2"));  // Reuse of a matching cache
}

// Features holding only the distinct cells of a repeated map (here 1x1 for encoder_size
// 2: nn::AttentionGrid) are cached as they come and read back with their own P.
TEST_F(FeatureCacheTest, DistinctCellFeaturesAreCachedWithTheirOwnPositionCount) {
  const fs::path dir = base_ / "cache";
  auto one_cell = [](const Tensor& images) {
    return mean(toy_encoder(images), {1}).unsqueeze(1);  // [B, 1, D]
  };
  const FeatureCache cache =
      FeatureCache::build(dir, images_, transform_, "toy", kEncoderSize, one_cell, small_shards());
  EXPECT_EQ(cache.positions(), 1);
  const FeatureCache reopened = FeatureCache::open(dir, cache.identity());
  EXPECT_EQ(reopened.positions(), 1);
}

TEST_F(FeatureCacheTest, EncoderOutputIsCheckedAndAFailedBuildLeavesNothing) {
  const fs::path dir = base_ / "cache";
  auto wrong_positions = [](const Tensor& images) {
    return Tensor::zeros({images.size(0), 3, kDim});  // P should be 4
  };
  try {
    FeatureCache::build(dir, images_, transform_, "toy", kEncoderSize, wrong_positions,
                        small_shards());
    FAIL() << "expected caption::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("P = 2x2 (encoder_size squared) or k x k with k dividing 2"),
              std::string::npos)
        << e.what();
  }
  int calls = 0;
  auto changing_dim = [&](const Tensor& images) {
    return Tensor::zeros({images.size(0), 4, ++calls == 1 ? 5 : 6});
  };
  EXPECT_THROW(FeatureCache::build(dir, images_, transform_, "toy", kEncoderSize, changing_dim,
                                   small_shards()),
               Error);
  EXPECT_THROW(FeatureCache::build(dir, images_, transform_, "", kEncoderSize, toy_encoder), Error);
  // A corrupt image fails the build, naming the file; no directory is left.
  const auto bytes = read_file_bytes(images_[7].path);
  write_file_atomic(images_[7].path, std::span<const std::uint8_t>(bytes.data(), 40));
  try {
    build(dir);
    FAIL() << "expected caption::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(images_[7].path.string()), std::string::npos) << e.what();
  }
  size_t entries = 0;
  for (const auto& e : fs::directory_iterator(base_)) entries += e.path().filename() != "synth";
  EXPECT_EQ(entries, 0u);
}

TEST_F(FeatureCacheTest, DamagedCacheIsRefused) {
  const fs::path dir = base_ / "cache";
  const FeatureCacheIdentity identity = build(dir).identity();
  fs::remove(dir / "shard_00002.safetensors");
  EXPECT_THROW(FeatureCache::open(dir, identity), Error);
  write_file_atomic(dir / "index.json", std::string_view("{\"format\": 3"));
  EXPECT_THROW(FeatureCache::open(dir, identity), Error);
  EXPECT_THROW(FeatureCache::open(base_ / "missing", identity), Error);
}

TEST_F(FeatureCacheTest, LoaderYieldsTheCachedFeatures) {
  auto cache = std::make_shared<const FeatureCache>(build(base_ / "cache"));
  text::Normalizer normalizer{text::TextOptions{}};
  std::vector<std::vector<std::string>> train;
  for (const CaptionSample* s : dataset_.of_split(Split::Train))
    for (const std::string& c : s->captions) train.push_back(normalizer.normalize(c));
  const text::Vocabulary vocab = text::Vocabulary::build(train, {.min_word_freq = 1});

  LoaderOptions options;
  options.batch_size = 7;
  options.seed = 3;
  DataLoader pixels(dataset_, normalizer, vocab, transform_, options);
  options.feature_cache = cache;
  for (int workers : {0, 3}) {
    options.workers = workers;
    DataLoader features(dataset_, normalizer, vocab, transform_, options);
    pixels.seek({0, 0});
    int64_t batches = 0;
    while (auto f = features.next()) {
      const auto p = pixels.next();
      ASSERT_TRUE(p.has_value());
      EXPECT_FALSE(f->images.defined());
      ASSERT_EQ(f->features.shape(), (caption::Shape{f->size(), 4, kDim}));
      // Same batches as the pixel loader, with the encoder's output in place of pixels.
      EXPECT_TRUE(testing::equal(f->features, toy_encoder(p->images), "features vs pixels"));
      EXPECT_TRUE(testing::equal(f->captions, p->captions, "captions"));
      EXPECT_EQ(f->image_ids, p->image_ids);
      for (int64_t i = 0; i < f->size(); ++i) {
        const int64_t index = *cache->find(f->image_ids[i]);
        EXPECT_TRUE(testing::equal(f->features.select(0, i).contiguous(),
                                   direct(images_[static_cast<size_t>(index)]), f->image_ids[i]));
      }
      ++batches;
    }
    EXPECT_EQ(batches, features.batches_per_epoch());
  }

  // A cache made at another image size is refused by the loader.
  ImageTransform other = transform_;
  other.image_size = 64;
  EXPECT_THROW(DataLoader(dataset_, normalizer, vocab, other, options), Error);
}

}  // namespace
}  // namespace caption::data
