// The loader's decoded-image cache (see image_cache.h). One mutex: a lookup is a vector
// index under the lock, negligible next to normalising the image it returns.
#include "data/loader/image_cache.h"

#include "engine/error.h"

namespace caption::data {

ImageCache::ImageCache(size_t slots, size_t capacity_bytes)
    : slots_(slots), capacity_bytes_(capacity_bytes) {}

std::shared_ptr<const RgbImage> ImageCache::find(size_t key) const {
  std::shared_ptr<const RgbImage> found;
  {
    std::lock_guard lock(mutex_);
    CAPTION_ASSERT(key < slots_.size(), "image cache key ", key, " of ", slots_.size());
    found = slots_[key];
  }
  (found ? hits_ : misses_).fetch_add(1, std::memory_order_relaxed);
  return found;
}

void ImageCache::insert(size_t key, std::shared_ptr<const RgbImage> image) {
  if (!image) return;
  const size_t size = image->pixels.size();
  std::lock_guard lock(mutex_);
  CAPTION_ASSERT(key < slots_.size(), "image cache key ", key, " of ", slots_.size());
  if (slots_[key] || bytes_ + size > capacity_bytes_) return;
  slots_[key] = std::move(image);
  bytes_ += size;
  ++images_;
}

size_t ImageCache::bytes() const {
  std::lock_guard lock(mutex_);
  return bytes_;
}

size_t ImageCache::images() const {
  std::lock_guard lock(mutex_);
  return images_;
}

}  // namespace caption::data
