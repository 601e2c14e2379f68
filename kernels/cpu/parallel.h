// A split of independent work over the machine's cores for the CPU kernels whose own
// loops would otherwise run beside an idle core (the copies and transforms around
// OpenBLAS's products, which OpenBLAS parallelises itself).
#pragma once

#include <algorithm>
#include <cstdint>
#include <thread>
#include <vector>

namespace caption::kernels::cpu {

// Runs fn(begin, end) over [0, count) on up to as many threads as the machine has cores,
// when the work (elements touched) is large enough to repay a thread start (~20 us); small
// work and the double-precision gradient checks stay on the calling thread. The shares
// must be independent (each writes only its own outputs).
template <typename Fn>
void parallel_ranges(int64_t count, int64_t elements, Fn fn) {
  constexpr int64_t kMinElementsPerThread = int64_t{1} << 18;
  const int64_t cores = std::max<int64_t>(1, std::thread::hardware_concurrency());
  const int64_t threads =
      std::min({cores, count, std::max<int64_t>(1, elements / kMinElementsPerThread)});
  if (threads <= 1) {
    fn(int64_t{0}, count);
    return;
  }
  std::vector<std::thread> pool;
  pool.reserve(static_cast<size_t>(threads - 1));
  const int64_t per = (count + threads - 1) / threads;
  for (int64_t t = 1; t < threads; ++t) {
    const int64_t b = std::min(count, t * per), e = std::min(count, b + per);
    pool.emplace_back([=] { fn(b, e); });
  }
  fn(int64_t{0}, std::min(count, per));  // the calling thread takes the first share
  for (std::thread& th : pool) th.join();
}

}  // namespace caption::kernels::cpu
