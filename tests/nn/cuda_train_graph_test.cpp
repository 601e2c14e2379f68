// The recorded training step (nn/train_graph.h) on a device: steps replayed from a graph
// against the same steps run eagerly, bit for bit (losses, gradient norms, every
// parameter), with dropout, clipping, a learning-rate change, batches of other lengths
// in the same and in another step bucket, and a frozen parameter that makes the graph
// record again, under AdamW, SGD with Nesterov momentum, and AdamW with bfloat16
// products; with a fine-tuned encoder in front (its backward, clipping and the update
// after each replay); and replays that obtain no device memory. Skipped without a GPU;
// CAPTION_REQUIRE_GPU=1 turns the skips into failures.
#include <gtest/gtest.h>

#include <memory>

#include "engine/allocator.h"
#include "engine/autocast.h"
#include "engine/backend.h"
#include "engine/graph.h"
#include "nn/caption_model.h"
#include "nn/optim.h"
#include "nn/parameters.h"
#include "nn/train_graph.h"
#include "tests/harness/gpu.h"
#include "tests/nn/small_decoder.h"

namespace caption::nn {
namespace {

ModelConfig decoder_config() { return testing::small_decoder_config(0.5); }

// What a test run trains with: the optimiser, and whether products run in bfloat16.
struct Variant {
  const char* name;
  bool sgd;       // SGD with Nesterov momentum, else AdamW
  bool autocast;  // bfloat16 products (engine/autocast.h) on both sides
};

// A decoder on cuda:0 with its store, optimiser (two groups), generator and TrainStep;
// made with graphs on or off.
struct Side {
  Generator init{21};
  AttentionDecoder decoder{decoder_config(), init};
  ParameterStore store{Device::cuda(0)};
  std::unique_ptr<Optimizer> opt;
  Generator gen{77};
  std::unique_ptr<TrainStep> step;
  Side(bool graphs, const Variant& v) {
    decoder.to(Device::cuda(0));
    decoder.train();
    for (auto& p : decoder.named_parameters()) store.add(p.name, *p.tensor);
    store.finalize();
    const std::vector<ParamGroup> groups{{"", 0.01}, {"fc.", 0.02}};
    if (v.sgd) {
      SgdConfig c;
      c.momentum = 0.9;
      c.nesterov = Nesterov::Yes;
      c.weight_decay = 1e-3;
      opt = std::make_unique<SGD>(store, c, groups);
    } else {
      opt = std::make_unique<AdamW>(store, AdamWConfig{}, groups);
    }
    const bool was = DeviceGraph::enabled(Device::cuda(0));
    DeviceGraph::set_enabled(graphs);
    TrainStepOptions o;
    o.grad_clip = 0.3;  // small enough that some steps clip and some may not
    step = std::make_unique<TrainStep>(decoder, *opt, gen, o);
    DeviceGraph::set_enabled(was);
  }
};

// Batches of 3 captions: lengths (7, 5, 4) and (6, 6, 2) take 6 and 5 steps (padded to
// 8), (3, 3, 2) takes 2 (padded to 4).
CaptionBatch batch(int kind) {
  CaptionBatch b;
  if (kind == 0) {
    b = testing::three_captions();
  } else if (kind == 1) {
    b.captions = Tensor::from_vector<int64_t>({1, 4, 4, 9, 6, 2, 1, 7, 8, 12, 3, 2, 1, 2, 0, 0, 0, 0}, {3, 6});
    b.lengths = {6, 6, 2};
  } else {
    b.captions = Tensor::from_vector<int64_t>({1, 11, 2, 1, 6, 2, 1, 2, 0}, {3, 3});
    b.lengths = {3, 3, 2};
  }
  return b;
}

std::vector<float> host(const Tensor& t) { return t.to(Device::cpu()).contiguous().to_vector<float>(); }

class CudaTrainGraph : public ::testing::TestWithParam<Variant> {};

TEST_P(CudaTrainGraph, ReplaysEqualEagerStepsBitForBit) {
  CAPTION_REQUIRE_CUDA_OR_SKIP();
  if (!DeviceGraph::enabled(Device::cuda(0))) GTEST_SKIP() << "CAPTION_CUDA_GRAPHS=0";
  const Variant& v = GetParam();
  AutocastGuard autocast(v.autocast);  // recorded and eager alike
  Side graphed(true, v), eager(false, v);
  Generator g(5);
  const int kinds[] = {0, 0, 1, 0, 2, 2, 2, 1, 0, 2};
  for (int i = 0; i < 10; ++i) {
    SCOPED_TRACE(i);
    if (i == 6) {  // a scheduler's change: read by the replays from the staged scalars
      graphed.opt->set_lr(1, 0.005);
      eager.opt->set_lr(1, 0.005);
    }
    if (i == 8) {  // a frozen parameter changes the optimiser's runs: recorded again
      graphed.store.freeze("embedding.");
      eager.store.freeze("embedding.");
    }
    const Tensor features = rand_normal({3, 4, 512}, 0, 1, g).to(Device::cuda(0));
    const TrainStepResult a = graphed.step->step(features, batch(kinds[i]));
    const TrainStepResult b = eager.step->step(features, batch(kinds[i]));
    ASSERT_EQ(host(a.loss.total), host(b.loss.total));
    ASSERT_EQ(host(a.loss.attention), host(b.loss.attention));
    ASSERT_EQ(a.grad_norm.to(Device::cpu()).item(), b.grad_norm.to(Device::cpu()).item());
    ASSERT_EQ(host(graphed.store.values()), host(eager.store.values()));
    EXPECT_EQ(graphed.gen.offset(), eager.gen.offset());
  }
  // Shapes: 8 steps (kinds 0, 1) and 4 steps (kind 2): each one eager warm-up, then
  // recorded; both recorded again after the freeze.
  const TrainStepStats& s = graphed.step->stats();
  EXPECT_EQ(s.failed_captures, 0);
  EXPECT_EQ(s.captures, 4);
  EXPECT_EQ(s.eager_steps, 2);
  EXPECT_EQ(s.replays, 8);
  EXPECT_EQ(eager.step->stats().eager_steps, 10);
  EXPECT_EQ(graphed.opt->step_count("fc.weight"), 10);
  EXPECT_EQ(eager.step->stats().captures, 0);
}

// A fine-tuned "encoder" (one linear layer in front of the decoder, its parameters in the
// same store): features that require gradients. The recording holds the decoder's part;
// the replayed steps, with the encoder's backward, clipping and AdamW run after each
// replay, equal the eager steps bit for bit, and the encoder trains.
TEST(CudaTrainGraphFineTune, ReplaysWithEncoderBackwardEqualEagerStepsBitForBit) {
  CAPTION_REQUIRE_CUDA_OR_SKIP();
  if (!DeviceGraph::enabled(Device::cuda(0))) GTEST_SKIP() << "CAPTION_CUDA_GRAPHS=0";
  struct FineTuneSide {
    Generator init{21};
    Linear encoder{512, 512, init};
    AttentionDecoder decoder{decoder_config(), init};
    ParameterStore store{Device::cuda(0)};
    std::unique_ptr<Optimizer> opt;
    Generator gen{77};
    std::unique_ptr<TrainStep> step;
    explicit FineTuneSide(bool graphs) {
      encoder.to(Device::cuda(0));
      decoder.to(Device::cuda(0));
      decoder.train();
      for (auto& p : encoder.named_parameters("encoder")) store.add(p.name, *p.tensor);
      for (auto& p : decoder.named_parameters("decoder")) store.add(p.name, *p.tensor);
      store.finalize();
      opt = std::make_unique<AdamW>(store, AdamWConfig{}, std::vector<ParamGroup>{{"encoder.", 0.001}, {"decoder.", 0.01}});
      const bool was = DeviceGraph::enabled(Device::cuda(0));
      DeviceGraph::set_enabled(graphs);
      TrainStepOptions o;
      o.grad_clip = 0.3;
      step = std::make_unique<TrainStep>(decoder, *opt, gen, o);
      DeviceGraph::set_enabled(was);
    }
  };
  FineTuneSide graphed(true), eager(false);
  const std::vector<float> encoder_before = host(graphed.encoder.weight);
  Generator g(5);
  const int kinds[] = {0, 0, 1, 0, 2, 2, 0, 0};
  for (int i = 0; i < 8; ++i) {
    SCOPED_TRACE(i);
    if (i == 6) {  // a frozen decoder part changes the optimiser's runs: recorded again
      graphed.store.freeze("decoder.embedding.");
      eager.store.freeze("decoder.embedding.");
    }
    const Tensor raw = rand_normal({3, 4, 512}, 0, 1, g).to(Device::cuda(0));
    const Tensor fa = relu(graphed.encoder.forward(raw)), fb = relu(eager.encoder.forward(raw));
    ASSERT_TRUE(fa.requires_grad());
    const TrainStepResult a = graphed.step->step(fa, batch(kinds[i]));
    const TrainStepResult b = eager.step->step(fb, batch(kinds[i]));
    ASSERT_EQ(host(a.loss.total), host(b.loss.total));
    ASSERT_EQ(a.grad_norm.to(Device::cpu()).item(), b.grad_norm.to(Device::cpu()).item());
    ASSERT_EQ(host(graphed.store.values()), host(eager.store.values()));
    EXPECT_EQ(graphed.gen.offset(), eager.gen.offset());
  }
  EXPECT_NE(host(graphed.encoder.weight), encoder_before) << "the encoder trains";
  // Shapes of 8 steps (kinds 0, 1) and 4 (kind 2): an eager warm-up each, then recorded;
  // the first recorded again after the freeze.
  const TrainStepStats& s = graphed.step->stats();
  EXPECT_EQ(s.failed_captures, 0);
  EXPECT_EQ(s.captures, 3);
  EXPECT_EQ(s.eager_steps, 2);
  EXPECT_EQ(s.replays, 6);
  EXPECT_EQ(eager.step->stats().eager_steps, 8);
}

INSTANTIATE_TEST_SUITE_P(Optimisers, CudaTrainGraph,
                         ::testing::Values(Variant{"adamw", false, false}, Variant{"sgd_nesterov", true, false},
                                           Variant{"adamw_autocast", false, true}),
                         [](const ::testing::TestParamInfo<Variant>& i) { return std::string(i.param.name); });

// After the recording, replays take nothing from the device allocator and leave it as
// they found it.
TEST(CudaTrainGraphMemory, ReplaysObtainNoDeviceMemory) {
  CAPTION_REQUIRE_CUDA_OR_SKIP();
  if (!DeviceGraph::enabled(Device::cuda(0))) GTEST_SKIP() << "CAPTION_CUDA_GRAPHS=0";
  Side graphed(true, Variant{"adamw", false, false});
  Generator g(6);
  const Tensor features = rand_normal({3, 4, 512}, 0, 1, g).to(Device::cuda(0));
  for (int i = 0; i < 2; ++i) graphed.step->step(features, batch(0));  // warm-up, record
  synchronize(Device::cuda(0));
  CachingAllocator& alloc = allocator_for(Device::cuda(0));
  const AllocatorStats before = alloc.stats();
  for (int i = 0; i < 3; ++i) graphed.step->step(features, batch(1));
  synchronize(Device::cuda(0));
  const AllocatorStats after = alloc.stats();
  EXPECT_EQ(graphed.step->stats().replays, 4);
  EXPECT_EQ(after.backing_allocations, before.backing_allocations);
  EXPECT_EQ(after.bytes_in_use, before.bytes_in_use);
}

}  // namespace
}  // namespace caption::nn
