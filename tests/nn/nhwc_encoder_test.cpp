// The encoder's NHWC bfloat16 inference pass (ResNet::forward_nhwc_bf16) on the CPU, where
// its kernels are the reference: it computes the same function as the float32 encoder to
// within bfloat16's own error (that of autocast's NCHW path, measured in the same test),
// and forward() takes it only where it is meant to (a GPU, autocast, nothing to
// differentiate, every batch norm foldable). The GPU's pass against this one is
// tests/nn/cuda_model_test.cpp (CudaModel.NhwcEncoderMatchesCpuTwin).
//
// Why the bound is relative to autocast's error: random ResNets with random batch-norm
// statistics amplify rounding by orders of magnitude (bench/NOTES.md: a random ResNet-50
// turns bfloat16's 2^-9 into ~0.1 relative at its output), so a fixed bound would say
// little. The NHWC pass rounds a little more than autocast's NCHW one (after the bias and
// the residual, and the activations between layers): measured 0.0078 against 0.0068
// (ResNet-18) and 0.0105 against 0.0092 (ResNet-50) at 64x64. A wrong layout, bias,
// residual or ReLU gives errors of order 1.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "engine/autocast.h"
#include "engine/engine.h"
#include "nn/batch_norm_fold.h"
#include "nn/resnet.h"
#include "tests/harness/expect_error.h"
#include "tests/nn/random_resnet.h"

namespace caption::nn {
namespace {

using test_resnet::randomise_batch_norms;
using test_resnet::rel_l2;

struct Net {
  explicit Net(int depth, uint64_t seed = 7) : gen(seed), resnet(resnet_spec(depth), gen) {
    randomise_batch_norms(resnet, gen);
    resnet.eval();
    resnet.set_frozen(true);
  }
  Generator gen;
  ResNet resnet;
};

TEST(NhwcEncoder, MatchesFloat32WithinAutocastsOwnError) {
  for (int depth : {18, 50}) {
    SCOPED_TRACE(depth);
    Net n(depth);
    Generator g(11);
    const Tensor x = rand_normal({2, 3, 64, 64}, 0.0, 1.0, g);
    const Tensor fp32 = n.resnet.forward(x);
    Tensor amp;
    {
      AutocastGuard autocast;
      amp = n.resnet.forward(x);  // the CPU keeps the NCHW path under autocast
    }
    const Tensor nhwc = n.resnet.forward_nhwc_bf16(x);
    ASSERT_EQ(nhwc.shape(), fp32.shape());
    EXPECT_EQ(nhwc.dtype(), DType::F32);
    const double e_amp = rel_l2(amp, fp32), e_nhwc = rel_l2(nhwc, fp32);
    std::printf("resnet%d: relative L2 error against float32: autocast NCHW %.3g, NHWC %.3g\n",
                depth, e_amp, e_nhwc);
    EXPECT_GT(e_amp, 0);  // autocast did round
    EXPECT_LT(e_nhwc, 1.5 * e_amp);  // measured: 1.14x (ResNet-18), 1.14x (ResNet-50)
    EXPECT_LT(e_nhwc, 0.05);
  }
}

// The one-pass fold equals batch norm folding's weights (packed) bit for bit and its bias
// to the last float32 bit, with and without a convolution bias, padded or not.
TEST(NhwcEncoder, FoldPackIsBatchNormFoldingPacked) {
  Generator g(21);
  for (const bool with_bias : {false, true}) {
    for (const int64_t multiple : {1, 8}) {
      SCOPED_TRACE(str("bias ", with_bias, ", multiple ", multiple));
      Conv2d conv(Conv2dSpec{3, 16, 3, 1, 1, 1, with_bias ? Bias::Yes : Bias::No}, g);
      BatchNorm2d bn(16);
      randomise_batch_norms(bn, g);
      conv.set_frozen(true);
      bn.set_frozen(true);
      const FoldedConv2d f = fold_batch_norm(conv, bn);
      const PackedConv k = fold_pack_nhwc(conv.weight, conv.bias, bn.weight, bn.bias, bn.running_mean,
                                          bn.running_var, bn.eps, multiple);
      const Tensor packed = nhwc_pack(f.weight, multiple);
      ASSERT_EQ(k.weight.shape(), packed.shape());
      EXPECT_EQ(k.weight.to_vector<float>(), packed.to_vector<float>());
      // The bias is b * scale + shift rounded twice here; the batch-norm kernel's own
      // x * scale + shift may be one fused multiply-add (-march=native): one float32 step.
      // The step is one of the larger term's (the sum may cancel).
      const std::vector<float> kb = k.bias.to_vector<float>(), fb = f.bias.to_vector<float>();
      const std::vector<float> b = with_bias ? conv.bias.to_vector<float>() : std::vector<float>(16, 0.f);
      const std::vector<float> gamma = bn.weight.to_vector<float>(), beta = bn.bias.to_vector<float>();
      const std::vector<float> mu = bn.running_mean.to_vector<float>(), var = bn.running_var.to_vector<float>();
      for (size_t i = 0; i < fb.size(); ++i) {
        const double scale = gamma[i] / std::sqrt(var[i] + bn.eps), shift = beta[i] - mu[i] * scale;
        EXPECT_NEAR(kb[i], fb[i], 1.2e-7 * (std::abs(b[i] * scale) + std::abs(shift))) << i;
      }
      if (!with_bias) {
        EXPECT_EQ(kb, fb);  // no product: the shift itself
      }
    }
  }
}

// Every gradient of the parameters named with one of `prefixes` (every parameter when
// empty), as one vector; checks that exactly those have one.
Tensor trained_gradients(ResNet& r, std::vector<std::string> prefixes) {
  std::vector<Tensor> grads;
  for (auto& p : r.named_parameters()) {
    bool trained = prefixes.empty();
    for (const std::string& s : prefixes) trained |= p.name.rfind(s, 0) == 0;
    EXPECT_EQ(p.tensor->grad().defined(), trained) << p.name;
    if (trained && p.tensor->grad().defined()) grads.push_back(p.tensor->grad().detach().reshape({-1}));
  }
  return concat(grads, 0);
}

// The NHWC pass's output and gradients against float32, each within `factor` times the
// error of autocast's layer-by-layer pass (which must be nonzero).
void expect_as_close_as_autocast(const char* what, const Tensor& y32, const Tensor& yamp,
                                 const Tensor& ynhwc, const Tensor& g32, const Tensor& gamp,
                                 const Tensor& gnhwc, double factor) {
  const double e_amp = rel_l2(yamp, y32), e_nhwc = rel_l2(ynhwc, y32);
  const double ge_amp = rel_l2(gamp, g32), ge_nhwc = rel_l2(gnhwc, g32);
  std::printf("%s: output error %.3g (autocast %.3g), gradient error %.3g (autocast %.3g)\n",
              what, e_nhwc, e_amp, ge_nhwc, ge_amp);
  EXPECT_GT(e_amp, 0) << what;
  EXPECT_LT(e_nhwc, factor * e_amp) << what;
  EXPECT_LT(ge_nhwc, factor * ge_amp) << what;
}

TEST(NhwcEncoder, ForwardTakesItOnlyOnAGpuUnderAutocastWithFoldableBatchNorms) {
  Net n(18);
  const Tensor x = Tensor::zeros({1, 3, 32, 32});
  AutocastGuard autocast;
  EXPECT_FALSE(n.resnet.runs_nhwc_bf16(x)) << "the CPU keeps the NCHW reference path";
  EXPECT_EQ(n.resnet.nhwc_bf16_stages(x), -1);
  EXPECT_EQ(n.resnet.foldable_stages(), 4);
  // The pass itself runs anywhere, but refuses what it cannot fold.
  EXPECT_EQ(n.resnet.forward_nhwc_bf16(x).shape(), (Shape{1, 512, 1, 1}));
  n.resnet.set_frozen(false);
  n.resnet.train();
  EXPECT_ERROR_WITH(n.resnet.forward_nhwc_bf16(x), "every batch norm of the stem and of the first 4");
}

// A partly fine-tuned encoder (stem, layer1 and layer2 frozen; layer3 and layer4 train):
// the frozen prefix runs in NHWC bfloat16, the rest layer by layer with its gradients,
// which stay as close to float32 as autocast's own.
TEST(NhwcEncoder, FrozenPrefixRunsNhwcAndTheTrainedStagesKeepTheirGradients) {
  Net n(18);
  n.resnet.train();
  n.resnet.stage(3).set_frozen(false);
  n.resnet.stage(4).set_frozen(false);
  EXPECT_EQ(n.resnet.foldable_stages(), 2);
  Generator g(12);
  const Tensor x = rand_normal({2, 3, 64, 64}, 0.0, 1.0, g);
  const Tensor upstream = rand_normal({2, 512, 2, 2}, 0.0, 1.0, g);
  // Output and the trained stages' gradients of one pass; `mode`: 0 float32, 1 autocast
  // layer by layer, 2 autocast with the NHWC prefix.
  auto pass = [&](int mode) {
    for (auto& r : n.resnet.named_parameters())
      if (r.tensor->requires_grad()) r.tensor->zero_grad();
    AutocastGuard autocast(mode > 0);
    const Tensor y = mode == 2 ? n.resnet.forward_nhwc_bf16(x, 2) : n.resnet.forward(x);
    sum(mul(y, upstream)).backward();
    return std::pair{y.detach(), trained_gradients(n.resnet, {"layer3", "layer4"})};
  };
  const auto [y32, g32] = pass(0);
  const auto [yamp, gamp] = pass(1);
  const auto [ynhwc, gnhwc] = pass(2);
  expect_as_close_as_autocast("prefix of 2 stages", y32, yamp, ynhwc, g32, gamp, gnhwc, 1.5);
  EXPECT_ERROR_WITH(n.resnet.forward_nhwc_bf16(x, 3), "first 3 stage(s) must be foldable");
}

// The same partly fine-tuned encoder with its trained stages in NHWC bfloat16 too
// (forward_nhwc_bf16 with train_nhwc, what forward() does on a GPU under autocast): every
// trained batch norm runs as batch_norm_nhwc with batch statistics, none as batch_norm2d;
// output, gradients and the running statistics' update stay as close to float32 as
// autocast's layer-by-layer pass.
TEST(NhwcEncoder, TrainedStagesRunNhwcWithBatchStatistics) {
  Net n(18);
  n.resnet.train();
  n.resnet.stage(3).set_frozen(false);
  n.resnet.stage(4).set_frozen(false);
  Generator g(13);
  const Tensor x = rand_normal({2, 3, 64, 64}, 0.0, 1.0, g);
  const Tensor upstream = rand_normal({2, 512, 2, 2}, 0.0, 1.0, g);
  {
    AutocastGuard autocast;
    EXPECT_EQ(n.resnet.nhwc_train_stages(x), 0) << "the CPU keeps the reference path";
  }
  std::vector<Tensor> initial;  // running statistics before any pass
  for (auto& r : n.resnet.named_buffers()) initial.push_back(r.tensor->clone());
  auto restore = [&] {
    size_t i = 0;
    for (auto& r : n.resnet.named_buffers()) r.tensor->copy_(initial[i++]);
  };
  auto moved = [&] {  // how far each running statistic moved, one vector
    std::vector<Tensor> d;
    size_t i = 0;
    for (auto& r : n.resnet.named_buffers()) d.push_back(sub(*r.tensor, initial[i++]).reshape({-1}));
    return concat(d, 0);
  };
  // `mode`: 0 float32, 1 autocast layer by layer (prefix folded in NHWC), 2 autocast with
  // the trained stages in NHWC.
  auto pass = [&](int mode) {
    restore();
    for (auto& r : n.resnet.named_parameters())
      if (r.tensor->requires_grad()) r.tensor->zero_grad();
    AutocastGuard autocast(mode > 0);
    OpProfile::enable(true);
    OpProfile::reset();
    const Tensor y = mode == 0 ? n.resnet.forward(x) : n.resnet.forward_nhwc_bf16(x, 2, mode == 2);
    sum(mul(y, upstream)).backward();
    const long nhwc = OpProfile::calls(OpId::BatchNormNhwc, false, DeviceType::CPU);
    const long nhwc_back = OpProfile::calls(OpId::BatchNormNhwc, true, DeviceType::CPU);
    const long nchw = OpProfile::calls(OpId::BatchNorm2d, false, DeviceType::CPU);
    OpProfile::enable(false);
    // layer3 and layer4 of ResNet-18: two blocks of two batch norms, plus a downsample.
    EXPECT_EQ(nhwc, mode == 2 ? 10 : 0);
    EXPECT_EQ(nhwc_back, mode == 2 ? 10 : 0);
    if (mode > 0) {
      EXPECT_EQ(nchw, mode == 2 ? 0 : 10);  // the prefix folds: no batch norm there
    }
    return std::tuple{y.detach(), trained_gradients(n.resnet, {"layer3", "layer4"}), moved()};
  };
  const auto [y32, g32, m32] = pass(0);
  const auto [yamp, gamp, mamp] = pass(1);
  const auto [ynhwc, gnhwc, mnhwc] = pass(2);
  expect_as_close_as_autocast("trained stages in NHWC", y32, yamp, ynhwc, g32, gamp, gnhwc, 2);
  const double me_amp = rel_l2(mamp, m32), me_nhwc = rel_l2(mnhwc, m32);
  std::printf("trained stages in NHWC: running statistics' update %.3g (autocast %.3g)\n",
              me_nhwc, me_amp);
  EXPECT_LT(me_nhwc, 2 * me_amp + 1e-3);
  EXPECT_LT(me_nhwc, 0.05);
  restore();
}

// --fine-tune all: the whole trunk trains in NHWC bfloat16 (forward_nhwc_train): the stem
// on the input padded to 8 channels, max pooling with its gradient, every batch norm with
// batch statistics; every parameter gets its gradient, as close to float32's as
// autocast's layer-by-layer pass gets.
TEST(NhwcEncoder, WholeTrunkTrainsNhwc) {
  Net n(18);
  n.resnet.set_frozen(false);
  n.resnet.train();
  EXPECT_TRUE(n.resnet.trains_all_nhwc());
  Generator g(14);
  const Tensor x = rand_normal({2, 3, 64, 64}, 0.0, 1.0, g);
  const Tensor upstream = rand_normal({2, 512, 2, 2}, 0.0, 1.0, g);
  auto pass = [&](int mode) {  // 0 float32, 1 autocast layer by layer, 2 NHWC
    for (auto& r : n.resnet.named_parameters()) r.tensor->zero_grad();
    AutocastGuard autocast(mode > 0);
    OpProfile::enable(true);
    OpProfile::reset();
    const Tensor y = mode == 2 ? n.resnet.forward_nhwc_train(x) : n.resnet.forward(x);
    sum(mul(y, upstream)).backward();
    const long nhwc = OpProfile::calls(OpId::BatchNormNhwc, true, DeviceType::CPU);
    const long pool = OpProfile::calls(OpId::MaxPoolNhwc, true, DeviceType::CPU);
    const long nchw = OpProfile::calls(OpId::BatchNorm2d, false, DeviceType::CPU);
    OpProfile::enable(false);
    EXPECT_EQ(nhwc, mode == 2 ? 20 : 0);  // stem 1, layers 4 + 5 + 5 + 5
    EXPECT_EQ(pool, mode == 2 ? 1 : 0);
    EXPECT_EQ(nchw, mode == 2 ? 0 : 20);
    return std::pair{y.detach(), trained_gradients(n.resnet, {})};
  };
  const auto [y32, g32] = pass(0);
  const auto [yamp, gamp] = pass(1);
  const auto [ynhwc, gnhwc] = pass(2);
  expect_as_close_as_autocast("whole trunk in NHWC", y32, yamp, ynhwc, g32, gamp, gnhwc, 2);
  n.resnet.stage(1).set_frozen(true);
  EXPECT_FALSE(n.resnet.trains_all_nhwc());
  EXPECT_ERROR_WITH(n.resnet.forward_nhwc_train(x), "every batch norm must train with batch statistics");
}

TEST(NhwcEncoder, EnvironmentSwitchIsCheckedByName) {
  ASSERT_EQ(setenv("CAPTION_ENCODER_NHWC", "0", 1), 0);
  EXPECT_FALSE(default_encoder_nhwc());
  ASSERT_EQ(setenv("CAPTION_ENCODER_NHWC", "yes", 1), 0);
  EXPECT_ERROR_WITH(default_encoder_nhwc(), "CAPTION_ENCODER_NHWC='yes' is neither 0 nor 1");
  ASSERT_EQ(unsetenv("CAPTION_ENCODER_NHWC"), 0);
  EXPECT_TRUE(default_encoder_nhwc());
}

}  // namespace
}  // namespace caption::nn
