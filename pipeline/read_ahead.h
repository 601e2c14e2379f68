// Reading images ahead of the captioner: worker threads decode and preprocess the next
// images while the device (or the CPU's BLAS threads) captions the current batch.
//
// Why: a `caption` run over a folder used to read each batch's images one after another on
// the thread that then encodes and decodes them. A JPEG of a few hundred pixels a side
// takes milliseconds to decode and resize, so on a GPU, which captions a batch of 16 in a
// few milliseconds, reading was nearly all of the time, and on a CPU it did not overlap
// with the model's work.
//
// Choices:
// - Order. next() hands the images out in input order, each with the error its reading
//   threw if it failed, so callers report results and errors exactly as a serial loop would.
// - Bounded. At most `window` images are read but not yet taken; the workers wait for the
//   consumer beyond that, so memory does not grow with the input list.
// - No idle consumer. When the image next() needs has not been claimed by a worker yet, the
//   caller reads it itself instead of waiting. With 0 threads everything is read by the
//   caller, in order, when it asks (the serial behaviour).
// - Destruction stops the workers and waits for the images they are reading (one each),
//   also when the consumer leaves early (an exception in a result callback).
#pragma once

#include <condition_variable>
#include <cstddef>
#include <exception>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace caption::pipeline {

template <typename Image>
class ReadAhead {
 public:
  using Read = std::function<Image(const std::string& path)>;
  struct Item {
    size_t index = 0;             // position in the input list
    std::optional<Image> image;   // empty when reading failed
    std::exception_ptr error;     // what reading threw, when it failed
  };

  ReadAhead(std::vector<std::string> paths, Read read, int threads, size_t window)
      : paths_(std::move(paths)), read_(std::move(read)), window_(window < 1 ? 1 : window), slots_(paths_.size()) {
    const int n = threads < 0 ? 0 : threads;
    workers_.reserve(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) workers_.emplace_back([this] { work(); });
  }
  ~ReadAhead() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    work_cv_.notify_all();
    for (std::thread& t : workers_) t.join();
  }
  ReadAhead(const ReadAhead&) = delete;
  ReadAhead& operator=(const ReadAhead&) = delete;

  size_t size() const { return paths_.size(); }
  bool done() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return taken_ == paths_.size();
  }

  // The next image in input order (precondition: !done()).
  Item next() {
    std::unique_lock<std::mutex> lock(mutex_);
    const size_t index = taken_;
    if (claimed_ == index) {
      // Nobody reads it yet: read it here rather than wait for a worker to get to it.
      ++claimed_;
      lock.unlock();
      Slot slot = read_one(index);
      lock.lock();
      slots_[index] = std::move(slot);
    } else {
      ready_cv_.wait(lock, [&] { return slots_[index].ready; });
    }
    Item item;
    item.index = index;
    item.image = std::move(slots_[index].image);
    item.error = slots_[index].error;
    slots_[index] = Slot{};
    ++taken_;
    lock.unlock();
    work_cv_.notify_one();  // the window moved
    return item;
  }

 private:
  struct Slot {
    bool ready = false;
    std::optional<Image> image;
    std::exception_ptr error;
  };

  Slot read_one(size_t index) const {
    Slot slot;
    try {
      slot.image.emplace(read_(paths_[index]));
    } catch (...) {
      slot.error = std::current_exception();
    }
    slot.ready = true;
    return slot;
  }

  void work() {
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      work_cv_.wait(lock, [&] { return stop_ || (claimed_ < paths_.size() && claimed_ < taken_ + window_); });
      if (stop_) return;
      const size_t index = claimed_++;
      lock.unlock();
      Slot slot = read_one(index);
      lock.lock();
      slots_[index] = std::move(slot);
      ready_cv_.notify_all();
    }
  }

  const std::vector<std::string> paths_;
  const Read read_;
  const size_t window_;
  mutable std::mutex mutex_;
  std::condition_variable work_cv_, ready_cv_;
  std::vector<Slot> slots_;
  size_t claimed_ = 0;  // images [0, claimed_) are read or being read
  size_t taken_ = 0;    // images [0, taken_) were handed out
  bool stop_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace caption::pipeline
