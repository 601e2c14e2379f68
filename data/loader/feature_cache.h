// A disk cache of encoder outputs, for training with a frozen encoder: each image's
// features a [P, D] (MODEL_SPEC section 3) are computed once and read back every epoch,
// so that an epoch costs the decoder only. P is S*S, or k*k when the encoder gives only
// k x k distinct cells that the pool would repeat (k dividing S: nn::AttentionGrid;
// a quarter of the disk at 224x224 with S = 14).
//
// Layout of a cache directory:
//   index.json                 format, identity (below), P, D, the shard list
//   shard_00000.safetensors    images [0, 256): one float32 tensor [P, D] per image,
//   shard_00001.safetensors    named by its image id; __metadata__ repeats the format
//   ...                        and the encoder identity
//
// Choices:
// - Identity. Features are only valid for the encoder weights, image_size,
//   normalisation, encoder_size and image list they were computed with. The cache
//   records all of them; the encoder's identity is a caller-provided string (e.g. the
//   architecture and a hash of the weights file) since this module knows nothing of
//   models. Opening with any of them different is refused, naming each difference.
// - No model dependency: building takes a callback images [B, 3, H, W] -> features
//   [B, P, D] (any device; copied to the host).
// - Atomic as a whole: the cache is built in "<dir>.partial-<pid>" (every file written
//   atomically too) and renamed to <dir> when complete, so an interrupted build never
//   leaves a directory that looks like a cache.
// - Reading is zero-copy until the final copy into a batch: shards are memory-mapped
//   (engine/safetensors.h) once, when the cache is opened, and reads are thread-safe.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "data/datasets/caption_dataset.h"
#include "data/image/transform.h"
#include "engine/safetensors.h"
#include "engine/tensor.h"

namespace caption::data {

inline constexpr std::string_view kFeatureCacheFormat = "caption-feature-cache/1";

// One image to cache: its id (the tensor's name; unique) and where its file is.
struct CacheImage {
  std::string id;
  std::filesystem::path path;
};

// Every sample of a data set, in data set order (one cache serves all its splits).
std::vector<CacheImage> cache_images(const CaptionDataset& dataset);

// What features depend on. Two caches are interchangeable exactly when these are equal.
struct FeatureCacheIdentity {
  std::string encoder;  // caller's identity of the encoder: name and a hash of its weights
  int image_size = 224;
  int encoder_size = 14;
  Normalization normalization{};
  std::vector<std::string> image_ids;  // in cache order

  // One line per field that differs ("encoder: 'a' in the cache, 'b' requested");
  // empty when equal.
  std::vector<std::string> differences(const FeatureCacheIdentity& requested) const;
};

FeatureCacheIdentity feature_cache_identity(std::string encoder, int encoder_size,
                                            const ImageTransform& transform,
                                            const std::vector<CacheImage>& images);

// Images [B, 3, H, W] (float32, CPU, normalised) -> features [B, P, D] (float32).
using EncodeFn = std::function<Tensor(const Tensor& images)>;

// What building does when the directory already exists.
enum class ExistingCache {
  Reuse,    // open it (refused, naming the differences, if its identity differs)
  Replace,  // build anew and replace it
  Refuse,   // error
};

struct FeatureCacheBuildOptions {
  int64_t images_per_shard = 256;
  int64_t batch_size = 32;  // images per encode call
  int workers = 2;          // threads decoding images
  ExistingCache existing = ExistingCache::Reuse;
};

class FeatureCache {
 public:
  // Computes the features of `images` with `encode` and writes the cache at `dir` (or
  // reuses it, see ExistingCache). `encoder` identifies the encoder's weights;
  // `encoder_size` is S, and every output must be [B, S*S, D] with one D throughout.
  static FeatureCache build(const std::filesystem::path& dir, const std::vector<CacheImage>& images,
                            const ImageTransform& transform, const std::string& encoder,
                            int encoder_size, const EncodeFn& encode,
                            const FeatureCacheBuildOptions& options = {});

  // Opens a cache; refuses it (caption::Error naming the directory and every
  // difference) when its identity is not `expected`, and refuses damaged files.
  static FeatureCache open(const std::filesystem::path& dir, const FeatureCacheIdentity& expected);

  FeatureCache(FeatureCache&&) noexcept = default;
  FeatureCache& operator=(FeatureCache&&) noexcept = default;
  FeatureCache(const FeatureCache&) = delete;
  FeatureCache& operator=(const FeatureCache&) = delete;

  const FeatureCacheIdentity& identity() const { return identity_; }
  const std::filesystem::path& dir() const { return dir_; }
  int64_t size() const { return static_cast<int64_t>(identity_.image_ids.size()); }
  int64_t positions() const { return positions_; }  // P
  int64_t dim() const { return dim_; }              // D

  // The index of an image id, or nullopt.
  std::optional<int64_t> find(std::string_view image_id) const;
  // Copies image `index`'s features into out (P * D floats, position-major).
  void read(int64_t index, std::span<float> out) const;
  // Image `index`'s features as a new tensor.
  Tensor get(int64_t index) const;  // [P, D]

 private:
  FeatureCache() = default;
  struct Entry {
    size_t shard = 0;   // into shards_
    size_t tensor = 0;  // into shards_[shard].tensors()
  };
  std::filesystem::path dir_;
  FeatureCacheIdentity identity_;
  int64_t positions_ = 0;
  int64_t dim_ = 0;
  std::vector<SafetensorsReader> shards_;
  std::vector<Entry> entries_;                          // by image index
  std::map<std::string, int64_t, std::less<>> by_id_;   // image id -> index
};

}  // namespace caption::data
