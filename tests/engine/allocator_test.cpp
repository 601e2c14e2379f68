// The caching allocator, checked on a counting host backing (the CUDA allocator is the
// same class over cudaMalloc): reuse without new backing allocations, statistics, the
// cache limit, guard regions and poisoning.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>

#include "engine/engine.h"

namespace caption {
namespace {

struct Counting {
  int allocs = 0, frees = 0;
  BackingMemory backing() {
    BackingMemory b;
    b.name = "counting";
    b.allocate = [this](size_t n) -> void* { ++allocs; return std::aligned_alloc(256, (n + 255) / 256 * 256); };
    b.free = [this](void* p) { ++frees; std::free(p); };
    b.fill = [](void* p, unsigned char v, size_t n) { std::memset(p, v, n); };
    b.read = [](void* d, const void* s, size_t n) { std::memcpy(d, s, n); };
    return b;
  }
};

TEST(CachingAllocator, SteadyStateMakesNoBackingAllocations) {
  Counting c;
  CachingAllocator a(c.backing(), CachePolicy::Cache);
  // A "training step" that allocates the same sizes each time.
  auto step = [&] {
    void* x = a.allocate(1000);
    void* y = a.allocate(4096);
    void* z = a.allocate(1 << 20);
    a.deallocate(y);
    void* w = a.allocate(4000);  // fits y's cached block
    a.deallocate(x);
    a.deallocate(z);
    a.deallocate(w);
  };
  step();
  const int after_first = c.allocs;
  for (int i = 0; i < 10; ++i) step();
  EXPECT_EQ(c.allocs, after_first);
  const AllocatorStats s = a.stats();
  EXPECT_EQ(s.backing_allocations, static_cast<uint64_t>(after_first));
  EXPECT_EQ(s.allocations, 44u);
  EXPECT_EQ(s.bytes_in_use, 0u);
  EXPECT_GE(s.peak_bytes_in_use, 1000u + 4096u + (1u << 20));
  EXPECT_EQ(s.bytes_cached, s.bytes_reserved);
  a.empty_cache();
  EXPECT_EQ(c.frees, c.allocs);
  EXPECT_EQ(a.stats().bytes_reserved, 0u);
}

TEST(CachingAllocator, DoesNotTieUpAHugeBlockForASmallRequest) {
  Counting c;
  CachingAllocator a(c.backing(), CachePolicy::Cache);
  a.deallocate(a.allocate(10 << 20));
  void* small = a.allocate(1000);
  EXPECT_EQ(c.allocs, 2);  // the 10 MiB block stayed cached
  a.deallocate(small);
}

TEST(CachingAllocator, NoCachePolicyReturnsMemoryAtOnce) {
  Counting c;
  CachingAllocator a(c.backing(), CachePolicy::NoCache);
  a.deallocate(a.allocate(100));
  a.deallocate(a.allocate(100));
  EXPECT_EQ(c.allocs, 2);
  EXPECT_EQ(c.frees, 2);
}

TEST(CachingAllocator, OutOfMemoryIsAClearError) {
  BackingMemory b;
  b.name = "tiny";
  b.allocate = [](size_t) -> void* { return nullptr; };
  b.free = [](void*) {};
  b.fill = [](void*, unsigned char, size_t) {};
  b.read = [](void*, const void*, size_t) {};
  CachingAllocator a(b, CachePolicy::Cache);
  try {
    a.allocate(123);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tiny: out of memory allocating 123 bytes"), std::string::npos);
  }
}

// Private pools (CUDA graphs): a block made while a pool is active returns to that pool
// and is never handed to work outside it, even after the pool stops being active, until
// the pool is released; blocks of the shared cache may join a pool.
TEST(CachingAllocator, PrivatePoolsKeepTheirBlocksUntilReleased) {
  Counting c;
  CachingAllocator a(c.backing(), CachePolicy::Cache);
  void* shared = a.allocate(4096);
  a.deallocate(shared);  // cached, shared
  const uint64_t pool = a.begin_pool();
  EXPECT_EQ(a.active_pool(), pool);
  EXPECT_THROW(a.begin_pool(), Error);  // one active pool at a time
  void* joined = a.allocate(4000);      // the free shared block joins the pool
  EXPECT_EQ(joined, shared);
  void* inside = a.allocate(1 << 16);
  a.deallocate(inside);                     // freed during the "capture": back to the pool
  void* again = a.allocate(1 << 16);        // reused inside the pool
  EXPECT_EQ(again, inside);
  a.deallocate(again);
  a.end_pool();
  EXPECT_EQ(a.active_pool(), 0u);
  // Outside the pool, a request of the same size must not get the pool's free block.
  void* outside = a.allocate(1 << 16);
  EXPECT_NE(outside, inside);
  a.deallocate(outside);
  a.deallocate(joined);  // a live pool block freed after the capture: back to the pool
  void* other = a.allocate(4096);
  EXPECT_NE(other, joined);
  a.deallocate(other);
  // empty_cache() returns the shared cache only.
  const int frees_before = c.frees;
  a.empty_cache();
  EXPECT_EQ(c.frees, frees_before + 2);  // `outside` and `other`
  // Released, the pool's blocks are shared again.
  a.release_pool(pool);
  void* reused = a.allocate(1 << 16);
  EXPECT_EQ(reused, inside);
  a.deallocate(reused);
  // A pool block still live at release goes to the shared cache when freed.
  const uint64_t second = a.begin_pool();
  void* held = a.allocate(2048);
  a.end_pool();
  a.release_pool(second);
  a.deallocate(held);
  void* after = a.allocate(2048);
  EXPECT_EQ(after, held);
  a.deallocate(after);
  const AllocatorStats st = a.stats();
  EXPECT_EQ(st.bytes_in_use, 0u);
}

TEST(GuardMode, PoisonsNewBlocksAndCatchesOverruns) {
  Counting c;
  CachingAllocator a(c.backing(), CachePolicy::Cache);
  set_guard_mode(true);
  float* p = static_cast<float*>(a.allocate(5 * sizeof(float)));
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(std::isnan(p[i]));
  const uint64_t before = guard_violations();
  a.deallocate(p);
  EXPECT_EQ(guard_violations(), before);
  float* q = static_cast<float*>(a.allocate(5 * sizeof(float)));
  q[5] = 1.0f;  // one element past the end
  a.deallocate(q);
  set_guard_mode(false);
  EXPECT_EQ(guard_violations(), before + 1);
}

TEST(HostAllocator, TensorsReturnTheirMemory) {
  CachingAllocator& host = allocator_for(Device::cpu());
  const size_t before = host.stats().bytes_in_use;
  {
    Tensor t = Tensor::zeros({1000});
    Tensor v = t.reshape({10, 100});  // a view holds the same storage
    EXPECT_EQ(host.stats().bytes_in_use, before + 4000);
  }
  EXPECT_EQ(host.stats().bytes_in_use, before);
}

}  // namespace
}  // namespace caption
