// CachingAllocator and the host allocator. See allocator.h for the design.
#include "engine/allocator.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "engine/backend.h"
#include "engine/error.h"

namespace caption {

namespace {
std::atomic<bool> g_guard_mode{false};
std::atomic<uint64_t> g_guard_violations{0};
constexpr unsigned char kGuardPattern = 0xA5;
constexpr unsigned char kPoisonByte = 0xFF;  // 0xFFFFFFFF is a NaN in float32

size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }
}  // namespace

void set_guard_mode(bool enabled) { g_guard_mode = enabled; }
bool guard_mode() { return g_guard_mode; }
uint64_t guard_violations() { return g_guard_violations; }

CachingAllocator::CachingAllocator(BackingMemory backing, CachePolicy policy)
    : backing_(std::move(backing)), policy_(policy) {}

CachingAllocator::~CachingAllocator() {
  // Live blocks at exit belong to static tensors; the process is ending, so only the
  // cache is returned (freeing a CUDA block after the runtime shut down would fail).
  empty_cache();
}

void* CachingAllocator::allocate(size_t bytes) {
  CAPTION_ASSERT(bytes > 0, "zero-byte allocation");
  const bool guarded = g_guard_mode;
  const size_t size = round_up(bytes + (guarded ? kGuardBytes : 0), kRound);
  std::unique_lock lock(mutex_);
  ++stats_.allocations;
  void* ptr = nullptr;
  Block block{size, bytes, guarded, active_pool_};
  if (policy_ == CachePolicy::Cache) {
    // A pool's own blocks first; a block of the shared cache is free in stream order,
    // so it may join the pool.
    bool found = active_pool_ != 0 && take_best_fit(pools_[active_pool_], size, ptr, block);
    if (!found) found = take_best_fit(free_, size, ptr, block);
    if (found) stats_.bytes_cached -= block.size;
  }
  if (ptr == nullptr) {
    ptr = backing_.allocate(size);
    if (ptr == nullptr && !free_.empty()) {
      lock.unlock();
      empty_cache();
      lock.lock();
      ptr = backing_.allocate(size);
    }
    if (ptr == nullptr) {
      throw Error(str(backing_.name, ": out of memory allocating ", bytes, " bytes (",
                      stats_.bytes_in_use, " bytes in use, ", stats_.bytes_reserved,
                      " reserved)"));
    }
    ++stats_.backing_allocations;
    stats_.bytes_reserved += size;
  }
  live_.emplace(ptr, block);
  stats_.bytes_in_use += bytes;
  if (stats_.bytes_in_use > stats_.peak_bytes_in_use)
    stats_.peak_bytes_in_use = stats_.bytes_in_use;
  lock.unlock();
  if (guarded) {
    backing_.fill(ptr, kPoisonByte, bytes);
    backing_.fill(static_cast<char*>(ptr) + bytes, kGuardPattern, block.size - bytes);
  }
  return ptr;
}

// Best fit among cached blocks, accepting at most 25% waste (plus one rounding unit) so
// that a huge cached block is not tied up by a small request.
bool CachingAllocator::take_best_fit(FreeList& list, size_t size, void*& ptr, Block& block) {
  auto it = list.lower_bound(size);
  if (it == list.end() || it->first > size + size / 4 + kRound) return false;
  ptr = it->second.first;
  block.size = it->first;
  list.erase(it);
  return true;
}

uint64_t CachingAllocator::begin_pool() {
  std::lock_guard lock(mutex_);
  CAPTION_CHECK(active_pool_ == 0, backing_.name, ": a private memory pool is already active");
  active_pool_ = next_pool_++;
  pools_[active_pool_];
  return active_pool_;
}

void CachingAllocator::end_pool() {
  std::lock_guard lock(mutex_);
  active_pool_ = 0;
}

uint64_t CachingAllocator::active_pool() const {
  std::lock_guard lock(mutex_);
  return active_pool_;
}

void CachingAllocator::release_pool(uint64_t pool) {
  std::lock_guard lock(mutex_);
  auto it = pools_.find(pool);
  if (it == pools_.end()) return;
  for (auto& [size, entry] : it->second) {
    entry.second.pool = 0;
    free_.emplace(size, entry);
  }
  pools_.erase(it);
  if (active_pool_ == pool) active_pool_ = 0;
}

void CachingAllocator::check_guard(void* ptr, const Block& block) noexcept {
  const size_t n = block.size - block.requested;
  std::vector<unsigned char> guard(n);
  try {
    backing_.read(guard.data(), static_cast<char*>(ptr) + block.requested, n);
  } catch (...) {
    log_error(str(backing_.name, ": could not read a guard region"));
    return;
  }
  for (size_t i = 0; i < n; ++i) {
    if (guard[i] != kGuardPattern) {
      ++g_guard_violations;
      log_error(str(backing_.name, ": write past the end of a block of ", block.requested,
                    " bytes (guard byte ", i, " overwritten)"));
      return;
    }
  }
}

void CachingAllocator::deallocate(void* ptr) noexcept {
  if (ptr == nullptr) return;
  Block block{};
  {
    std::lock_guard lock(mutex_);
    auto it = live_.find(ptr);
    if (it == live_.end()) {
      log_error(str(backing_.name, ": free of a pointer this allocator does not own"));
      return;
    }
    block = it->second;
    live_.erase(it);
    stats_.bytes_in_use -= block.requested;
  }
  if (block.guarded) check_guard(ptr, block);
  std::lock_guard lock(mutex_);
  if (policy_ == CachePolicy::Cache) {
    auto pool = block.pool == 0 ? pools_.end() : pools_.find(block.pool);
    if (pool == pools_.end()) block.pool = 0;  // its pool was released: shared again
    (pool == pools_.end() ? free_ : pool->second).emplace(block.size, std::make_pair(ptr, block));
    stats_.bytes_cached += block.size;
  } else {
    backing_.free(ptr);
    ++stats_.backing_frees;
    stats_.bytes_reserved -= block.size;
  }
}

void CachingAllocator::empty_cache() noexcept {
  std::lock_guard lock(mutex_);
  // Only the shared cache: a private pool's free blocks are still a live graph's.
  for (auto& [size, entry] : free_) {
    backing_.free(entry.first);
    ++stats_.backing_frees;
    stats_.bytes_reserved -= size;
    stats_.bytes_cached -= size;
  }
  free_.clear();
}

AllocatorStats CachingAllocator::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

void CachingAllocator::reset_peak() {
  std::lock_guard lock(mutex_);
  stats_.peak_bytes_in_use = stats_.bytes_in_use;
}

namespace {
BackingMemory host_backing() {
  BackingMemory b;
  b.name = "host";
  b.allocate = [](size_t n) -> void* { return std::aligned_alloc(64, round_up(n, 64)); };
  b.free = [](void* p) { std::free(p); };
  b.fill = [](void* p, unsigned char v, size_t n) { std::memset(p, v, n); };
  b.read = [](void* dst, const void* src, size_t n) { std::memcpy(dst, src, n); };
  return b;
}
}  // namespace

CachingAllocator& allocator_for(Device device) {
  if (device.is_cpu()) {
    // Leaked on purpose: tensors with static lifetime may free into it at exit.
    static CachingAllocator* host = new CachingAllocator(host_backing(), CachePolicy::Cache);
    return *host;
  }
  static std::mutex mutex;
  static std::vector<std::unique_ptr<CachingAllocator>>* devices =
      new std::vector<std::unique_ptr<CachingAllocator>>();
  std::lock_guard lock(mutex);
  CAPTION_CHECK(device.index >= 0 && device.index < cuda_device_count(), "device ",
                device.to_string(), " is not available (", cuda_probe_message(), ")");
  if (devices->size() <= static_cast<size_t>(device.index)) devices->resize(device.index + 1);
  auto& slot = (*devices)[device.index];
  if (!slot) slot = std::make_unique<CachingAllocator>(cuda_backing_memory(device.index),
                                                       CachePolicy::Cache);
  return *slot;
}

}  // namespace caption
