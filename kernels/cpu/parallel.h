// A split of independent work over the machine's cores for the CPU kernels whose own
// loops would otherwise run beside an idle core (the copies, transforms and epilogues
// around OpenBLAS's products, which OpenBLAS parallelises itself).
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>

namespace caption::kernels::cpu {

// Runs share(k) for k in [0, parts): share 0 on the calling thread, the others on a pool
// of threads kept for the process (started at the first call, one fewer than the cores),
// and returns when all have run. A thread start costs ~20-50 us and faults in a new stack;
// a pool's wake-up costs a few. When the pool is busy (another thread's call, or a share
// that itself splits its work) the shares run on threads started for this call instead.
void run_shares(int64_t parts, const std::function<void(int64_t)>& share);

// Cores the shares may use (the machine's, at least 1).
int64_t parallel_cores();

// Runs fn(begin, end) over [0, count) on up to as many threads as the machine has cores,
// when the work (elements touched) is large enough to repay the hand-off; small work and
// the double-precision gradient checks stay on the calling thread. The shares must be
// independent (each writes only its own outputs).
template <typename Fn>
void parallel_ranges(int64_t count, int64_t elements, Fn fn) {
  constexpr int64_t kMinElementsPerThread = int64_t{1} << 18;
  const int64_t threads = std::min(
      {parallel_cores(), count, std::max<int64_t>(1, elements / kMinElementsPerThread)});
  if (threads <= 1) {
    fn(int64_t{0}, count);
    return;
  }
  const int64_t per = (count + threads - 1) / threads;
  run_shares(threads, [&](int64_t t) {
    const int64_t b = std::min(count, t * per), e = std::min(count, b + per);
    if (b < e) fn(b, e);
  });
}

}  // namespace caption::kernels::cpu
