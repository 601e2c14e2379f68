// One Captioner called from several threads at once (pipeline/captioner.h, "Threads"):
// each thread captions the images a few times through the three call forms (one image,
// the list, caption_each), greedy and beam 2 by turns, and every result must equal the
// same call made alone on `alone`, another Captioner of the same checkpoint, device and
// batch size, bit for bit. `shared` has run nothing before, so on a GPU its graphs are
// recorded while the threads run.
#pragma once

#include <gtest/gtest.h>

#include <exception>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "pipeline/captioner.h"

namespace caption::testing {

inline bool same_result(const pipeline::CaptionResult& a, const pipeline::CaptionResult& b) {
  return a.image_path == b.image_path && a.words == b.words && a.log_probs == b.log_probs &&
         a.attention == b.attention && a.score == b.score && a.finished == b.finished;
}

inline void expect_concurrent_calls_match(const pipeline::Captioner& alone, const pipeline::Captioner& c,
                                          const std::vector<std::string>& images, int threads, int rounds) {
  ASSERT_EQ(alone.batch_size(), c.batch_size());
  std::vector<nn::DecodeOptions> options(2, c.default_options());
  options[1].beam = 2;
  // Alone first: per width, each image by itself and the whole list.
  std::vector<std::vector<pipeline::CaptionResult>> single(2), listed(2);
  for (int w = 0; w < 2; ++w) {
    for (const std::string& image : images) single[w].push_back(alone.caption(image, options[w]));
    listed[w] = alone.caption(images, options[w]);
  }
  size_t words = 0;
  for (const pipeline::CaptionResult& r : single[0]) words += r.words.size();
  ASSERT_GT(words, 0u) << "no words decoded: the comparison would be empty";

  std::mutex mutex;
  std::vector<std::string> failures;
  auto fail = [&](const std::string& what) {
    const std::lock_guard lock(mutex);
    failures.push_back(what);
  };
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      try {
        for (int round = 0; round < rounds; ++round) {
          const int w = (t + round) % 2;
          const std::string where = "thread " + std::to_string(t) + " round " + std::to_string(round);
          switch ((t + round) % 3) {
            case 0:
              for (size_t i = 0; i < images.size(); ++i)
                if (!same_result(c.caption(images[i], options[w]), single[w][i]))
                  fail(where + ": caption(" + images[i] + ") differs");
              break;
            case 1: {
              const std::vector<pipeline::CaptionResult> got = c.caption(images, options[w]);
              for (size_t i = 0; i < images.size(); ++i)
                if (i >= got.size() || !same_result(got[i], listed[w][i])) fail(where + ": the list form differs");
              break;
            }
            default: {
              std::vector<pipeline::CaptionResult> got;
              c.caption_each(
                  images, options[w], [&](const pipeline::CaptionResult& r, const pipeline::PreparedImage&) {
                    got.push_back(r);
                  },
                  [&](const std::string& path, const Error& e) { fail(where + ": " + path + ": " + e.what()); });
              for (size_t i = 0; i < images.size(); ++i)
                if (i >= got.size() || !same_result(got[i], listed[w][i])) fail(where + ": caption_each differs");
            }
          }
        }
      } catch (const std::exception& e) {
        fail("thread " + std::to_string(t) + " threw: " + e.what());
      }
    });
  for (std::thread& thread : pool) thread.join();
  EXPECT_TRUE(failures.empty()) << failures.size() << " failures, the first: " << failures.front();
}

}  // namespace caption::testing
