// Memory: one allocator per device, all built on CachingAllocator.
//
// - Host memory is 64-byte aligned (AVX-512 loads, cache lines).
// - Both host and device memory are cached: freed blocks go to size-keyed free lists
//   and are handed out again, so a steady training step makes no cudaMalloc (tested by
//   counting real allocations in the statistics) and, on the host, large activations
//   are not page-faulted in afresh at every forward pass. The caching logic is the same class on both sides,
//   which is how the CPU-only test suite checks it (tests/engine/allocator_test.cpp).
// - Guard mode (tests): every block gets a guard region after its end, filled with a
//   pattern checked when the block is freed, and new blocks are filled with 0xFF bytes
//   (a NaN in float32/float64), so a kernel that leaves an output element unwritten or
//   writes past its end is caught.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>

#include "engine/device.h"

namespace caption {

struct AllocatorStats {
  size_t bytes_in_use = 0;       // requested bytes of live blocks
  size_t peak_bytes_in_use = 0;  // high-water mark of bytes_in_use
  size_t bytes_reserved = 0;     // bytes obtained from the backing allocator, live or cached
  size_t bytes_cached = 0;       // bytes of free blocks kept for reuse
  uint64_t allocations = 0;      // calls to allocate()
  uint64_t backing_allocations = 0;  // real allocations (cudaMalloc, aligned_alloc)
  uint64_t backing_frees = 0;
};

// The raw memory operations of one device; CachingAllocator adds caching, statistics
// and guards on top of them.
struct BackingMemory {
  std::string name;                                   // "host", "cuda:0"
  std::function<void*(size_t)> allocate;              // returns nullptr when out of memory
  std::function<void(void*)> free;
  std::function<void(void*, unsigned char, size_t)> fill;            // memset
  std::function<void(void* dst_host, const void* src, size_t)> read;  // copy to host
};

enum class CachePolicy { Cache, NoCache };

class CachingAllocator {
 public:
  CachingAllocator(BackingMemory backing, CachePolicy policy);
  ~CachingAllocator();
  CachingAllocator(const CachingAllocator&) = delete;
  CachingAllocator& operator=(const CachingAllocator&) = delete;

  // Returns a block of at least `bytes` (nonzero) bytes, 256-byte aligned on devices
  // and 64-byte aligned on the host. Throws caption::Error when memory is exhausted,
  // after returning the cache to the backing allocator once and retrying.
  void* allocate(size_t bytes);
  void deallocate(void* ptr) noexcept;
  // Returns every cached block to the backing allocator.
  void empty_cache() noexcept;
  AllocatorStats stats() const;
  void reset_peak();

  // Private pools, for CUDA graphs. While a pool is active, every allocation is made
  // for it (from its own free blocks first, then from the shared cache or the backing
  // allocator), and a block made for a pool returns to that pool when freed, never to
  // the shared cache: a captured graph keeps using the addresses of blocks its capture
  // freed, so no work outside the graph may be handed them while the graph lives.
  // release_pool() (when the graph is destroyed) returns the pool's free blocks to the
  // shared cache, and its live blocks go there when they are freed. Pools are numbered
  // from 1; at most one is active at a time.
  uint64_t begin_pool();
  void end_pool();
  void release_pool(uint64_t pool);
  uint64_t active_pool() const;

  // Sizes are rounded up to this granularity, so that blocks of similar requests are
  // interchangeable in the cache.
  static constexpr size_t kRound = 512;
  static constexpr size_t kGuardBytes = 256;

 private:
  struct Block {
    size_t size;       // rounded size, the cache key
    size_t requested;  // what the caller asked for
    bool guarded;
    uint64_t pool = 0;  // the private pool it belongs to; 0: the shared cache
  };
  void check_guard(void* ptr, const Block& block) noexcept;

  BackingMemory backing_;
  CachePolicy policy_;
  mutable std::mutex mutex_;
  std::unordered_map<void*, Block> live_;
  using FreeList = std::multimap<size_t, std::pair<void*, Block>>;  // rounded size -> block
  static bool take_best_fit(FreeList& list, size_t size, void*& ptr, Block& block);
  FreeList free_;
  std::map<uint64_t, FreeList> pools_;  // live private pools and their free blocks
  uint64_t active_pool_ = 0, next_pool_ = 1;
  AllocatorStats stats_;
};

// The allocator of a device (created on first use, lives until exit).
CachingAllocator& allocator_for(Device device);

// Guard mode, process-wide (for tests). Blocks remember whether they were allocated
// with a guard, so switching modes while blocks are live is safe.
void set_guard_mode(bool enabled);
bool guard_mode();
// Number of guard regions found overwritten since the start of the process.
uint64_t guard_violations();

}  // namespace caption
