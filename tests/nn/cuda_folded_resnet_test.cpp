// The folded inference snapshot of a ResNet trunk (nn/folded_resnet.h) on a GPU: in
// float32 it equals the trunk folding every pair itself bit for bit (and the CPU snapshot
// to float32 rounding); under autocast it runs the NHWC bfloat16 pass with the weights
// packed once, equal bit for bit to the trunk's own NHWC pass (which packs them at every
// call); passes are recorded as graphs per shape and replays equal eager passes; and the
// recordings read the snapshot, not the source's later weights.
// Skipped without a GPU; CAPTION_REQUIRE_GPU=1 turns the skips into failures.
#include <gtest/gtest.h>

#include <vector>

#include "engine/autocast.h"
#include "engine/graph.h"
#include "nn/folded_resnet.h"
#include "tests/harness/gpu.h"
#include "tests/harness/harness.h"
#include "tests/nn/random_resnet.h"

namespace caption::nn {
namespace {

using test_resnet::batch_norms;
using test_resnet::randomise_batch_norms;
using test_resnet::rel_l2;

std::vector<float> host(const Tensor& t) { return t.to(Device::cpu()).contiguous().to_vector<float>(); }

// A ResNet-18 with random batch norms, in Eval mode, on `device`; the same seed gives the
// same weights on every device.
struct Net {
  explicit Net(Device device) : gen(7), resnet(resnet_spec(18), gen) {
    randomise_batch_norms(resnet, gen);
    resnet.eval();
    resnet.to(device);
  }
  Generator gen;
  ResNet resnet;
};

std::vector<Tensor> images(Device device) {
  Generator g(11);
  std::vector<Tensor> v;
  for (int i = 0; i < 4; ++i) v.push_back(rand_normal({2, 3, 64, 64}, 0.0, 1.0, g).to(device));
  return v;
}

// The source's own pass: every pair folded (recomputed at the call), without graphs.
Tensor source_pass(ResNet& r, const Tensor& x) {
  NoGradGuard no_grad;
  r.batch_norm_folding = BatchNormFolding::Always;
  return r.forward(x);
}

void expect_snapshot_equals_source(bool amp, bool nhwc = true) {
  const Device d = Device::cuda(0);
  Net gpu(d);
  gpu.resnet.nhwc_bf16 = nhwc;
  AutocastGuard autocast(amp);
  const FoldedResNet folded(gpu.resnet);
  EXPECT_EQ(folded.device(), d);
  const std::vector<Tensor> xs = images(d);
  std::vector<std::vector<float>> got;
  for (const Tensor& x : xs) got.push_back(host(folded.forward(x)));
  const bool graphs = DeviceGraph::enabled(d);
  if (graphs) {  // first pass eager, second recorded, then replays
    EXPECT_EQ(folded.runner_stats().eager_passes, 1);
    EXPECT_EQ(folded.runner_stats().captures, 1);
    EXPECT_EQ(folded.runner_stats().replays, 3);
    EXPECT_EQ(folded.runner_stats().failed_captures, 0);
  }
  for (size_t i = 0; i < xs.size(); ++i) {
    EXPECT_EQ(got[i], host(source_pass(gpu.resnet, xs[i]))) << "pass " << i << (amp ? " amp" : "");
    if (graphs) {  // the same pass without the recording
      DeviceGraph::set_enabled(false);
      EXPECT_EQ(got[i], host(folded.forward(xs[i]))) << "pass " << i;
      DeviceGraph::set_enabled(true);
    }
  }
  // Against the CPU snapshot in float32: float32 rounding, or under autocast bfloat16's
  // (activations rounded at every layer: 0.0077 measured on the emulator, bound 2e-2).
  Net cpu(Device::cpu());
  AutocastGuard cpu_float32(false);
  const FoldedResNet on_cpu(cpu.resnet);
  const Tensor want = on_cpu.forward(xs[0].to(Device::cpu()));
  EXPECT_LT(rel_l2(Tensor::from_vector<float>(got[0], want.shape()), want), amp ? 2e-2 : 1e-5);
}

TEST(CudaFoldedResNet, Float32EqualsTheTrunkFoldingItself) {
  CAPTION_REQUIRE_CUDA_OR_SKIP();
  expect_snapshot_equals_source(false);
}

TEST(CudaFoldedResNet, AutocastRunsTheNhwcPassWithWeightsPackedOnce) {
  CAPTION_REQUIRE_CUDA_OR_SKIP();
  expect_snapshot_equals_source(true);
}

// CAPTION_ENCODER_NHWC=0 (nhwc_bf16 off): under autocast the snapshot, as the trunk, runs
// layer by layer in NCHW, autocast rounding each convolution's operands.
TEST(CudaFoldedResNet, AutocastWithoutNhwcRunsLayerByLayer) {
  CAPTION_REQUIRE_CUDA_OR_SKIP();
  expect_snapshot_equals_source(true, false);
}

// The recorded passes read the snapshot's weights: changing the source's statistics
// afterwards changes neither eager passes nor replays.
TEST(CudaFoldedResNet, RecordingsReadTheSnapshot) {
  CAPTION_REQUIRE_CUDA_OR_SKIP();
  const Device d = Device::cuda(0);
  Net gpu(d);
  AutocastGuard autocast(true);
  const FoldedResNet folded(gpu.resnet);
  const std::vector<Tensor> xs = images(d);
  const std::vector<float> first = host(folded.forward(xs[0]));
  {
    NoGradGuard no_grad;
    for (BatchNorm2d* bn : batch_norms(gpu.resnet)) bn->running_var.copy_(mul(bn->running_var, 2.0));
  }
  for (int i = 0; i < 3; ++i) EXPECT_EQ(host(folded.forward(xs[0])), first) << "pass " << i + 2;
  EXPECT_NE(host(source_pass(gpu.resnet, xs[0])), first);
}

}  // namespace
}  // namespace caption::nn
