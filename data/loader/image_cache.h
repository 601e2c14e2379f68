// An in-memory cache of decoded and resized images (8-bit RGB at image_size), so that a
// small data set is not decoded again every epoch. 8-bit pixels take a quarter of the
// memory of the normalised floats, and normalising is cheap next to decoding.
//
// Choices:
// - Capped by bytes. Once full it stops admitting images instead of evicting: the
//   loader visits images in a new random order each epoch, so any eviction policy would
//   mostly throw away what it is about to need; keeping a fixed first-come subset gives
//   a steady hit rate of about capacity / data set size.
// - What is cached is exactly what a decode would produce, so batches are identical
//   with and without the cache (the loader's tests check it).
// - Thread-safe: the loader's workers look up and insert concurrently.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "data/image/image.h"

namespace caption::data {

class ImageCache {
 public:
  // `slots`: the number of images (keys are 0 .. slots-1); `capacity_bytes`: the most
  // pixel bytes kept.
  ImageCache(size_t slots, size_t capacity_bytes);

  // The cached image of `key`, or null.
  std::shared_ptr<const RgbImage> find(size_t key) const;
  // Keeps `image` under `key` when it fits (and `key` is not cached yet).
  void insert(size_t key, std::shared_ptr<const RgbImage> image);

  size_t bytes() const;
  size_t capacity_bytes() const { return capacity_bytes_; }
  size_t images() const;
  uint64_t hits() const { return hits_.load(std::memory_order_relaxed); }
  uint64_t misses() const { return misses_.load(std::memory_order_relaxed); }

 private:
  mutable std::mutex mutex_;
  std::vector<std::shared_ptr<const RgbImage>> slots_;
  size_t capacity_bytes_ = 0;
  size_t bytes_ = 0;
  size_t images_ = 0;
  mutable std::atomic<uint64_t> hits_{0};
  mutable std::atomic<uint64_t> misses_{0};
};

}  // namespace caption::data
