// Folding frozen batch norm into the convolution before it (nn/batch_norm_fold.h): the
// folded encoder computes the same function as the layer-by-layer one, gradients with
// respect to the input (and to the layers that still train) are unchanged, training-mode
// batch norm is never folded, and the folded weights follow every change of parameters
// and running statistics, since they are recomputed at each call.
//
// Tolerances: float32 outputs agree to a relative L2 error below 1e-5 (folding changes
// only the rounding: W*s is rounded once, and s is applied before instead of after the
// sums of the product); float64 to below 1e-12.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "nn/batch_norm_fold.h"
#include "nn/caption_model.h"
#include "nn/checkpoint.h"
#include "tests/harness/expect_error.h"
#include "tests/harness/harness.h"
#include "tests/nn/random_resnet.h"

namespace caption::nn {
namespace {

using test_resnet::batch_norms;
using test_resnet::randomise_batch_norms;
using test_resnet::rel_l2;

bool bitwise_equal(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() &&
         a.to(DType::F64).to_vector<double>() == b.to(DType::F64).to_vector<double>();
}

// Parameters and buffers in `dtype` (parameters keep their requires_grad).
void convert(Module& m, DType dtype) {
  for (const auto& ref : m.named_parameters()) {
    const bool trainable = ref.tensor->requires_grad();
    *ref.tensor = ref.tensor->detach().to(dtype);
    ref.tensor->set_requires_grad(trainable);
  }
  for (const auto& ref : m.named_buffers()) *ref.tensor = ref.tensor->to(dtype);
}

struct Net {
  explicit Net(int depth, uint64_t seed = 7) : gen(seed), resnet(resnet_spec(depth), gen) {
    randomise_batch_norms(resnet, gen);
  }
  Generator gen;
  ResNet resnet;
};

Tensor run(ResNet& r, const Tensor& x, BatchNormFolding folding) {
  r.batch_norm_folding = folding;
  return r.forward(x);
}

void expect_folded_matches(int depth, DType dtype, double tolerance) {
  Net n(depth);
  n.resnet.eval();
  n.resnet.set_frozen(true);
  convert(n.resnet, dtype);
  Generator g(11);
  const Tensor x = rand_normal({2, 3, 64, 64}, 0.0, 1.0, g, dtype);
  const Tensor off = run(n.resnet, x, BatchNormFolding::Off);
  const Tensor always = run(n.resnet, x, BatchNormFolding::Always);
  const Tensor cheaper = run(n.resnet, x, BatchNormFolding::WhereCheaper);
  EXPECT_EQ(off.shape(), (Shape{2, n.resnet.spec().out_channels(), 2, 2}));
  EXPECT_LT(rel_l2(always, off), tolerance) << "resnet" << depth << " " << dtype_name(dtype);
  EXPECT_LT(rel_l2(cheaper, off), tolerance) << "resnet" << depth << " " << dtype_name(dtype);
  // Evidence that the folded path ran: its rounding differs somewhere.
  EXPECT_FALSE(bitwise_equal(always, off));
  EXPECT_FALSE(bitwise_equal(cheaper, off));
}

TEST(BatchNormFold, Resnet18MatchesUnfoldedFloat32) { expect_folded_matches(18, DType::F32, 1e-5); }
TEST(BatchNormFold, Resnet50MatchesUnfoldedFloat32) { expect_folded_matches(50, DType::F32, 1e-5); }
TEST(BatchNormFold, Resnet18MatchesUnfoldedFloat64) {
  expect_folded_matches(18, DType::F64, 1e-12);
}
TEST(BatchNormFold, Resnet50MatchesUnfoldedFloat64) {
  expect_folded_matches(50, DType::F64, 1e-12);
}

// Eval mode without freezing, under no_grad (inference with a trainable encoder, e.g.
// validation while fine-tuning): folded, same function.
TEST(BatchNormFold, EvalModeUnderNoGradFoldsTrainableLayers) {
  Net n(18);
  n.resnet.eval();
  Generator g(3);
  const Tensor x = rand_normal({2, 3, 64, 64}, 0.0, 1.0, g);
  NoGradGuard no_grad;
  const Tensor off = run(n.resnet, x, BatchNormFolding::Off);
  const Tensor always = run(n.resnet, x, BatchNormFolding::Always);
  EXPECT_LT(rel_l2(always, off), 1e-5);
  EXPECT_FALSE(bitwise_equal(always, off));
}

// With the images needing no gradient, folded pairs add the residual and apply ReLU in the
// convolution's own pass (engine/ops/conv.h); with images that require grad they run as
// separate add and relu ops. Same bits either way, on both block kinds.
void expect_epilogue_changes_nothing(int depth) {
  Net n(depth);
  n.resnet.eval();
  n.resnet.set_frozen(true);
  for (BatchNormFolding folding : {BatchNormFolding::Always, BatchNormFolding::WhereCheaper}) {
    Generator g(12);
    const Tensor x = rand_normal({2, 3, 64, 64}, 0.0, 1.0, g);
    const Tensor fused = run(n.resnet, x, folding);
    Tensor xg = x.clone();
    xg.set_requires_grad(true);
    const Tensor separate = run(n.resnet, xg, folding);
    EXPECT_TRUE(separate.requires_grad());  // evidence that the separate path ran
    EXPECT_TRUE(bitwise_equal(fused, separate.detach())) << "resnet" << depth;
  }
}
TEST(BatchNormFold, Resnet18EpilogueChangesNothing) { expect_epilogue_changes_nothing(18); }
TEST(BatchNormFold, Resnet50EpilogueChangesNothing) { expect_epilogue_changes_nothing(50); }

// A frozen convolution and batch norm with random statistics.
struct FrozenPair {
  FrozenPair(uint64_t seed, Conv2dSpec spec) : g(seed), conv(spec, g), bn(spec.out) {
    randomise_batch_norms(bn, g);
    conv.set_frozen(true);
    bn.set_frozen(true);
  }
  Generator g;
  Conv2d conv;
  BatchNorm2d bn;
};

TEST(BatchNormFold, ConvBatchNormEpilogueUnfoldedAndFolded) {
  FrozenPair p(9, Conv2dSpec{3, 4, 3, 1, 1, 1, Bias::No});
  const Tensor x = rand_normal({2, 3, 5, 6}, 0.0, 1.0, p.g);
  const Tensor r = rand_normal({2, 4, 5, 6}, 0.0, 1.0, p.g);
  for (BatchNormFolding folding : {BatchNormFolding::Off, BatchNormFolding::Always}) {
    const Tensor plain = conv_batch_norm(p.conv, p.bn, x, folding);
    const Tensor expected = relu(add(plain, r));
    const Tensor got = conv_batch_norm(p.conv, p.bn, x, folding, {.residual = r, .relu = true});
    EXPECT_TRUE(bitwise_equal(got, expected)) << static_cast<int>(folding);
    EXPECT_GT(sum(relu(mul(plain, -1.0))).item(), 0.0);  // ReLU had work to do
  }
}

TEST(BatchNormFold, WhoMayFold) {
  Generator g(1);
  Conv2d conv(Conv2dSpec{3, 4, 3, 1, 1, 1, Bias::No}, g);
  BatchNorm2d bn(4);
  // Train mode, trainable: batch statistics.
  EXPECT_FALSE(can_fold_batch_norm(conv, bn));
  {
    NoGradGuard no_grad;  // still batch statistics (and running-statistics updates)
    EXPECT_FALSE(can_fold_batch_norm(conv, bn));
  }
  conv.eval();
  bn.eval();
  EXPECT_FALSE(can_fold_batch_norm(conv, bn));  // parameters would receive gradients
  {
    NoGradGuard no_grad;
    EXPECT_TRUE(can_fold_batch_norm(conv, bn));
  }
  conv.set_frozen(true);
  EXPECT_FALSE(can_fold_batch_norm(conv, bn));  // bn's gamma and beta still train
  bn.set_frozen(true);
  EXPECT_TRUE(can_fold_batch_norm(conv, bn));
  conv.train();
  bn.train();
  EXPECT_TRUE(can_fold_batch_norm(conv, bn));  // frozen batch norm ignores Train mode
  bn.set_frozen(false);
  EXPECT_FALSE(can_fold_batch_norm(conv, bn));
}

TEST(BatchNormFold, ConvolutionWithBias) {
  FrozenPair p(5, Conv2dSpec{3, 6, 3, 2, 1, 1, Bias::Yes});
  const Conv2d& conv = p.conv;
  const BatchNorm2d& bn = p.bn;
  const Tensor x = rand_normal({2, 3, 9, 7}, 0.0, 1.0, p.g);
  const Tensor off = conv_batch_norm(conv, bn, x, BatchNormFolding::Off);
  const Tensor folded = conv_batch_norm(conv, bn, x, BatchNormFolding::Always);
  EXPECT_LT(rel_l2(folded, off), 1e-6);
  const FoldedConv2d f = fold_batch_norm(conv, bn);
  EXPECT_EQ(f.weight.shape(), conv.weight.shape());
  EXPECT_EQ(f.bias.shape(), (Shape{6}));
  EXPECT_FALSE(f.weight.requires_grad());
  BatchNorm2d wrong(5);
  EXPECT_ERROR_WITH(fold_batch_norm(conv, wrong),
                    "6 output channels, but the batch norm's running_var is float32[5]");
}

TEST(BatchNormFold, WhereCheaperRule) {
  Generator g(1);
  Conv2d stem(Conv2dSpec{3, 64, 7, 2, 3, 1, Bias::No}, g);     // 147 weights per channel
  Conv2d deep(Conv2dSpec{512, 512, 3, 1, 1, 1, Bias::No}, g);  // 4608
  EXPECT_TRUE(folding_saves_work(stem, {1, 3, 224, 224}));     // 12544 positions
  EXPECT_FALSE(folding_saves_work(deep, {1, 512, 7, 7}));      // 49
  EXPECT_FALSE(folding_saves_work(deep, {8, 512, 7, 7}));      // 392
  EXPECT_TRUE(folding_saves_work(deep, {96, 512, 7, 7}));      // 4704
  EXPECT_ERROR_WITH(folding_saves_work(deep, {512, 7, 7}), "[B, C, H, W]");
}

// fine-tune from:3: the stem and layer1-2 are frozen (folded, even in Train mode), layer3-4
// train with batch statistics. The gradients of the trainable parameters and of the images
// must be those of the unfolded path, and the frozen layers receive none. In float64 the
// two paths agree to 1e-10. In float32, layer4's batch statistics (8 values per channel
// here) amplify rounding differences to about 1e-5, so the float32 check is that folding
// is no further from the float64 result than the unfolded float32 path is (2x, plus 1e-6).
ModelConfig fine_tune_config() {
  ModelConfig c;
  c.encoder = "resnet18";
  c.encoder_size = 2;
  c.image_size = 64;
  c.vocab_size = 11;
  c.embed_dim = 6;
  c.decoder_dim = 8;
  c.attention_dim = 5;
  c.fine_tune = FineTune::parse("from:3");
  return c;
}

struct FineTuneRun {
  Tensor features, image_grad;
  std::map<std::string, Tensor> grads;  // of the trainable parameters
  std::vector<std::string> frozen_with_grad;
};

FineTuneRun fine_tune_run(BatchNormFolding folding, DType dtype) {
  Generator g(21);
  CaptionModel m(fine_tune_config(), g);
  randomise_batch_norms(m.encoder, g);
  convert(m.encoder, dtype);
  m.train();
  m.encoder.batch_norm_folding = folding;
  // The stem is frozen and so folds, layer4 trains with batch statistics.
  EXPECT_TRUE(can_fold_batch_norm(m.encoder.conv1(), m.encoder.bn1()));
  Generator in(4);
  Tensor images = rand_normal({2, 3, 64, 64}, 0.0, 1.0, in, dtype);
  images.set_requires_grad(true);
  FineTuneRun r;
  r.features = m.encode(images);  // [2, 4, 512]
  sum(mul(r.features, rand_normal(r.features.shape(), 0.0, 1.0, in, dtype))).backward();
  r.image_grad = images.grad();
  for (const auto& ref : m.encoder.named_parameters()) {
    if (ref.tensor->requires_grad()) {
      r.grads[ref.name] = ref.tensor->grad();
    } else if (ref.tensor->grad().defined()) {
      r.frozen_with_grad.push_back(ref.name);
    }
  }
  return r;
}

TEST(BatchNormFold, FineTuneFromLayer3GradientsMatch) {
  const FineTuneRun ref = fine_tune_run(BatchNormFolding::Off, DType::F64);
  const FineTuneRun folded64 = fine_tune_run(BatchNormFolding::Always, DType::F64);
  const FineTuneRun off = fine_tune_run(BatchNormFolding::Off, DType::F32);
  const FineTuneRun folded = fine_tune_run(BatchNormFolding::Always, DType::F32);
  auto expect_close = [&](const Tensor& f64, const Tensor& f32, const Tensor& o32,
                          const Tensor& r64, const std::string& what) {
    ASSERT_TRUE(f64.defined() && f32.defined() && o32.defined() && r64.defined()) << what;
    EXPECT_LT(rel_l2(f64, r64), 1e-10) << what;
    EXPECT_LE(rel_l2(f32, r64), 2 * rel_l2(o32, r64) + 1e-6) << what;
  };
  expect_close(folded64.features, folded.features, off.features, ref.features, "features");
  EXPECT_FALSE(bitwise_equal(folded.features, off.features));  // the folded path ran
  expect_close(folded64.image_grad, folded.image_grad, off.image_grad, ref.image_grad,
               "image gradient");
  for (const FineTuneRun* r : {&ref, &folded64, &off, &folded}) {
    EXPECT_TRUE(r->frozen_with_grad.empty());
    ASSERT_EQ(r->grads.size(), ref.grads.size());
  }
  EXPECT_FALSE(ref.grads.empty());
  for (const auto& [name, g] : ref.grads) {
    EXPECT_TRUE(name.rfind("layer3.", 0) == 0 || name.rfind("layer4.", 0) == 0) << name;
    expect_close(folded64.grads.at(name), folded.grads.at(name), off.grads.at(name), g, name);
  }
}

// Fine-tune all in Train mode: batch statistics everywhere, nothing folds, so the result,
// the gradients and the running-statistics updates are bit for bit the unfolded ones. The
// same holds without gradients (what calibrate_batch_norm runs).
std::vector<Tensor> train_mode_run(BatchNormFolding folding, bool with_gradients) {
  Net n(18);
  n.resnet.train();
  Generator g(9);
  const Tensor x = rand_normal({2, 3, 64, 64}, 0.0, 1.0, g);
  std::vector<Tensor> out;
  if (with_gradients) {
    const Tensor y = run(n.resnet, x, folding);
    sum(mul(y, rand_normal(y.shape(), 0.0, 1.0, g))).backward();
    out = {y, n.resnet.conv1().weight.grad(),
           n.resnet.stage(4).named_parameters()[0].tensor->grad()};
  } else {
    NoGradGuard no_grad;
    out = {run(n.resnet, x, folding)};
  }
  for (const auto& ref : n.resnet.named_buffers()) out.push_back(*ref.tensor);
  return out;
}

TEST(BatchNormFold, TrainingModeIsNeverFolded) {
  for (const bool with_gradients : {true, false}) {
    const std::vector<Tensor> off = train_mode_run(BatchNormFolding::Off, with_gradients);
    const std::vector<Tensor> always = train_mode_run(BatchNormFolding::Always, with_gradients);
    ASSERT_EQ(off.size(), always.size());
    for (size_t i = 0; i < off.size(); ++i)
      EXPECT_TRUE(bitwise_equal(always[i], off[i]))
          << "tensor " << i << ", gradients " << with_gradients;
  }
}

// ---- staleness: the folded weights follow every change, whatever makes it ----

struct Frozen {
  Frozen() : n(18) {
    n.resnet.eval();
    n.resnet.set_frozen(true);
    Generator g(13);
    x = rand_normal({2, 3, 64, 64}, 0.0, 1.0, g);
  }
  // Folded output after a change: matches the unfolded one after the change and differs
  // from the folded one before it.
  void expect_follows(const Tensor& before, const std::string& what) {
    const Tensor folded = run(n.resnet, x, BatchNormFolding::Always);
    const Tensor off = run(n.resnet, x, BatchNormFolding::Off);
    EXPECT_LT(rel_l2(folded, off), 1e-5) << what;
    EXPECT_GT(rel_l2(folded, before), 1e-3) << what << " did not change the output";
  }
  Net n;
  Tensor x;
};

TEST(BatchNormFold, FollowsInPlaceChangesOfRunningStatistics) {
  Frozen f;
  const Tensor before = run(f.n.resnet, f.x, BatchNormFolding::Always);
  f.n.resnet.stage(2).named_buffers()[1].tensor->fill_(4.0);  // layer2.0.bn1.running_var
  f.n.resnet.bn1().running_mean.fill_(0.5);
  f.expect_follows(before, "in-place running statistics");
}

TEST(BatchNormFold, FollowsInPlaceChangesOfWeights) {
  Frozen f;
  const Tensor before = run(f.n.resnet, f.x, BatchNormFolding::Always);
  // What an optimiser step does to the parameter block, in place.
  scale_(f.n.resnet.conv1().weight, 0.5);
  f.n.resnet.bn1().bias.fill_(0.3);
  f.expect_follows(before, "in-place weights");
}

TEST(BatchNormFold, FollowsLoadState) {
  Frozen f;
  const Tensor before = run(f.n.resnet, f.x, BatchNormFolding::Always);
  Net other(18, /*seed=*/99);
  LoadedTensors loaded;
  loaded.path = "other network";
  for (const auto& ref : other.resnet.named_state()) loaded.tensors[ref.name] = ref.tensor->clone();
  load_state(f.n.resnet, loaded, Strictness::All);
  f.expect_follows(before, "load_state");
  other.resnet.eval();
  EXPECT_LT(rel_l2(run(f.n.resnet, f.x, BatchNormFolding::Always),
                   run(other.resnet, f.x, BatchNormFolding::Off)),
            1e-5);
}

TEST(BatchNormFold, FollowsCalibration) {
  ModelConfig c;
  c.encoder = "resnet18";
  c.encoder_size = 2;
  c.image_size = 64;
  c.vocab_size = 11;
  c.embed_dim = 6;
  c.decoder_dim = 8;
  c.attention_dim = 5;
  Generator g(2);
  CaptionModel m(c, g);  // fine-tune none: the encoder is frozen
  m.eval();
  m.encoder.batch_norm_folding = BatchNormFolding::Always;
  const Tensor x = rand_normal({2, 3, 64, 64}, 0.0, 1.0, g);
  const Tensor before = m.encode(x);
  int left = 2;
  m.calibrate_batch_norm([&] {
    return left-- > 0 ? rand_normal({4, 3, 64, 64}, 0.5, 2.0, g) : Tensor();
  });
  const Tensor folded = m.encode(x);
  m.encoder.batch_norm_folding = BatchNormFolding::Off;
  const Tensor off = m.encode(x);
  EXPECT_LT(rel_l2(folded, off), 1e-5);
  EXPECT_GT(rel_l2(folded, before), 1e-3);
}

TEST(BatchNormFold, FollowsFreezingAndModes) {
  Frozen f;
  const Tensor frozen_eval = run(f.n.resnet, f.x, BatchNormFolding::Always);
  // Unfrozen, Train mode: batch statistics (unfolded), whatever the switch says.
  f.n.resnet.set_frozen(false);
  f.n.resnet.train();
  Tensor train_folded;
  {
    NoGradGuard no_grad;
    train_folded = run(f.n.resnet, f.x, BatchNormFolding::Always);
  }
  EXPECT_GT(rel_l2(train_folded, frozen_eval), 1e-3);
  // Back to frozen: the running statistics that Train mode just updated are used.
  f.n.resnet.set_frozen(true);
  f.expect_follows(frozen_eval, "train then freeze");
}

TEST(BatchNormFold, FollowsDeviceMoves) {
  Frozen f;
  f.n.resnet.to(Device::cpu());  // replaces nothing on the CPU, but must not matter
  const Tensor folded = run(f.n.resnet, f.x, BatchNormFolding::Always);
  EXPECT_LT(rel_l2(folded, run(f.n.resnet, f.x, BatchNormFolding::Off)), 1e-5);
}

TEST(BatchNormFold, SwitchFromEnvironment) {
  const char* saved = std::getenv("CAPTION_FOLD_BN");
  const std::string previous = saved ? saved : "";
  unsetenv("CAPTION_FOLD_BN");
  EXPECT_EQ(default_batch_norm_folding(), BatchNormFolding::WhereCheaper);
  setenv("CAPTION_FOLD_BN", "0", 1);
  EXPECT_EQ(default_batch_norm_folding(), BatchNormFolding::Off);
  {
    Generator g(1);
    ResNet r(resnet_spec(18), g);
    EXPECT_EQ(r.batch_norm_folding, BatchNormFolding::Off);
  }
  setenv("CAPTION_FOLD_BN", "1", 1);
  EXPECT_EQ(default_batch_norm_folding(), BatchNormFolding::WhereCheaper);
  setenv("CAPTION_FOLD_BN", "all", 1);
  EXPECT_EQ(default_batch_norm_folding(), BatchNormFolding::Always);
  setenv("CAPTION_FOLD_BN", "yes", 1);
  EXPECT_ERROR_WITH(default_batch_norm_folding(), "CAPTION_FOLD_BN='yes'");
  if (saved) {
    setenv("CAPTION_FOLD_BN", previous.c_str(), 1);
  } else {
    unsetenv("CAPTION_FOLD_BN");
  }
}

}  // namespace
}  // namespace caption::nn
