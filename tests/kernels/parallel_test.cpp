// The CPU kernels' work split (kernels/cpu/parallel.h): every share runs exactly once,
// on more than one thread where the machine has the cores, from several calling threads
// at once (the pool serves one call; the others start their own threads), and from
// inside a share (a nested split) without waiting on itself.
#include <atomic>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "kernels/cpu/parallel.h"

namespace caption::kernels::cpu {
namespace {

TEST(Parallel, EverySharesRunsOnceAndOnAnotherThreadToo) {
  for (int round = 0; round < 200; ++round) {
    const int64_t parts = 1 + round % 4;  // more parts than workers: threads of its own
    std::vector<std::atomic<int>> runs(static_cast<size_t>(parts));
    std::mutex m;
    std::set<std::thread::id> ids;
    run_shares(parts, [&](int64_t k) {
      runs[static_cast<size_t>(k)].fetch_add(1);
      std::lock_guard<std::mutex> lock(m);
      ids.insert(std::this_thread::get_id());
    });
    for (int64_t k = 0; k < parts; ++k) ASSERT_EQ(runs[static_cast<size_t>(k)].load(), 1) << k;
    EXPECT_EQ(ids.size(), static_cast<size_t>(parts)) << "each share on its own thread";
    EXPECT_EQ(ids.count(std::this_thread::get_id()), 1u) << "share 0 on the caller";
  }
}

TEST(Parallel, RangesCoverEveryIndexOnce) {
  for (int64_t count : {1, 2, 3, 7, 1000}) {
    std::vector<std::atomic<int>> hits(static_cast<size_t>(count));
    // elements large enough to split over every core
    parallel_ranges(count, int64_t{1} << 24, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)].fetch_add(1);
    });
    for (int64_t i = 0; i < count; ++i) ASSERT_EQ(hits[static_cast<size_t>(i)].load(), 1) << count;
  }
}

TEST(Parallel, ConcurrentCallersAndNestedSplitsFinish) {
  std::atomic<int64_t> total{0};
  std::vector<std::thread> callers;
  for (int c = 0; c < 4; ++c)
    callers.emplace_back([&] {
      for (int round = 0; round < 100; ++round)
        run_shares(2, [&](int64_t) {
          run_shares(2, [&](int64_t) { total.fetch_add(1); });  // nested: the pool is taken
        });
    });
  for (std::thread& t : callers) t.join();
  EXPECT_EQ(total.load(), 4 * 100 * 2 * 2);
}

}  // namespace
}  // namespace caption::kernels::cpu
