// The Captioner (the library's entry point, and the future service's) on a CUDA device:
// its captions match the CPU's, and several threads calling one Captioner get the results
// of calls made alone, while the model's recorded graphs (the encoder's passes, the
// decoding steps) are shared between them. Skipped without a GPU;
// CAPTION_REQUIRE_GPU=1 turns the skip into a failure.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "pipeline/captioner.h"
#include "tests/harness/gpu.h"
#include "tests/harness/scratch.h"
#include "tests/pipeline/concurrent_captioning.h"
#include "tests/pipeline/tiny_checkpoint.h"

namespace caption::pipeline {
namespace {

namespace fs = std::filesystem;

struct Inputs {
  std::string checkpoint;
  std::vector<std::string> images;
};

Inputs write_inputs() {
  const fs::path dir = testing::scratch_dir("pipeline_cuda_captioner");
  Inputs in;
  in.checkpoint = testing::write_tiny_checkpoint(dir);
  for (int i = 0; i < 5; ++i)
    in.images.push_back(testing::write_test_picture(dir, "image" + std::to_string(i) + ".png", 30 + 7 * i,
                                                    45 - 3 * i, i % 4));
  return in;
}

TEST(CudaCaptioner, CaptionsAsTheCpuDoes) {
  CAPTION_REQUIRE_CUDA_OR_SKIP();
  const Inputs in = write_inputs();
  const Captioner cpu(in.checkpoint, Device::cpu());
  Captioner gpu(in.checkpoint, Device::cuda(0));
  gpu.set_batch_size(3);
  size_t words = 0;
  for (int width : {1, 2}) {
    nn::DecodeOptions options = cpu.default_options();
    options.beam = width;
    const std::vector<CaptionResult> want = cpu.caption(in.images, options);
    const std::vector<CaptionResult> got = gpu.caption(in.images, options);
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i) {
      SCOPED_TRACE(in.images[i] + " beam " + std::to_string(width));
      EXPECT_EQ(got[i].words, want[i].words);
      ASSERT_EQ(got[i].log_probs.size(), want[i].log_probs.size());
      for (size_t w = 0; w < got[i].log_probs.size(); ++w) EXPECT_NEAR(got[i].log_probs[w], want[i].log_probs[w], 1e-4);
      ASSERT_EQ(got[i].attention.size(), want[i].attention.size());
      for (size_t w = 0; w < got[i].attention.size(); ++w)
        for (size_t p = 0; p < got[i].attention[w].size(); ++p)
          EXPECT_NEAR(got[i].attention[w][p], want[i].attention[w][p], 1e-4);
      EXPECT_NEAR(got[i].score, want[i].score, 1e-3);
      words += got[i].words.size();
    }
  }
  EXPECT_GT(words, 0u) << "no words decoded: the comparison would be empty";
}

// Without the Captioner's lock around the model, two threads would replay one recorded
// step graph over each other's inputs (and capture into one stream at once).
TEST(CudaCaptioner, ConcurrentCallsGiveTheResultsOfCallsAlone) {
  CAPTION_REQUIRE_CUDA_OR_SKIP();
  const Inputs in = write_inputs();
  Captioner alone(in.checkpoint, Device::cuda(0)), shared(in.checkpoint, Device::cuda(0));
  alone.set_batch_size(2);
  shared.set_batch_size(2);
  testing::expect_concurrent_calls_match(alone, shared, in.images, 4, 6);
}

}  // namespace
}  // namespace caption::pipeline
