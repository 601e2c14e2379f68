// The folded inference snapshot of a ResNet trunk (nn/folded_resnet.h) on the CPU: the
// same values as the trunk with every pair folded, bit for bit, at batch 1 (where the
// trunk itself leaves its deep layers unfolded) and batch 2, on both block kinds and in
// float32 and float64; a snapshot (later changes to the source unseen); the refusals; and
// CaptionModel::encode_distinct through it (the Captioner's use: tests/pipeline/captioner_test).
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "nn/caption_model.h"
#include "nn/checkpoint.h"
#include "nn/folded_resnet.h"
#include "tests/harness/expect_error.h"
#include "tests/harness/harness.h"
#include "tests/nn/random_resnet.h"
#include "tests/pipeline/tiny_checkpoint.h"

namespace caption::nn {
namespace {

using test_resnet::batch_norms;
using test_resnet::randomise_batch_norms;

std::vector<double> values(const Tensor& t) {
  return t.to(Device::cpu()).to(DType::F64).contiguous().to_vector<double>();
}

struct Net {
  explicit Net(int depth, DType dtype = DType::F32, uint64_t seed = 7)
      : gen(seed), resnet(resnet_spec(depth), gen) {
    randomise_batch_norms(resnet, gen);
    resnet.eval();
    if (dtype != DType::F32) {
      NoGradGuard no_grad;
      for (const auto& ref : resnet.named_state()) *ref.tensor = ref.tensor->detach().to(dtype);
    }
  }
  Tensor always(const Tensor& x) {
    NoGradGuard no_grad;
    resnet.batch_norm_folding = BatchNormFolding::Always;
    return resnet.forward(x);
  }
  Generator gen;
  ResNet resnet;
};

void expect_equals_always_folded(int depth, DType dtype) {
  Net n(depth, dtype);
  const FoldedResNet folded(n.resnet);
  EXPECT_EQ(&folded.source(), &n.resnet);
  for (int64_t batch : {1, 2}) {
    Generator g(11);
    const Tensor x = rand_normal({batch, 3, 64, 64}, 0.0, 1.0, g, dtype);
    const Tensor got = folded.forward(x);
    EXPECT_EQ(got.dtype(), dtype);
    EXPECT_FALSE(got.requires_grad());
    EXPECT_EQ(got.shape(), (Shape{batch, n.resnet.spec().out_channels(), 2, 2}));
    EXPECT_EQ(values(got), values(n.always(x))) << "resnet" << depth << " batch " << batch;
    // Where the trunk itself folds only where cheaper, the deep layers at batch 1 run
    // unfolded: evidence that the snapshot folded them.
    n.resnet.batch_norm_folding = BatchNormFolding::WhereCheaper;
    NoGradGuard no_grad;
    if (batch == 1) {
      EXPECT_NE(values(got), values(n.resnet.forward(x)));
    }
  }
}

TEST(FoldedResNet, Resnet18EqualsAlwaysFoldedFloat32) { expect_equals_always_folded(18, DType::F32); }
TEST(FoldedResNet, Resnet50EqualsAlwaysFoldedFloat32) { expect_equals_always_folded(50, DType::F32); }
TEST(FoldedResNet, Resnet18EqualsAlwaysFoldedFloat64) { expect_equals_always_folded(18, DType::F64); }

TEST(FoldedResNet, HoldsOneFoldedCopyOfTheWeights) {
  Net n(18);
  const FoldedResNet folded(n.resnet);
  int64_t conv_weights = 0, channels = 0;
  for (const auto& ref : n.resnet.named_parameters())
    if (ref.name.find("conv") != std::string::npos || ref.name.find("downsample.0") != std::string::npos)
      conv_weights += ref.tensor->numel();
  for (BatchNorm2d* bn : batch_norms(n.resnet)) channels += bn->weight.numel();
  EXPECT_EQ(folded.bytes(), 4 * (conv_weights + channels));  // float32 weights and biases
  EXPECT_EQ(folded.runner_stats().replays, 0);               // no graphs on the CPU
}

// A snapshot: changing the source afterwards changes nothing in it; a new snapshot sees
// the change.
TEST(FoldedResNet, IsASnapshot) {
  Net n(18);
  Generator g(5);
  const Tensor x = rand_normal({1, 3, 64, 64}, 0.0, 1.0, g);
  const FoldedResNet before(n.resnet);
  const std::vector<double> first = values(before.forward(x));
  {
    NoGradGuard no_grad;
    for (BatchNorm2d* bn : batch_norms(n.resnet)) bn->running_var.copy_(mul(bn->running_var, 2.0));
  }
  EXPECT_EQ(values(before.forward(x)), first);
  const FoldedResNet after(n.resnet);
  const std::vector<double> changed = values(after.forward(x));
  EXPECT_NE(changed, first);
  EXPECT_EQ(changed, values(n.always(x)));
}

TEST(FoldedResNet, RefusesBatchStatisticsNamingTheLayer) {
  Net n(18);
  n.resnet.train();
  EXPECT_ERROR_WITH(FoldedResNet{n.resnet}, "FoldedResNet: bn1 normalises with batch statistics");
  // Frozen batch norms use their running statistics in Train mode too.
  n.resnet.set_frozen(true);
  EXPECT_NO_THROW(FoldedResNet{n.resnet});
  // Only one layer training: named.
  n.resnet.stage(3).set_frozen(false);
  EXPECT_ERROR_WITH(FoldedResNet{n.resnet}, "FoldedResNet: layer3.0.bn1 normalises");
}

TEST(FoldedResNet, RefusesImagesThatRequireGrad) {
  Net n(18);
  const FoldedResNet folded(n.resnet);
  Generator g(5);
  Tensor x = rand_normal({1, 3, 64, 64}, 0.0, 1.0, g);
  x.set_requires_grad(true);
  EXPECT_ERROR_WITH(folded.forward(x), "FoldedResNet: inference only");
  NoGradGuard no_grad;  // without grad mode the same images are fine
  EXPECT_EQ(values(folded.forward(x)), values(n.always(x.detach())));
  EXPECT_ERROR_WITH(folded.forward(Tensor()), "FoldedResNet: the images are an undefined tensor");
  EXPECT_ERROR_WITH(folded.forward(rand_normal({1, 4, 64, 64}, 0.0, 1.0, g)), "expected images [B, 3, H, W]");
}

// The pipeline tests' tiny model (ResNet-18 at 64x64: a 2x2 map) with encoder_size 4, a
// 2x2 map repeated 2x2, so that encode_distinct keeps the 4 cells of 16 positions.
ModelConfig small_config() {
  ModelConfig c = testing::tiny_captioner_config();
  c.encoder_size = 4;
  return c;
}

TEST(FoldedResNet, EncodeThroughTheSnapshot) {
  Generator gen(3), other_gen(3);
  CaptionModel model(small_config(), gen);
  CaptionModel other(small_config(), other_gen);
  randomise_batch_norms(model.encoder, gen);
  model.eval();
  other.eval();
  const FoldedResNet folded(model.encoder);
  Generator g(4);
  const Tensor x = rand_normal({2, 3, 64, 64}, 0.0, 1.0, g);
  NoGradGuard no_grad;
  model.encoder.batch_norm_folding = BatchNormFolding::Always;
  const Tensor got = model.encode_distinct(x, &folded);
  EXPECT_EQ(got.shape(), (Shape{2, 4, 512}));
  EXPECT_EQ(values(got), values(model.encode_distinct(x)));
  const Tensor pooled = model.encode(x, &folded);
  EXPECT_EQ(pooled.shape(), (Shape{2, 16, 512}));
  EXPECT_EQ(values(pooled), values(model.encode(x)));
  EXPECT_ERROR_WITH(other.encode_distinct(x, &folded), "snapshot of another model's encoder");
  EXPECT_ERROR_WITH(other.encode(x, &folded), "snapshot of another model's encoder");
}

// inference_snapshot: none when folding is off (the model's own pass, which a null
// snapshot means to encode), a snapshot of that encoder otherwise.
TEST(FoldedResNet, InferenceSnapshotFollowsTheFoldingSetting) {
  Generator gen(5);
  CaptionModel model(small_config(), gen);
  randomise_batch_norms(model.encoder, gen);
  model.eval();
  Generator g(6);
  const Tensor x = rand_normal({1, 3, 64, 64}, 0.0, 1.0, g);
  NoGradGuard no_grad;
  model.encoder.batch_norm_folding = BatchNormFolding::Off;
  EXPECT_EQ(inference_snapshot(model.encoder), nullptr);
  EXPECT_EQ(values(model.encode_distinct(x, nullptr)), values(model.encode_distinct(x)));
  EXPECT_EQ(values(model.encode(x, nullptr)), values(model.encode(x)));
  for (BatchNormFolding f : {BatchNormFolding::WhereCheaper, BatchNormFolding::Always}) {
    model.encoder.batch_norm_folding = f;
    const std::unique_ptr<FoldedResNet> snapshot = inference_snapshot(model.encoder);
    ASSERT_NE(snapshot, nullptr);
    EXPECT_EQ(&snapshot->source(), &model.encoder);
  }
  model.encoder.batch_norm_folding = BatchNormFolding::Always;
  const std::unique_ptr<FoldedResNet> snapshot = inference_snapshot(model.encoder);
  EXPECT_EQ(values(model.encode_distinct(x, snapshot.get())), values(model.encode_distinct(x)));
}

}  // namespace
}  // namespace caption::nn
