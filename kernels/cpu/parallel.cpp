// The worker pool behind run_shares (parallel.h).
#include "kernels/cpu/parallel.h"

#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

namespace caption::kernels::cpu {

namespace {

class Pool {
 public:
  Pool() {
    const int64_t workers = parallel_cores() - 1;
    for (int64_t k = 1; k <= workers; ++k) threads_.emplace_back([this, k] { work(k); });
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> lock(m_);
      stop_ = true;
    }
    wake_.notify_all();
    for (std::thread& t : threads_) t.join();
  }
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  // Runs the shares; false (nothing run) when the pool is taken or too small.
  bool run(int64_t parts, const std::function<void(int64_t)>& share) {
    if (parts - 1 > static_cast<int64_t>(threads_.size())) return false;
    std::unique_lock<std::mutex> taken(busy_, std::try_to_lock);
    if (!taken.owns_lock()) return false;
    {
      std::lock_guard<std::mutex> lock(m_);
      share_ = &share;
      parts_ = parts;
      pending_ = parts - 1;
      ++generation_;
    }
    wake_.notify_all();
    share(0);
    std::unique_lock<std::mutex> lock(m_);
    done_.wait(lock, [&] { return pending_ == 0; });
    share_ = nullptr;
    return true;
  }

 private:
  void work(int64_t k) {
    uint64_t seen = 0;
    std::unique_lock<std::mutex> lock(m_);
    for (;;) {
      wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      if (k >= parts_) continue;
      const std::function<void(int64_t)>* share = share_;
      lock.unlock();
      (*share)(k);
      lock.lock();
      if (--pending_ == 0) done_.notify_one();
    }
  }

  std::mutex busy_;  // held by the call being run
  std::mutex m_;     // guards what follows
  std::condition_variable wake_, done_;
  const std::function<void(int64_t)>* share_ = nullptr;
  int64_t parts_ = 0, pending_ = 0;
  uint64_t generation_ = 0;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace

int64_t parallel_cores() {
  static const int64_t cores = std::max<int64_t>(1, std::thread::hardware_concurrency());
  return cores;
}

void run_shares(int64_t parts, const std::function<void(int64_t)>& share) {
  if (parts <= 1) {
    if (parts == 1) share(0);
    return;
  }
  static Pool pool;
  if (pool.run(parts, share)) return;
  std::vector<std::thread> threads;
  threads.reserve(static_cast<size_t>(parts - 1));
  for (int64_t k = 1; k < parts; ++k) threads.emplace_back([&share, k] { share(k); });
  share(0);
  for (std::thread& t : threads) t.join();
}

}  // namespace caption::kernels::cpu
