// ReadAhead (pipeline/read_ahead.h): images in input order whatever the threads' timing,
// errors at their place, at most `window` images read ahead of the consumer, the caller
// reading for itself without threads, and a clean stop when the consumer leaves early.
#include "pipeline/read_ahead.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace caption::pipeline {
namespace {

std::vector<std::string> names(int n) {
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i) out.push_back(std::to_string(i));
  return out;
}

// Reading takes 0-3 ms, varying with the index, so that workers finish out of order.
int slow_read(const std::string& path) {
  const int i = std::stoi(path);
  std::this_thread::sleep_for(std::chrono::microseconds(1000 * ((i * 7) % 4)));
  return i * 10;
}

TEST(ReadAhead, HandsImagesOutInInputOrder) {
  for (int threads : {0, 1, 4})
    for (size_t window : {1u, 3u, 100u}) {
      ReadAhead<int> reader(names(40), slow_read, threads, window);
      EXPECT_EQ(reader.size(), 40u);
      for (int i = 0; i < 40; ++i) {
        ASSERT_FALSE(reader.done());
        const ReadAhead<int>::Item item = reader.next();
        EXPECT_EQ(item.index, static_cast<size_t>(i));
        ASSERT_TRUE(item.image.has_value()) << threads << " threads, window " << window;
        EXPECT_EQ(*item.image, i * 10);
        EXPECT_FALSE(item.error);
      }
      EXPECT_TRUE(reader.done());
    }
}

TEST(ReadAhead, ErrorsComeAtTheirPlace) {
  const auto read = [](const std::string& path) {
    const int i = slow_read(path) / 10;
    if (i % 5 == 2) throw std::runtime_error("cannot read " + path);
    return i;
  };
  for (int threads : {0, 3}) {
    ReadAhead<int> reader(names(23), read, threads, 4);
    for (int i = 0; i < 23; ++i) {
      const ReadAhead<int>::Item item = reader.next();
      ASSERT_EQ(item.index, static_cast<size_t>(i));
      if (i % 5 == 2) {
        EXPECT_FALSE(item.image.has_value());
        ASSERT_TRUE(item.error);
        try {
          std::rethrow_exception(item.error);
        } catch (const std::runtime_error& e) {
          EXPECT_EQ(std::string(e.what()), "cannot read " + std::to_string(i));
        }
      } else {
        ASSERT_TRUE(item.image.has_value());
        EXPECT_EQ(*item.image, i);
        EXPECT_FALSE(item.error);
      }
    }
    EXPECT_TRUE(reader.done());
  }
}

TEST(ReadAhead, ReadsAtMostTheWindowAheadOfASlowConsumer) {
  std::atomic<int> started{0}, taken{0}, worst{0};
  const auto read = [&](const std::string& path) {
    const int ahead = started.fetch_add(1) + 1 - taken.load();
    int w = worst.load();
    while (ahead > w && !worst.compare_exchange_weak(w, ahead)) {
    }
    return std::stoi(path);
  };
  const size_t window = 5;
  {
    ReadAhead<int> reader(names(60), read, 4, window);
    for (int i = 0; i < 60; ++i) {
      std::this_thread::sleep_for(std::chrono::microseconds(500));
      EXPECT_EQ(*reader.next().image, i);
      taken.fetch_add(1);
    }
  }
  EXPECT_EQ(started.load(), 60);
  // A read starts only while fewer than `window` images are read but not taken; the
  // counter `taken` may trail the reader's own by the one call in progress.
  EXPECT_LE(worst.load(), static_cast<int>(window) + 1);
  // And the workers did read ahead (a consumer reading everything itself would stay at 1).
  EXPECT_GE(worst.load(), 3);
}

TEST(ReadAhead, WithoutThreadsTheCallerReadsWhenItAsks) {
  std::vector<std::thread::id> readers;
  std::atomic<int> started{0};
  ReadAhead<int> reader(names(5), [&](const std::string& path) {
    readers.push_back(std::this_thread::get_id());
    started.fetch_add(1);
    return std::stoi(path);
  }, 0, 3);
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_EQ(started.load(), 0);  // nothing read before it is asked for
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(*reader.next().image, i);
    EXPECT_EQ(started.load(), i + 1);
  }
  for (const std::thread::id& id : readers) EXPECT_EQ(id, std::this_thread::get_id());
}

TEST(ReadAhead, StopsCleanlyWhenTheConsumerLeavesEarly) {
  std::atomic<int> started{0};
  const auto begin = std::chrono::steady_clock::now();
  {
    ReadAhead<int> reader(names(1000), [&](const std::string& path) {
      started.fetch_add(1);
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
      return std::stoi(path);
    }, 3, 6);
    EXPECT_EQ(*reader.next().image, 0);
    EXPECT_EQ(*reader.next().image, 1);
  }  // joins: at most the images being read are finished
  EXPECT_LE(started.load(), 2 + 6 + 1);
  EXPECT_LT(std::chrono::steady_clock::now() - begin, std::chrono::seconds(5));
}

}  // namespace
}  // namespace caption::pipeline
