// Uploads through pinned staging buffers: see staging.h.
#include "engine/staging.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <utility>

namespace caption {

StagingRing::StagingRing(StagingBacking backing, size_t capacity_bytes)
    : backing_(std::move(backing)), capacity_(capacity_bytes) {}

StagingRing::~StagingRing() {
  while (!buffers_.empty()) release(buffers_.size() - 1);
}

size_t StagingRing::rounded(size_t n) {
  constexpr size_t kMin = size_t{64} << 10, kMiB = size_t{1} << 20, kStep = size_t{2} << 20;
  if (n <= kMin) return kMin;
  if (n <= kMiB) return std::bit_ceil(n);
  return (n + kStep - 1) / kStep * kStep;
}

void StagingRing::release(size_t index) {
  Buffer& b = buffers_[index];
  if (b.last_use != 0) backing_.wait(b.event);  // its transfer may still read it
  backing_.destroy_event(b.event);
  backing_.free(b.data);
  stats_.pinned_bytes -= b.size;
  buffers_.erase(buffers_.begin() + static_cast<std::ptrdiff_t>(index));
  stats_.buffers = buffers_.size();
}

StagingRing::Buffer* StagingRing::find(size_t n) {
  // The smallest idle buffer that holds n bytes.
  Buffer* best = nullptr;
  for (Buffer& b : buffers_)
    if (b.size >= n && (best == nullptr || b.size < best->size) && idle(b)) best = &b;
  if (best != nullptr) return best;
  const size_t size = rounded(n);
  if (stats_.pinned_bytes + size > capacity_) {
    // The oldest busy buffer that holds n bytes, once its transfer is done.
    Buffer* oldest = nullptr;
    for (Buffer& b : buffers_)
      if (b.size >= n && (oldest == nullptr || b.last_use < oldest->last_use)) oldest = &b;
    if (oldest != nullptr) {
      backing_.wait(oldest->event);
      ++stats_.waits;
      return oldest;
    }
    // Every buffer is too small: free them, idle ones first, then the oldest busy ones.
    for (size_t i = buffers_.size(); i-- > 0 && stats_.pinned_bytes + size > capacity_;)
      if (idle(buffers_[i])) release(i);
    while (stats_.pinned_bytes + size > capacity_ && !buffers_.empty()) {
      size_t o = 0;
      for (size_t i = 1; i < buffers_.size(); ++i)
        if (buffers_[i].last_use < buffers_[o].last_use) o = i;
      ++stats_.waits;
      release(o);
    }
  }
  void* data = backing_.allocate(size);
  if (data == nullptr) return nullptr;
  buffers_.push_back(Buffer{data, size, backing_.make_event(), 0});
  ++stats_.allocations;
  stats_.pinned_bytes += size;
  stats_.buffers = buffers_.size();
  return &buffers_.back();
}

bool StagingRing::upload(void* dst, const void* src, size_t n) {
  std::lock_guard lock(mutex_);
  Buffer* b = n == 0 || n > capacity_ / 2 ? nullptr : find(n);
  if (b == nullptr) {
    ++stats_.refused;
    return false;
  }
  std::memcpy(b->data, src, n);
  backing_.transfer(dst, b->data, n);
  backing_.record(b->event);
  b->last_use = ++uses_;
  ++stats_.uploads;
  stats_.bytes += n;
  return true;
}

StagingStats StagingRing::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

}  // namespace caption
