// caption-train's loop on a device (pipeline/trainer.cpp): with full teacher forcing it
// trains the decoder through nn::TrainStep, whose steps are recorded as CUDA graphs (with
// a fine-tuned encoder, its passes run eagerly around the replays). Fitting with graphs on and with graphs off (the same padded steps run
// eagerly) must give the same batch losses and the same weights, bit for bit, over two
// epochs with dropout, clipping, a one-cycle schedule and captions of several lengths
// (several recorded shapes). Skipped without a
// GPU; CAPTION_REQUIRE_GPU=1 turns the skip into a failure.
#include <gtest/gtest.h>

#include <cmath>
#include <regex>
#include <sstream>

#include "engine/graph.h"
#include "pipeline/trainer.h"
#include "tests/harness/gpu.h"
#include "tests/pipeline/tiny_set.h"

namespace caption::pipeline {
namespace {

using testing::tiny_options;

struct Fit {
  std::vector<EpochRecord> history;
  std::vector<double> batch_losses;
  std::vector<std::vector<float>> weights;
  std::string log;
};

Fit fit(const std::string& run, bool graphs, const char* fine_tune = "none", int epochs = 2) {
  TrainOptions o = tiny_options(run);
  o.device = "cuda:0";
  o.model.fine_tune = nn::FineTune::parse(fine_tune);
  o.epochs = epochs;
  o.batch_size = 8;  // 24 images x 5 captions: 15 batches an epoch, all of 8 rows
  o.eval_beam = 1;
  if (o.model.fine_tune.kind != nn::FineTune::Kind::None) {  // the encoder runs every batch
    o.model.image_size = 32;
    o.calibrate_batches = 1;
    o.batch_size = 24;  // 5 batches an epoch
  }
  const bool was = DeviceGraph::enabled(Device::cuda(0));
  DeviceGraph::set_enabled(graphs);
  Fit f;
  std::ostringstream log;
  {
    Trainer t(o, log);
    f.history = t.fit();
    f.batch_losses = t.batch_losses();
    for (const auto& p : t.model().named_parameters())
      f.weights.push_back(p.tensor->to(Device::cpu()).contiguous().to_vector<float>());
  }
  DeviceGraph::set_enabled(was);
  f.log = log.str();
  return f;
}

TEST(CudaTrainer, RecordedStepsTrainExactlyAsEagerSteps) {
  CAPTION_REQUIRE_CUDA_OR_SKIP();
  if (!DeviceGraph::enabled(Device::cuda(0))) GTEST_SKIP() << "CAPTION_CUDA_GRAPHS=0";
  const Fit recorded = fit("cuda_trainer_graphs", true);
  const Fit eager = fit("cuda_trainer_eager", false);
  EXPECT_NE(recorded.log.find("caption steps to a multiple of 4, --step-bucket"), std::string::npos);
  EXPECT_NE(recorded.log.find("recorded as CUDA graphs and replayed"), std::string::npos)
      << recorded.log.substr(0, 600);
  EXPECT_NE(eager.log.find("run eagerly (CAPTION_CUDA_GRAPHS=0)"), std::string::npos);
  ASSERT_EQ(recorded.batch_losses.size(), 30u);
  EXPECT_EQ(recorded.batch_losses, eager.batch_losses);
  // Steps were replayed (shapes: 8 rows, steps padded to a multiple of 4); with graphs
  // off every step was eager.
  std::smatch m;
  ASSERT_TRUE(std::regex_search(recorded.log, m, std::regex("training steps: (\\d+) replayed from (\\d+) recording")))
      << recorded.log;
  EXPECT_GT(std::stoi(m[1]), 0);
  EXPECT_GT(std::stoi(m[2]), 0);
  EXPECT_EQ(recorded.log.find(" could not be recorded"), std::string::npos) << recorded.log;
  EXPECT_NE(eager.log.find("training steps: 0 replayed from 0 recording(s), 30 eager"), std::string::npos) << eager.log;
  ASSERT_EQ(recorded.weights.size(), eager.weights.size());
  for (size_t i = 0; i < eager.weights.size(); ++i) EXPECT_EQ(recorded.weights[i], eager.weights[i]) << i;
  ASSERT_EQ(recorded.history.size(), 2u);
  for (size_t e = 0; e < 2; ++e) EXPECT_EQ(recorded.history[e].val_loss, eager.history[e].val_loss);
  EXPECT_LT(recorded.history[1].train_loss, recorded.history[0].train_loss);
}

// Fine-tuning layer4 too: the encoder's forward and backward run eagerly around each
// replay of the decoder's recorded part, and training equals the eager steps bit for
// bit, encoder weights included (one epoch of 5 batches of 24 rows).
TEST(CudaTrainer, FineTunedEncoderTrainsAroundRecordedDecoderSteps) {
  CAPTION_REQUIRE_CUDA_OR_SKIP();
  if (!DeviceGraph::enabled(Device::cuda(0))) GTEST_SKIP() << "CAPTION_CUDA_GRAPHS=0";
  const Fit recorded = fit("cuda_trainer_ft_graphs", true, "from:4", 1);
  const Fit eager = fit("cuda_trainer_ft_eager", false, "from:4", 1);
  ASSERT_EQ(recorded.batch_losses.size(), 5u);
  EXPECT_EQ(recorded.batch_losses, eager.batch_losses);
  std::smatch m;
  ASSERT_TRUE(std::regex_search(recorded.log, m, std::regex("training steps: (\\d+) replayed from (\\d+) recording")))
      << recorded.log;
  EXPECT_GT(std::stoi(m[1]), 0);
  EXPECT_EQ(recorded.log.find(" could not be recorded"), std::string::npos) << recorded.log;
  ASSERT_EQ(recorded.weights.size(), eager.weights.size());
  for (size_t i = 0; i < eager.weights.size(); ++i) EXPECT_EQ(recorded.weights[i], eager.weights[i]) << i;
}

// Scheduled sampling (teacher forcing below 1) trains through the eager pass: its words
// picked on the device, the gradients clipped there (clip_grad_norm_on_device), nothing
// read back within a step. The GPU's first batches lose what the CPU's lose for the same
// weights, data and coins (after one step, the updates differ by roundoff).
TEST(CudaTrainer, ScheduledSamplingTrainsLikeTheCpu) {
  CAPTION_REQUIRE_CUDA_OR_SKIP();
  std::vector<double> losses[2];
  for (int d = 0; d < 2; ++d) {
    TrainOptions o = tiny_options(d == 0 ? "cuda_trainer_ss_cpu" : "cuda_trainer_ss_gpu");
    o.device = d == 0 ? "cpu" : "cuda:0";
    o.epochs = 1;
    o.batch_size = 8;
    o.eval_beam = 1;
    o.teacher_forcing = 0.5;
    o.grad_clip = 0.05;  // small enough to clip every step
    o.optimizer = OptimizerKind::Sgd;  // AdamW's steps would not show the clipping's scale
    std::ostringstream log;
    Trainer t(o, log);
    t.fit();
    losses[d] = t.batch_losses();
  }
  ASSERT_EQ(losses[0].size(), 15u);
  ASSERT_EQ(losses[1].size(), losses[0].size());
  EXPECT_NEAR(losses[1][0], losses[0][0], 1e-5 * losses[0][0]);
  EXPECT_NEAR(losses[1][1], losses[0][1], 1e-4 * losses[0][1]);
  for (size_t i = 2; i < losses[1].size(); ++i) EXPECT_NEAR(losses[1][i], losses[0][i], 1e-3 * losses[0][i]) << i;
}

}  // namespace
}  // namespace caption::pipeline
