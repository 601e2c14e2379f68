// The encoder-feature cache (see feature_cache.h): building it shard by shard through
// a caller's encode callback, and opening it with its identity checked.
//
// Building decodes each chunk of images on a few threads and then calls the encoder on
// the caller's thread (a GPU encoder wants one thread); decoding does not overlap the
// encoder, which is simple and costs little since the encoder dominates and the cache is
// built once.
#include "data/loader/feature_cache.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <exception>
#include <set>
#include <system_error>
#include <thread>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "data/image/file_io.h"
#include "engine/error.h"
#include "engine/tensor_io.h"

namespace caption::data {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// Features hold the S x S grid, or only the k x k distinct cells when the pool merely
// repeats a k x k encoder map (k dividing S; nn::AttentionGrid).
bool valid_positions(int64_t positions, int64_t encoder_size) {
  if (positions == encoder_size * encoder_size) return true;
  for (int64_t k = 1; k < encoder_size; ++k)
    if (k * k == positions && encoder_size % k == 0) return true;
  return false;
}

constexpr const char* kIndexFile = "index.json";

std::string shard_name(size_t shard) {
  char name[48];
  std::snprintf(name, sizeof name, "shard_%05zu.safetensors", shard);
  return name;
}

// Runs fn(0 .. n-1) on up to `workers` threads (the calling thread included). Every
// index runs even when some fail; the error of the lowest failing index is rethrown, so
// the error reported does not depend on timing.
void parallel_for(int64_t n, int workers, const std::function<void(int64_t)>& fn) {
  std::vector<std::exception_ptr> errors(static_cast<size_t>(n));
  std::atomic<int64_t> next{0};
  auto run = [&] {
    for (int64_t i; (i = next.fetch_add(1)) < n;) {
      try {
        fn(i);
      } catch (...) {
        errors[static_cast<size_t>(i)] = std::current_exception();
      }
    }
  };
  std::vector<std::thread> threads;
  for (int w = 1; w < std::min<int64_t>(workers, n); ++w) threads.emplace_back(run);
  run();
  for (std::thread& t : threads) t.join();
  for (const std::exception_ptr& e : errors)
    if (e) std::rethrow_exception(e);
}

std::string quoted_floats(const std::array<float, 3>& v) {
  return str("(", v[0], ", ", v[1], ", ", v[2], ")");
}

json identity_json(const FeatureCacheIdentity& id) {
  return {{"encoder", id.encoder},
          {"image_size", id.image_size},
          {"encoder_size", id.encoder_size},
          {"mean", id.normalization.mean},
          {"std", id.normalization.std},
          {"images", id.image_ids}};
}

}  // namespace

std::vector<CacheImage> cache_images(const CaptionDataset& dataset) {
  std::vector<CacheImage> images;
  images.reserve(dataset.samples.size());
  for (const CaptionSample& s : dataset.samples) images.push_back({s.image_id, s.image_path});
  return images;
}

FeatureCacheIdentity feature_cache_identity(std::string encoder, int encoder_size,
                                            const ImageTransform& transform,
                                            const std::vector<CacheImage>& images) {
  FeatureCacheIdentity id;
  id.encoder = std::move(encoder);
  id.image_size = transform.image_size;
  id.encoder_size = encoder_size;
  id.normalization = transform.normalization;
  id.image_ids.reserve(images.size());
  for (const CacheImage& image : images) id.image_ids.push_back(image.id);
  return id;
}

std::vector<std::string> FeatureCacheIdentity::differences(const FeatureCacheIdentity& requested) const {
  std::vector<std::string> out;
  if (encoder != requested.encoder)
    out.push_back(str("encoder: '", encoder, "' in the cache, '", requested.encoder, "' requested"));
  if (image_size != requested.image_size)
    out.push_back(str("image_size: ", image_size, " in the cache, ", requested.image_size, " requested"));
  if (encoder_size != requested.encoder_size)
    out.push_back(str("encoder_size: ", encoder_size, " in the cache, ", requested.encoder_size,
                      " requested"));
  if (normalization.mean != requested.normalization.mean)
    out.push_back(str("normalisation mean: ", quoted_floats(normalization.mean), " in the cache, ",
                      quoted_floats(requested.normalization.mean), " requested"));
  if (normalization.std != requested.normalization.std)
    out.push_back(str("normalisation std: ", quoted_floats(normalization.std), " in the cache, ",
                      quoted_floats(requested.normalization.std), " requested"));
  if (image_ids != requested.image_ids) {
    size_t i = 0;
    while (i < image_ids.size() && i < requested.image_ids.size() &&
           image_ids[i] == requested.image_ids[i])
      ++i;
    std::string first;
    if (i < image_ids.size() && i < requested.image_ids.size())
      first = str("; first difference at #", i, ": '", image_ids[i], "' in the cache, '",
                  requested.image_ids[i], "' requested");
    else
      first = str("; the first ", i, " agree");
    out.push_back(str("image list: ", image_ids.size(), " images in the cache, ",
                      requested.image_ids.size(), " requested", first));
  }
  return out;
}

FeatureCache FeatureCache::build(const fs::path& dir, const std::vector<CacheImage>& images,
                                 const ImageTransform& transform, const std::string& encoder,
                                 int encoder_size, const EncodeFn& encode,
                                 const FeatureCacheBuildOptions& options) {
  const std::string label = "feature cache " + dir.string();
  CAPTION_CHECK(!images.empty(), label, ": no images to cache");
  CAPTION_CHECK(!encoder.empty(), label, ": the encoder identity is empty (pass e.g. the "
                "encoder's name and a hash of its weights)");
  CAPTION_CHECK(encoder_size > 0, label, ": encoder_size ", encoder_size, " must be positive");
  CAPTION_CHECK(transform.image_size > 0, label, ": image_size ", transform.image_size,
                " must be positive");
  CAPTION_CHECK(options.images_per_shard > 0 && options.batch_size > 0 && options.workers >= 0,
                label, ": images_per_shard (", options.images_per_shard, ") and batch_size (",
                options.batch_size, ") must be positive and workers (", options.workers,
                ") not negative");
  CAPTION_CHECK(static_cast<bool>(encode), label, ": no encode function");
  {
    std::set<std::string_view> seen;
    for (const CacheImage& image : images)
      CAPTION_CHECK(seen.insert(image.id).second, label, ": image id '", image.id,
                    "' appears twice");
  }
  const FeatureCacheIdentity identity = feature_cache_identity(encoder, encoder_size, transform, images);

  std::error_code ec;
  if (fs::exists(dir, ec)) {
    if (options.existing == ExistingCache::Reuse) return open(dir, identity);
    CAPTION_CHECK(options.existing == ExistingCache::Replace, label,
                  ": the directory exists already (choose Reuse or Replace)");
  }
  const fs::path partial = dir.string() + ".partial-" + std::to_string(::getpid());
  fs::remove_all(partial, ec);
  fs::create_directories(partial, ec);
  CAPTION_CHECK(!ec, label, ": cannot create ", partial.string(), " (", ec.message(), ")");

  try {
    const int64_t n = static_cast<int64_t>(images.size());
    int64_t positions = -1;  // P, from the first call: S*S, or k*k distinct cells (header)
    int64_t dim = -1;        // D, from the first call
    const int64_t s = transform.image_size;
    json shards = json::array();
    const std::map<std::string, std::string> shard_metadata{
        {"format", std::string(kFeatureCacheFormat)}, {"encoder", encoder}};
    for (int64_t first = 0, shard = 0; first < n; first += options.images_per_shard, ++shard) {
      const int64_t count = std::min(options.images_per_shard, n - first);
      NamedTensors named;
      for (int64_t c = first; c < first + count; c += options.batch_size) {
        const int64_t b = std::min(options.batch_size, first + count - c);
        Tensor pixels = Tensor::empty({b, 3, s, s});  // [B, 3, H, W]
        float* dst = pixels.data<float>();
        parallel_for(b, std::max(options.workers, 1), [&](int64_t k) {
          const ChwImage chw = load_and_preprocess(images[c + k].path, transform);
          std::memcpy(dst + k * 3 * s * s, chw.data.data(), chw.data.size() * sizeof(float));
        });
        Tensor features = encode(pixels);  // [B, P, D]
        CAPTION_CHECK(features.defined() && features.dtype() == DType::F32 && features.dim() == 3 &&
                          features.size(0) == b &&
                          (positions < 0 ? valid_positions(features.size(1), encoder_size)
                                         : features.size(1) == positions) &&
                          features.size(2) > 0 && (dim < 0 || features.size(2) == dim),
                      label, ": the encoder returned ",
                      features.defined() ? features.describe() : std::string("nothing"),
                      " for ", b, " images; expected float32 [", b, ", P, D] with P = ",
                      positions < 0 ? str(encoder_size, "x", encoder_size,
                                          " (encoder_size squared) or k x k with k dividing ",
                                          encoder_size)
                                    : str(positions, " as before"),
                      dim < 0 ? std::string() : str(" and D = ", dim, " as before"));
        positions = features.size(1);
        dim = features.size(2);
        features = features.detach().to(Device::cpu()).contiguous();
        for (int64_t k = 0; k < b; ++k) named.emplace_back(images[c + k].id, features.select(0, k));
      }
      const std::string name = shard_name(static_cast<size_t>(shard));
      save_tensors((partial / name).string(), named, shard_metadata);
      shards.push_back({{"file", name}, {"first", first}, {"count", count}});
    }
    json index = identity_json(identity);
    index["format"] = std::string(kFeatureCacheFormat);
    index["positions"] = positions;
    index["dim"] = dim;
    index["shards"] = shards;
    write_file_atomic(partial / kIndexFile, index.dump(1));
    if (fs::exists(dir, ec)) fs::remove_all(dir, ec);  // ExistingCache::Replace
    CAPTION_CHECK(!ec, label, ": cannot remove the old cache (", ec.message(), ")");
    fs::rename(partial, dir, ec);
    CAPTION_CHECK(!ec, label, ": cannot move ", partial.string(), " into place (", ec.message(), ")");
  } catch (...) {
    std::error_code ignored;
    fs::remove_all(partial, ignored);
    throw;
  }
  return open(dir, identity);
}

FeatureCache FeatureCache::open(const fs::path& dir, const FeatureCacheIdentity& expected) {
  const std::string label = "feature cache " + dir.string();
  const fs::path index_path = dir / kIndexFile;
  std::error_code ec;
  CAPTION_CHECK(fs::is_directory(dir, ec), label, ": no such directory");
  const std::vector<std::uint8_t> bytes = read_file_bytes(index_path);

  FeatureCache cache;
  cache.dir_ = dir;
  json shards;
  try {
    const json index = json::parse(bytes.begin(), bytes.end());
    CAPTION_CHECK(index.is_object() && index.value("format", std::string()) == kFeatureCacheFormat,
                  index_path.string(), ": not a feature cache index (format '",
                  std::string(kFeatureCacheFormat), "' expected)");
    FeatureCacheIdentity& id = cache.identity_;
    id.encoder = index.at("encoder").get<std::string>();
    id.image_size = index.at("image_size").get<int>();
    id.encoder_size = index.at("encoder_size").get<int>();
    id.normalization.mean = index.at("mean").get<std::array<float, 3>>();
    id.normalization.std = index.at("std").get<std::array<float, 3>>();
    id.image_ids = index.at("images").get<std::vector<std::string>>();
    cache.positions_ = index.at("positions").get<int64_t>();
    cache.dim_ = index.at("dim").get<int64_t>();
    shards = index.at("shards");
  } catch (const json::exception& e) {
    throw Error(str(index_path.string(), ": damaged index (", e.what(), ")"));
  }

  const std::vector<std::string> diffs = cache.identity_.differences(expected);
  if (!diffs.empty()) {
    std::string joined;
    for (const std::string& d : diffs) joined += (joined.empty() ? "" : "; ") + d;
    throw Error(str(label, ": made for a different setup, refused (", joined,
                    "). Rebuild it (ExistingCache::Replace) or use another directory"));
  }
  CAPTION_CHECK(cache.positions_ > 0 && cache.dim_ > 0 &&
                    valid_positions(cache.positions_, cache.identity_.encoder_size),
                index_path.string(), ": inconsistent feature shape [", cache.positions_, ", ",
                cache.dim_, "] for encoder_size ", cache.identity_.encoder_size);

  const size_t n = cache.identity_.image_ids.size();
  cache.entries_.resize(n);
  size_t covered = 0;
  try {
    for (const json& shard : shards) {
      const std::string file = shard.at("file").get<std::string>();
      const size_t first = shard.at("first").get<size_t>();
      const size_t count = shard.at("count").get<size_t>();
      CAPTION_CHECK(first == covered && count > 0 && first + count <= n, index_path.string(),
                    ": shard ", file, " covers images [", first, ", ", first + count,
                    ") where [", covered, ", ...) of ", n, " was expected");
      CAPTION_CHECK(file.find('/') == std::string::npos, index_path.string(), ": shard name '",
                    file, "' is not a plain file name");
      SafetensorsReader reader = SafetensorsReader::open((dir / file).string());
      const auto& meta = reader.metadata();
      const auto enc = meta.find("encoder");
      CAPTION_CHECK(enc != meta.end() && enc->second == cache.identity_.encoder, reader.path(),
                    ": the shard was made by another encoder than its index names");
      for (size_t i = first; i < first + count; ++i) {
        const std::string& image_id = cache.identity_.image_ids[i];
        const TensorInfo& info = reader.at(image_id);
        const Shape want{cache.positions_, cache.dim_};
        CAPTION_CHECK(info.dtype == DType::F32 && info.shape == want,
                      reader.path(), ": tensor '", image_id, "' is ", dtype_name(info.dtype), " ",
                      shape_string(info.shape), ", expected F32 [", cache.positions_, ", ",
                      cache.dim_, "]");
        cache.entries_[i] = {cache.shards_.size(),
                             static_cast<size_t>(&info - reader.tensors().data())};
        cache.by_id_.emplace(image_id, static_cast<int64_t>(i));
      }
      cache.shards_.push_back(std::move(reader));
      covered = first + count;
    }
  } catch (const json::exception& e) {
    throw Error(str(index_path.string(), ": damaged shard list (", e.what(), ")"));
  }
  CAPTION_CHECK(covered == n, index_path.string(), ": the shards cover ", covered, " of ", n,
                " images");
  return cache;
}

std::optional<int64_t> FeatureCache::find(std::string_view image_id) const {
  const auto it = by_id_.find(image_id);
  if (it == by_id_.end()) return std::nullopt;
  return it->second;
}

void FeatureCache::read(int64_t index, std::span<float> out) const {
  CAPTION_CHECK(index >= 0 && index < size(), "feature cache ", dir_.string(), ": image index ",
                index, " is out of range [0, ", size(), ")");
  CAPTION_CHECK(static_cast<int64_t>(out.size()) == positions_ * dim_, "feature cache ",
                dir_.string(), ": output holds ", out.size(), " floats, features have ",
                positions_ * dim_);
  const Entry& e = entries_[static_cast<size_t>(index)];
  const SafetensorsReader& shard = shards_[e.shard];
  const std::span<const std::byte> bytes = shard.data(shard.tensors()[e.tensor]);
  std::memcpy(out.data(), bytes.data(), bytes.size());
}

Tensor FeatureCache::get(int64_t index) const {
  Tensor out = Tensor::empty({positions_, dim_});  // [P, D]
  read(index, {out.data<float>(), static_cast<size_t>(positions_ * dim_)});
  return out;
}

}  // namespace caption::data
