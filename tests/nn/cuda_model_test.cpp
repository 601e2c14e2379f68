// The whole model on the GPU against the CPU reference, on small configurations: the
// encoder (inference, and training-mode batch norm), a full training step with the
// encoder fine-tuned from layer 3 (loss, every gradient, running statistics, AdamW
// updates, gradient clipping), greedy and beam decoding (with and without CUDA graphs),
// device graphs themselves, and the caching allocator's promise that a steady training
// step obtains no new device memory (no cudaMalloc).
// Skipped without a GPU; CAPTION_REQUIRE_GPU=1 turns the skips into failures.
//
// Tolerances: relative L2 error per tensor, ||gpu - cpu|| / ||cpu||. Float32 on both
// sides (TF32 is off unless CAPTION_TF32=1, which these tests refuse), summed in other
// orders (cuDNN's algorithms, cuBLAS's tiling), so values agree to a few ulps per
// operation: 1e-5 for forward values, 1e-4 for gradients and updated parameters, whose
// errors compound through the backward pass and, for AdamW, through a division by
// sqrt(v).
#include <chrono>
#include <thread>
#include <atomic>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <set>
#include <thread>
#include <tuple>

#include "engine/allocator.h"
#include "engine/autocast.h"
#include "engine/backend.h"
#include "engine/graph.h"
#include "nn/caption_model.h"
#include "nn/encoder_graph.h"
#include "nn/step_graph.h"
#include "nn/optim.h"
#include "nn/parameters.h"
#include "nn/recurrence.h"
#include "tests/harness/harness.h"
#include "tests/harness/gpu.h"
#include "tests/nn/small_decoder.h"

namespace caption::nn {
namespace {

double rel_error(const Tensor& got, const Tensor& ref) {
  const std::vector<double> g = got.to(Device::cpu()).to(DType::F64).contiguous().to_vector<double>();
  const std::vector<double> r = ref.to(Device::cpu()).to(DType::F64).contiguous().to_vector<double>();
  EXPECT_EQ(g.size(), r.size());
  double diff = 0, norm = 0;
  for (size_t i = 0; i < g.size() && i < r.size(); ++i) {
    diff += (g[i] - r[i]) * (g[i] - r[i]);
    norm += r[i] * r[i];
  }
  if (norm == 0) return std::sqrt(diff);
  return std::sqrt(diff / norm);
}

::testing::AssertionResult close(const Tensor& got, const Tensor& ref, double tol,
                                 const std::string& what) {
  if (!got.defined() || !ref.defined())
    return ::testing::AssertionFailure() << what << ": undefined tensor";
  if (got.shape() != ref.shape())
    return ::testing::AssertionFailure() << what << ": shape " << got.describe() << " vs "
                                         << ref.describe();
  const double e = rel_error(got, ref);
  if (std::isfinite(e) && e <= tol) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << what << ": relative L2 error " << e << " > " << tol;
}

ModelConfig small_config(const std::string& encoder, const std::string& fine_tune) {
  ModelConfig c;
  c.encoder = encoder;
  c.encoder_size = 2;
  c.image_size = 64;
  c.vocab_size = 13;
  c.embed_dim = 16;
  c.decoder_dim = 24;
  c.attention_dim = 20;
  c.dropout = 0.0;
  c.max_decode_len = 6;
  c.fine_tune = FineTune::parse(fine_tune);
  c.text = {{"lowercase", true}};
  return c;
}

// A model with random weights and non-trivial running statistics on the CPU, and its
// exact copy on cuda:0.
struct Pair {
  std::unique_ptr<CaptionModel> cpu, gpu;
};

Pair make_pair(const ModelConfig& c, uint64_t seed) {
  Pair p;
  Generator g1(seed), g2(seed);
  p.cpu = std::make_unique<CaptionModel>(c, g1);
  p.gpu = std::make_unique<CaptionModel>(c, g2);
  Generator stats(seed + 1000);
  for (const auto& r : p.cpu->named_buffers()) {
    Tensor& t = *r.tensor;
    if (r.name.find("running_mean") != std::string::npos)
      t.copy_(rand_normal(t.shape(), 0.0, 0.2, stats));
    else if (r.name.find("running_var") != std::string::npos)
      t.copy_(rand_uniform(t.shape(), 0.5, 2.0, stats));
  }
  p.gpu->to(Device::cuda(0));
  auto cpu_state = p.cpu->named_state();
  auto gpu_state = p.gpu->named_state();
  EXPECT_EQ(cpu_state.size(), gpu_state.size());
  for (size_t i = 0; i < cpu_state.size() && i < gpu_state.size(); ++i) {
    EXPECT_EQ(cpu_state[i].name, gpu_state[i].name);
    NoGradGuard ng;
    gpu_state[i].tensor->copy_(cpu_state[i].tensor->to(Device::cuda(0)));
  }
  return p;
}

CaptionBatch caption_batch() { return testing::three_captions(); }

void skip_unless_full_float32() {
  const char* tf32 = std::getenv("CAPTION_TF32");
  if (tf32 != nullptr && std::string(tf32) == "1")
    GTEST_SKIP() << "CAPTION_TF32=1: these tolerances are for full float32";
}

TEST(CudaModel, EncoderInferenceMatchesCpu) {
  CAPTION_REQUIRE_CUDA_OR_SKIP();
  skip_unless_full_float32();
  for (const char* depth : {"resnet18", "resnet50"}) {
    Pair p = make_pair(small_config(depth, "none"), 3);
    p.cpu->eval();
    p.gpu->eval();
    Generator g(4);
    const Tensor images = rand_normal({2, 3, 64, 64}, 0, 1, g);
    NoGradGuard ng;
    const Tensor ref = p.cpu->encode(images);
    const Tensor got = p.gpu->encode(images.to(Device::cuda(0)));
    EXPECT_TRUE(got.device().is_cuda());
    EXPECT_TRUE(close(got, ref, 1e-5, str(depth, " features")));
  }
}

// The GPU's NHWC features against their CPU twin: much closer than bfloat16 is to float32
// (the devices part only where a float32 sum lies near a bfloat16 rounding boundary).
void expect_close_to_twin(const std::string& what, const Tensor& got, const Tensor& twin,
                          const Tensor& fp32) {
  const double bf16_error = rel_error(twin, fp32), device_error = rel_error(got, twin);
  std::printf("%s: NHWC bfloat16 against float32 %.3g, GPU against its CPU twin %.3g\n",
              what.c_str(), bf16_error, device_error);
  EXPECT_GT(bf16_error, 0) << what;
  EXPECT_LT(device_error, 0.5 * bf16_error + 1e-6) << what;
}

// The encoder's NHWC bfloat16 pass (ResNet::forward_nhwc_bf16): forward() takes it on the
// GPU under autocast in Eval mode, and it agrees with its CPU twin far better than
// bfloat16 agrees with float32: the two devices round the same float32 products, summed in
// other orders, so they part only where a product lies near a bfloat16 rounding boundary.
TEST(CudaModel, NhwcEncoderMatchesCpuTwin) {
  CAPTION_REQUIRE_CUDA_OR_SKIP();
  for (const char* depth : {"resnet18", "resnet50"}) {
    SCOPED_TRACE(depth);
    Pair p = make_pair(small_config(depth, "none"), 5);
    p.cpu->eval();
    p.gpu->eval();
    Generator g(6);
    const Tensor images = rand_normal({2, 3, 64, 64}, 0, 1, g);
    const Tensor on_gpu = images.to(Device::cuda(0));
    {
      AutocastGuard autocast;  // an input to differentiate keeps the general path
      Tensor trainable = on_gpu.clone();
      trainable.set_requires_grad(true);
      EXPECT_FALSE(p.gpu->encoder.runs_nhwc_bf16(trainable));
    }
    NoGradGuard ng;
    const Tensor fp32 = p.cpu->encoder.forward(images);
    const Tensor twin = p.cpu->encoder.forward_nhwc_bf16(images);
    Tensor got;
    {
      AutocastGuard autocast;
      EXPECT_TRUE(p.gpu->encoder.runs_nhwc_bf16(on_gpu));
      got = p.gpu->encoder.forward(on_gpu);
      p.gpu->encoder.nhwc_bf16 = false;
      EXPECT_FALSE(p.gpu->encoder.runs_nhwc_bf16(on_gpu));
      p.gpu->encoder.nhwc_bf16 = true;
    }
    EXPECT_FALSE(p.gpu->encoder.runs_nhwc_bf16(on_gpu)) << "autocast is off here";
    expect_close_to_twin(depth, got, twin, fp32);
  }
}

// An encoder training under autocast on the GPU (fine_tune "from:3": the stem, layer1 and
// layer2 frozen, run folded in NHWC bfloat16, layers 3-4 training in NHWC bfloat16 too;
// "all": the whole trunk training in NHWC) against its CPU twin (forward_nhwc_bf16(x, 2,
// true), or forward_nhwc_train): output, the trained parameters' gradients and the running
// statistics agree with the twin far better than with float32.
void expect_nhwc_training_matches_twin(const char* depth, const char* fine_tune) {
  SCOPED_TRACE(std::string(depth) + " " + fine_tune);
  Pair p = make_pair(small_config(depth, fine_tune), 8);
  const bool all = std::string(fine_tune) == "all";
  p.cpu->train();
  p.gpu->train();
  Generator g(9);
  const Tensor images = rand_normal({2, 3, 64, 64}, 0, 1, g);
  const Tensor on_gpu = images.to(Device::cuda(0));
  std::vector<Tensor> initial;  // the running statistics before a pass
  for (auto& r : p.cpu->encoder.named_buffers()) initial.push_back(r.tensor->clone());
  // One pass of `model`'s encoder: output, every trained gradient (one vector) and the
  // running statistics after it (one vector), from the same starting statistics. `mode`:
  // 0 float32, 1 forward() under autocast, 2 the NHWC twin.
  auto pass = [&](CaptionModel& model, const Tensor& x, int mode) {
    size_t i = 0;
    for (auto& r : model.encoder.named_buffers()) r.tensor->copy_(initial[i++].to(x.device()));
    for (auto& r : model.encoder.named_parameters())
      if (r.tensor->requires_grad()) r.tensor->zero_grad();
    AutocastGuard autocast(mode > 0);
    const Tensor y = mode < 2 ? model.encoder.forward(x)
                     : all    ? model.encoder.forward_nhwc_train(x)
                              : model.encoder.forward_nhwc_bf16(x, 2, true);
    Generator up(10);
    sum(mul(y, rand_normal(y.shape(), 0, 1, up).to(x.device()))).backward();
    std::vector<Tensor> grads, stats;
    for (auto& r : model.encoder.named_parameters())
      if (r.tensor->requires_grad()) grads.push_back(r.tensor->grad().reshape({-1}).to(Device::cpu()));
    for (auto& r : model.encoder.named_buffers())
      stats.push_back(r.tensor->reshape({-1}).to(Device::cpu()));
    return std::tuple{y.detach().to(Device::cpu()), concat(grads, 0), concat(stats, 0)};
  };
  {
    AutocastGuard autocast;
    EXPECT_EQ(p.gpu->encoder.nhwc_bf16_stages(on_gpu), all ? -1 : 2);
    EXPECT_EQ(p.gpu->encoder.nhwc_train_stages(on_gpu), all ? 4 : 2);
  }
  const auto [y32, g32, s32] = pass(*p.cpu, images, 0);
  const auto [ytwin, gtwin, stwin] = pass(*p.cpu, images, 2);
  const auto [ygpu, ggpu, sgpu] = pass(*p.gpu, on_gpu, 1);  // forward(): the NHWC paths
  expect_close_to_twin(str(fine_tune, ", output"), ygpu, ytwin, y32);
  expect_close_to_twin(str(fine_tune, ", trained gradients"), ggpu, gtwin, g32);
  expect_close_to_twin(str(fine_tune, ", running statistics"), sgpu, stwin, s32);
}

TEST(CudaModel, NhwcPartlyFineTunedEncoderTrainsLikeCpuTwin) {
  CAPTION_REQUIRE_CUDA_OR_SKIP();
  skip_unless_full_float32();
  expect_nhwc_training_matches_twin("resnet50", "from:3");
}

TEST(CudaModel, NhwcWhollyFineTunedEncoderTrainsLikeCpuTwin) {
  CAPTION_REQUIRE_CUDA_OR_SKIP();
  skip_unless_full_float32();
  expect_nhwc_training_matches_twin("resnet18", "all");
}

TEST(CudaModel, TrainingModeBatchNormMatchesCpu) {
  CAPTION_REQUIRE_CUDA_OR_SKIP();
  skip_unless_full_float32();
  Pair p = make_pair(small_config("resnet18", "all"), 5);
  p.cpu->train();
  p.gpu->train();
  Generator g(6);
  const Tensor images = rand_normal({3, 3, 64, 64}, 0, 1, g);
  const Tensor ref = p.cpu->encode(images);
  const Tensor got = p.gpu->encode(images.to(Device::cuda(0)));
  EXPECT_TRUE(close(got, ref, 1e-5, "features"));
  auto cb = p.cpu->named_buffers(), gb = p.gpu->named_buffers();
  ASSERT_EQ(cb.size(), gb.size());
  for (size_t i = 0; i < cb.size(); ++i)
    EXPECT_TRUE(close(*gb[i].tensor, *cb[i].tensor, 1e-5, cb[i].name));
}

// One model's training loop: encode (layers 3 and 4 train), decode, loss, backward,
// clip, AdamW. Returns the losses.
struct Trainer {
  CaptionModel& model;
  Device device;
  ParameterStore store;
  std::unique_ptr<AdamW> opt;
  Trainer(CaptionModel& m, Device d) : model(m), device(d), store(d) {
    for (auto& r : model.named_parameters()) store.add(r.name, *r.tensor);
    store.finalize();
    opt = std::make_unique<AdamW>(store, AdamWConfig{});
  }
  // amp: the decoder under autocast (the encoder in float32; its bfloat16 convolutions
  // are compared on their own, with their own tolerance).
  LossParts forward_backward(const Tensor& images, const CaptionBatch& batch, bool amp = false) {
    opt->zero_grad();
    Generator g(0);
    const Tensor features = model.encode(images.to(device));
    AutocastGuard autocast(amp);
    DecoderOutput out = model.decoder.forward(features, batch, 1.0, g);
    LossParts loss = caption_loss(out, 1.0);
    loss.total.backward();
    return loss;
  }
};

// The same model in training mode on both devices, each with its store and AdamW, and one
// batch of images and captions.
struct TrainingPair {
  Pair p;
  Trainer cpu, gpu;
  Tensor images;
  CaptionBatch batch = caption_batch();
  TrainingPair(const std::string& fine_tune, uint64_t seed)
      : p(make_pair(small_config("resnet18", fine_tune), seed)),
        cpu((p.cpu->train(), *p.cpu), Device::cpu()),
        gpu((p.gpu->train(), *p.gpu), Device::cuda(0)) {
    Generator g(seed + 1);
    images = rand_normal({3, 3, 64, 64}, 0, 1, g);
  }
  // Every trainable parameter's gradient, GPU against CPU; returns how many were compared.
  // full_att.bias is left out: its gradient is zero in exact arithmetic (softmax ignores
  // a shift), so both devices hold roundoff of different sums there.
  int expect_gradients_close(double tol) {
    int checked = 0;
    for (const auto& e : cpu.store.entries()) {
      if (!e.trainable() || e.name == "decoder.full_att.bias") continue;
      EXPECT_TRUE(close(gpu.store.grad(e.name), cpu.store.grad(e.name), tol, "grad " + e.name));
      ++checked;
    }
    return checked;
  }
};

// Three training steps. Each step compares the GPU's loss and gradients with the CPU's
// from the same weights; then both devices clip and step the CPU's gradients, so that
// the optimiser and the clipping are compared on equal inputs and the next step starts
// from equal weights again. Without that hand-over the devices drift apart: AdamW's
// first steps move every element by about lr whatever the size of its gradient, so an
// element whose gradient is small enough for roundoff to flip its sign moves the other
// way on the other device, and on an H100 (cuDNN's sums in other orders than the CPU's)
// the layer 3-4 gradients were 1% apart after one step and 10% after two.
TEST(CudaModel, FineTunedTrainingStepMatchesCpu) {
  CAPTION_REQUIRE_CUDA_OR_SKIP();
  skip_unless_full_float32();
  TrainingPair t("from:3", 7);
  Trainer &cpu = t.cpu, &gpu = t.gpu;
  Pair& p = t.p;
  for (int step = 0; step < 3; ++step) {
    SCOPED_TRACE(str("step ", step));
    LossParts lc = cpu.forward_backward(t.images, t.batch);
    LossParts lg = gpu.forward_backward(t.images, t.batch);
    EXPECT_TRUE(close(lg.cross_entropy, lc.cross_entropy, 1e-5, "cross-entropy"));
    EXPECT_TRUE(close(lg.attention, lc.attention, 1e-4, "attention term"));
    EXPECT_GT(t.expect_gradients_close(1e-4), 18);  // decoder's 18, layers 3-4
    const double own_norm_gpu = [&] {
      NoGradGuard ng;
      return std::sqrt(sum(mul(gpu.store.grads(), gpu.store.grads())).to(Device::cpu()).item());
    }();
    {
      NoGradGuard ng;
      gpu.store.grads().copy_(cpu.store.grads().to(Device::cuda(0)));
    }
    const double norm_cpu = clip_grad_norm(cpu.store, 1.0);
    const double norm_gpu = clip_grad_norm(gpu.store, 1.0);
    EXPECT_NEAR(own_norm_gpu, norm_cpu, 1e-4 * norm_cpu) << "the GPU's own gradients' norm";
    EXPECT_NEAR(norm_gpu, norm_cpu, 1e-6 * norm_cpu);
    EXPECT_TRUE(close(gpu.store.grads(), cpu.store.grads(), 1e-6, "clipped gradients"));
    cpu.opt->step();
    gpu.opt->step();
    // Equal inputs: AdamW's update differs by a few ulps at most.
    for (const auto& e : cpu.store.entries())
      EXPECT_TRUE(close(gpu.store.get(e.name), cpu.store.get(e.name), 1e-6, "value " + e.name));
  }
  // Layer 3 and 4's batch norms ran in training mode: their running statistics moved.
  auto cb = p.cpu->named_buffers(), gb = p.gpu->named_buffers();
  ASSERT_EQ(cb.size(), gb.size());
  for (size_t i = 0; i < cb.size(); ++i)
    EXPECT_TRUE(close(*gb[i].tensor, *cb[i].tensor, 1e-4, cb[i].name));
}

// Autocast: the GPU's bfloat16 tensor-core products against the CPU twin (rounded
// operands, float32 sgemm). Each product multiplies the same bfloat16 values on both
// sides and only the order of its float32 sums differs; but the operands of the next
// product are those sums rounded to bfloat16, and a sum that lies near a rounding
// boundary lands one bfloat16 step (2^-8 relative) apart. Such steps carry into every
// later value, so how far the twins drift apart depends on how differently the sums are
// ordered (the host emulator of tools/cuda_emu, whose order is nearly the CPU's: 2.5e-4
// relative L2 at most; an H100: 1.9e-3 for decoder.encoder_att.weight). The bound is
// therefore relative to what bfloat16 itself does to the gradients, measured here as
// the CPU twin's distance from float32: per parameter the GPU stays closer to its twin
// than bfloat16 is to float32 (or within 1e-3), and over all parameters the twins'
// distance is at most half of bfloat16's (RMS of the relative L2 errors). A GPU path
// that skipped the rounding (float32 or TF32 products) or rounded otherwise would be
// about as far from the twin as bfloat16 is from float32.
TEST(CudaModel, AutocastTrainingStepMatchesCpuTwin) {
  CAPTION_REQUIRE_CUDA_OR_SKIP();
  skip_unless_full_float32();
  TrainingPair t("none", 13);
  const LossParts l32 = t.cpu.forward_backward(t.images, t.batch, /*amp=*/false);
  std::vector<std::pair<std::string, Tensor>> f32;  // the float32 gradients
  for (const auto& e : t.cpu.store.entries())
    if (e.trainable() && e.name != "decoder.full_att.bias")
      f32.emplace_back(e.name, t.cpu.store.grad(e.name).clone());
  LossParts lc = t.cpu.forward_backward(t.images, t.batch, /*amp=*/true);
  LossParts lg = t.gpu.forward_backward(t.images, t.batch, /*amp=*/true);
  // The loss by the rule of the gradients' RMS below: the GPU at most half as far from its
  // twin as bfloat16 is from float32 (or within 1e-5); a GPU that skipped the rounding
  // would be as far as bfloat16. The emulator's distance depends on how OpenBLAS's kernels
  // order the sums (measured: 0 with its SSE3 kernels, 4.6e-6 with AVX2, 1.1e-5 with
  // AVX-512), bfloat16's own is ~7e-5.
  const double loss_bf16 = rel_error(lc.total, l32.total);
  std::printf("autocast loss GPU vs twin %.3e, twin vs float32 %.3e\n", rel_error(lg.total, lc.total), loss_bf16);
  EXPECT_GT(loss_bf16, 0.0) << "autocast changed nothing in the loss";
  EXPECT_TRUE(close(lg.total, lc.total, std::max(1e-5, 0.5 * loss_bf16), "loss"));
  double twin2 = 0, bf162 = 0;
  for (const auto& [name, grad32] : f32) {
    const Tensor cpu = t.cpu.store.grad(name), gpu = t.gpu.store.grad(name);
    ASSERT_EQ(gpu.shape(), cpu.shape()) << name;
    const double twin = rel_error(gpu, cpu), bf16 = rel_error(cpu, grad32);
    std::printf("autocast grad %-28s GPU vs twin %.3e, twin vs float32 %.3e\n", name.c_str(), twin, bf16);
    EXPECT_LE(twin, std::max(1e-3, bf16)) << "grad " << name << ": the GPU is farther from its twin "
                                          << "than bfloat16 is from float32";
    twin2 += twin * twin;
    bf162 += bf16 * bf16;
  }
  EXPECT_EQ(f32.size(), 18u);  // the decoder's (the encoder is frozen)
  EXPECT_GT(bf162, 0.0) << "autocast changed no gradient: the comparison would be empty";
  EXPECT_LE(std::sqrt(twin2), 0.5 * std::sqrt(bf162)) << "RMS over " << f32.size() << " parameters";
}

// Under autocast on a GPU a RecurrentLinear converts its weight to bfloat16 once and
// every step's products read that copy: the forward and the backward's input gradient
// (the weight gradient reads no weight). The copy holds the rounding the products would
// make themselves, so results are the unshadowed ones bit for bit; a copy holding 2w
// shows that both products read it.
TEST(CudaRecurrentLinear, AutocastStepsReadOneBfloat16CopyOfTheWeight) {
  CAPTION_REQUIRE_CUDA_OR_SKIP();
  const Device d = Device::cuda(0), cpu = Device::cpu();
  Generator g(5);
  const Tensor w = caption::testing::random_tensor({40, 48}, g, DType::F32, d, -0.3, 0.3);
  const Tensor b = caption::testing::random_tensor({40}, g, DType::F32, d);
  const Tensor x0 = caption::testing::random_tensor({5, 48}, g, DType::F32, d);
  const Tensor gy = caption::testing::random_tensor({5, 40}, g, DType::F32, d);
  AutocastGuard autocast;
  auto run = [&](const Tensor& weight, bool via_recurrent, double copy_scale) {
    Tensor wl = weight.detach().clone();
    wl.set_requires_grad(true);
    Tensor x = x0.detach().clone();
    x.set_requires_grad(true);
    Tensor y;
    if (via_recurrent) {
      RecurrentLinear r(wl, b);
      Tensor copy = r.bf16_weight();
      EXPECT_TRUE(copy.defined() && copy.dtype() == DType::BF16 && copy.shape() == w.shape());
      EXPECT_TRUE(caption::testing::equal(copy.to(cpu).to(DType::F32), wl.detach().to(cpu).to(DType::BF16).to(DType::F32),
                        "the copy is the weight's bfloat16 rounding"));
      if (copy_scale != 1.0)
        copy.copy_(mul(wl.detach(), copy_scale).to(cpu).to(DType::BF16).to(d));
      y = r(x);
      sum(mul(y, gy)).backward();  // runs the step's node and then the weight node
    } else {
      y = linear(x, wl, b);
      sum(mul(y, gy)).backward();
    }
    return std::pair<Tensor, Tensor>{y.detach().to(cpu), x.grad().to(cpu)};
  };
  const auto [y_plain, dx_plain] = run(w, false, 1.0);
  const auto [y_copy, dx_copy] = run(w, true, 1.0);
  EXPECT_TRUE(caption::testing::equal(y_copy, y_plain, "forward"));
  EXPECT_TRUE(caption::testing::equal(dx_copy, dx_plain, "input gradient"));
  const auto [y_twice, dx_twice] = run(w, true, 2.0);
  const auto [y_ref, dx_ref] = run(mul(w, 2.0), false, 1.0);
  EXPECT_TRUE(caption::testing::allclose(y_twice, y_ref, {1e-5, 1e-5}, "forward reads the copy"));
  EXPECT_TRUE(caption::testing::allclose(dx_twice, dx_ref, {1e-5, 1e-5}, "input gradient reads the copy"));
  // Without autocast there is no copy.
  AutocastGuard off(false);
  EXPECT_FALSE(RecurrentLinear(w, b).bf16_weight().defined());
}

// Convolutions under autocast: cuDNN's bfloat16 convolution against the CPU twin. Both
// round the same operands and accumulate in float32, in different orders, then round
// the results to bfloat16: an element whose float32 value lies near a rounding boundary
// may land one bfloat16 step apart (2^-7 relative at most), nothing more.
TEST(CudaModel, AutocastConvolutionWithinOneBfloat16Step) {
  CAPTION_REQUIRE_CUDA_OR_SKIP();
  skip_unless_full_float32();
  // A ResNet 3x3 stride 2 layer; a stem-like 7x7 over 3 channels with odd sizes; a
  // pointwise layer with odd channel counts. On a GPU these run in NHWC bfloat16, so the
  // layout conversions meet partial 32 x 32 tiles in every dimension.
  struct Geometry {
    Shape x, w;
    Conv2dOptions o;
  };
  const Geometry geometries[] = {
      {{4, 64, 28, 28}, {128, 64, 3, 3}, {{2, 2}, {1, 1}, {1, 1}}},
      {{2, 3, 33, 31}, {8, 3, 7, 7}, {{2, 2}, {3, 3}, {1, 1}}},
      {{3, 5, 9, 11}, {7, 5, 1, 1}, {{1, 1}, {0, 0}, {1, 1}}},
  };
  for (const Geometry& geo : geometries) {
    SCOPED_TRACE(str("x ", Tensor::empty(geo.x).describe(), " w ", Tensor::empty(geo.w).describe()));
    Generator g(15);
    const Tensor x = rand_normal(geo.x, 0, 1, g), w = rand_normal(geo.w, 0, 0.05, g);
    std::vector<Tensor> results[2];
    for (int side = 0; side < 2; ++side) {
      const Device d = side == 0 ? Device::cpu() : Device::cuda(0);
      // detach(): on the CPU side to() returns x itself, whose requires_grad must not leak
      // into the CUDA side's to() (it would record a transfer and make xd a non-leaf).
      Tensor xd = x.to(d).detach(), wd = w.to(d).detach();
      xd.set_requires_grad(true);
      wd.set_requires_grad(true);
      Tensor y;
      {
        AutocastGuard autocast;
        y = conv2d(xd, wd, Tensor(), geo.o);  // no bias: it is added after the rounding
      }
      Generator gg(16);
      y.backward(rand_normal(y.shape(), 0, 1, gg).to(d));
      results[side] = {y.to(Device::cpu()), xd.grad().to(Device::cpu()), wd.grad().to(Device::cpu())};
    }
    const char* names[] = {"y", "grad_x", "grad_w"};
    for (int k = 0; k < 3; ++k) {
      const std::vector<float> c = results[0][k].to_vector<float>(), gpu = results[1][k].to_vector<float>();
      ASSERT_EQ(c.size(), gpu.size());
      double scale = 0;
      for (float v : c) scale = std::max(scale, double{std::abs(v)});
      size_t off = 0;
      for (size_t i = 0; i < c.size(); ++i) {
        const double diff = std::abs(double{gpu[i]} - c[i]);
        if (diff > std::ldexp(std::abs(c[i]), -7) + 1e-5 * scale) ++off;
      }
      EXPECT_EQ(off, 0u) << names[k] << ": " << off << " of " << c.size()
                         << " elements more than one bfloat16 step apart";
    }
  }
}

// A small model in eval mode on the GPU, and the features of `images` random images.
struct GpuDecoding {
  Pair p;
  Tensor features;
  GpuDecoding(uint64_t seed, int64_t images) : p(make_pair(small_config("resnet18", "none"), seed)) {
    p.gpu->eval();
    Generator g(seed + 1);
    NoGradGuard ng;
    features = p.gpu->encode(rand_normal({images, 3, 64, 64}, 0, 1, g).to(Device::cuda(0)));
  }
};

// Scheduled sampling on the GPU picks its words on the device (the previous step's
// arg-max, never read back) and gives the CPU's logits for the same coins.
TEST(CudaModel, ScheduledSamplingMatchesCpu) {
  CAPTION_REQUIRE_CUDA_OR_SKIP();
  GpuDecoding m(31, 3);
  Pair& p = m.p;
  p.cpu->eval();  // dropout off on both; the decoder's pass is the same otherwise
  const CaptionBatch batch = caption_batch();
  const Tensor features = m.features.to(Device::cpu());
  for (double ratio : {0.0, 0.5}) {
    Generator gc(5), gg(5);
    const DecoderOutput cpu = p.cpu->decoder.forward(features, batch, ratio, gc);
    const DecoderOutput gpu = p.gpu->decoder.forward(m.features, batch, ratio, gg);
    EXPECT_EQ(gpu.batch_sizes, cpu.batch_sizes);
    EXPECT_TRUE(close(gpu.logits, cpu.logits, 1e-5, "scheduled-sampling logits"));
    EXPECT_TRUE(close(gpu.alphas, cpu.alphas, 1e-5, "scheduled-sampling attention"));
    EXPECT_EQ(gg.offset(), gc.offset()) << "the coins drawn differ";
  }
}

// Decoding with the step's CUDA graphs gives bit for bit what stepping without them gives
// (the same kernels on the same values), for greedy decoding (one graph for all rows,
// finished rows kept) and beam search (a graph per number of live hypotheses).
TEST(CudaGraphs, DecodingWithGraphsIsDecodingWithout) {
  CAPTION_REQUIRE_CUDA_OR_SKIP();
  GpuDecoding m(9, 4);
  Pair& p = m.p;
  const Tensor& features = m.features;
  NoGradGuard ng;
  for (const DecodeOptions& o : {DecodeOptions{8, 1, 0.0}, DecodeOptions{8, 3, 0.0}}) {
    DeviceGraph::set_enabled(false);
    const auto eager = decode(p.gpu->decoder, features, o);
    DeviceGraph::set_enabled(true);
    const auto graphed = decode(p.gpu->decoder, features, o);
    ASSERT_EQ(graphed.size(), eager.size());
    for (size_t i = 0; i < eager.size(); ++i) {
      SCOPED_TRACE(str("beam ", o.beam, " image ", i));
      EXPECT_EQ(graphed[i].tokens, eager[i].tokens);
      EXPECT_EQ(graphed[i].log_probs, eager[i].log_probs);
      EXPECT_EQ(graphed[i].attention, eager[i].attention);
      EXPECT_EQ(graphed[i].steps, eager[i].steps);
      EXPECT_EQ(graphed[i].score, eager[i].score);
    }
  }
}

// Greedy decoding with graphs queues steps in chunks and reads their ids back at once:
// rows that end at different steps inside a chunk, and a max_len that is no multiple of
// the chunk, give bit for bit what reading back every word (lookahead 1) gives, and the
// words that decoding without graphs gives (which drops finished rows, so its products
// run over fewer rows and may round differently in the last bits). The small model's
// output and embedding weights are scaled up so that its words change from step to step,
// and the <eos> bias is raised until the captions end at three or more lengths, some
// before max_len.
TEST(CudaGraphs, GreedyChunksEndWhereSingleStepsEnd) {
  CAPTION_REQUIRE_CUDA_OR_SKIP();
  GpuDecoding m(21, 8);
  AttentionDecoder& decoder = m.p.gpu->decoder;
  NoGradGuard ng;
  decoder.fc.weight.copy_(mul(decoder.fc.weight, 40.0));
  decoder.embedding.weight.copy_(mul(decoder.embedding.weight, 10.0));
  const std::vector<float> bias = decoder.fc.bias.to(Device::cpu()).to_vector<float>();
  bool varied = false;
  for (float raise = 0.0f; raise <= 20.0f && !varied; raise += 0.25f) {
    std::vector<float> b = bias;
    b[kEosId] += raise;
    decoder.fc.bias.copy_(Tensor::from_vector<float>(b, decoder.fc.bias.shape()).to(decoder.fc.bias.device()));
    for (int max_len : {7, 11}) {
      DeviceGraph::set_enabled(false);
      const auto eager = greedy_decode(decoder, m.features, max_len);
      DeviceGraph::set_enabled(true);
      const auto single = greedy_decode(decoder, m.features, max_len, 1);
      const auto chunked = greedy_decode(decoder, m.features, max_len, 4);
      ASSERT_EQ(chunked.size(), single.size());
      std::set<int> lengths;
      bool early = false, mixed = false;
      for (size_t i = 0; i < single.size(); ++i) {
        SCOPED_TRACE(str("raise ", raise, " max_len ", max_len, " image ", i));
        EXPECT_EQ(chunked[i].tokens, single[i].tokens);
        EXPECT_EQ(chunked[i].log_probs, single[i].log_probs);
        EXPECT_EQ(chunked[i].attention, single[i].attention);
        EXPECT_EQ(chunked[i].steps, single[i].steps);
        EXPECT_EQ(chunked[i].finished, single[i].finished);
        EXPECT_EQ(chunked[i].tokens, eager[i].tokens);
        EXPECT_EQ(chunked[i].steps, eager[i].steps);
        lengths.insert(single[i].steps);
        early |= single[i].finished && single[i].steps < max_len;
        // Words that change inside a chunk (steps 1-4), so reading a chunk's ids for the
        // wrong step would show.
        const auto& w = single[i].tokens;
        for (size_t j = 2; j < w.size() && j < 5; ++j) mixed |= w[j] != w[j - 1];
      }
      varied |= lengths.size() >= 3 && early && mixed;
    }
  }
  EXPECT_TRUE(varied) << "no <eos> bias made the captions end at three or more lengths with words "
                         "that change inside a chunk: the test would show little";
}

// The runner really replays: first step eager, second captured, later ones replayed, with
// outputs equal to the decoder's own step on the same inputs, while the state it hands
// back (the graph's tensors) is fed in again.
TEST(CudaGraphs, StepRunnerCapturesOnceAndReplays) {
  CAPTION_REQUIRE_CUDA_OR_SKIP();
  DeviceGraph::set_enabled(true);
  GpuDecoding m(21, 3);
  Pair& p = m.p;
  const Tensor& features = m.features;
  NoGradGuard ng;
  DecoderState mine = p.gpu->decoder.init_state(features), ref = mine;
  StepRunner runner(p.gpu->decoder, Device::cuda(0));
  ASSERT_TRUE(runner.graphs());
  const std::vector<std::vector<int64_t>> tokens = {{1, 1, 1}, {5, 6, 7}, {8, 2, 9}, {4, 4, 10}};
  for (size_t t = 0; t < tokens.size(); ++t) {
    SCOPED_TRACE(str("step ", t));
    const StepOutput got = runner.step(tokens[t], mine);
    const std::vector<float> got_lp = got.log_probs.to_vector<float>(), got_alpha = got.alpha.to_vector<float>();
    const StepOutput want = p.gpu->decoder.step(
        Tensor::from_vector<int64_t>(tokens[t], {3}).to(Device::cuda(0)), ref);
    EXPECT_EQ(got_lp, want.log_probs.to_vector<float>());
    EXPECT_EQ(got_alpha, want.alpha.to_vector<float>());
    EXPECT_EQ(mine.h.to_vector<float>(), ref.h.to_vector<float>());
    EXPECT_EQ(mine.c.to_vector<float>(), ref.c.to_vector<float>());
  }
  EXPECT_EQ(runner.stats().eager_steps, 1);
  EXPECT_EQ(runner.stats().captures, 1);
  EXPECT_EQ(runner.stats().replays, 3);
  EXPECT_EQ(runner.stats().failed_captures, 0);
  // Token ids are checked on the host, graphs or not.
  EXPECT_THROW(runner.step({1, 2, 13}, mine), Error);
  // Ids already on the device (an arg-max) replay the same graph, read from there.
  const std::vector<int64_t> next = {3, 9, 11};
  const StepOutput got = runner.step(Tensor::from_vector<int64_t>(next, {3}).to(Device::cuda(0)), mine);
  const StepOutput want = p.gpu->decoder.step(Tensor::from_vector<int64_t>(next, {3}).to(Device::cuda(0)), ref);
  EXPECT_EQ(got.log_probs.to_vector<float>(), want.log_probs.to_vector<float>());
  EXPECT_EQ(runner.stats().replays, 4);
  EXPECT_THROW(runner.step(Tensor::from_vector<int64_t>(next, {3}), mine), Error);  // host ids
}

// The decoder keeps its runner between calls: captioning batch after batch of the same
// size replays the graph captured for the first; new weights (other addresses) get a
// new runner.
// The four special tokens (<pad>, <sos>, <eos>, <unk>) made unlikely, so that decoding
// runs its max_len steps (a random tiny model may end every caption at once).
void never_stop(AttentionDecoder& decoder) {
  NoGradGuard ng;
  std::vector<float> b = decoder.fc.bias.to(Device::cpu()).to_vector<float>();
  for (int i = 0; i < 4; ++i) b[i] = -50.0f;
  decoder.fc.bias.copy_(Tensor::from_vector<float>(b, decoder.fc.bias.shape()).to(decoder.fc.bias.device()));
}

// Under autocast the runner's steps read bfloat16 copies of the weights, rewritten at
// each decoding call: weights changed in place between calls are what the next call's
// replayed graphs use, exactly as a fresh runner stepping without graphs would.
TEST(CudaGraphs, AutocastDecodingReadsWeightCopiesRewrittenEachCall) {
  CAPTION_REQUIRE_CUDA_OR_SKIP();
  DeviceGraph::set_enabled(true);
  GpuDecoding m(25, 3);
  AttentionDecoder& decoder = m.p.gpu->decoder;
  never_stop(decoder);
  NoGradGuard ng;
  AutocastGuard autocast;
  for (const DecodeOptions& o : {DecodeOptions{6, 1, 0.0}, DecodeOptions{6, 2, 0.0}}) {
    SCOPED_TRACE(str("beam ", o.beam));
    const auto before = decode(decoder, m.features, o);
    const StepRunner* runner = decoder.step_cache()->runner.get();
    ASSERT_NE(runner, nullptr);
    EXPECT_TRUE(runner->shadowed());
    EXPECT_GE(runner->stats().replays, 1);
    // In place: the same addresses, so the cached runner (and its graphs) still serve.
    Tensor& w = decoder.lstm.weight_hh;
    w.copy_(mul(w, 1.5));
    const auto after = decode(decoder, m.features, o);
    EXPECT_EQ(decoder.step_cache()->runner.get(), runner);
    DeviceGraph::set_enabled(false);
    const auto fresh = decode(decoder, m.features, o);
    DeviceGraph::set_enabled(true);
    ASSERT_EQ(after.size(), fresh.size());
    bool changed = false;
    for (size_t i = 0; i < after.size(); ++i) {
      EXPECT_EQ(after[i].tokens, fresh[i].tokens);
      EXPECT_EQ(after[i].log_probs, fresh[i].log_probs);
      EXPECT_EQ(after[i].attention, fresh[i].attention);
      changed |= after[i].log_probs != before[i].log_probs;
    }
    EXPECT_TRUE(changed) << "scaling W_hh changed no log-probability: the test shows nothing";
  }
}

// A runner made under autocast does not serve a call without it (nor the reverse): its
// graphs multiply in bfloat16.
TEST(CudaGraphs, RunnerServesOnlyTheAutocastStateItWasMadeIn) {
  CAPTION_REQUIRE_CUDA_OR_SKIP();
  DeviceGraph::set_enabled(true);
  GpuDecoding m(27, 2);
  AttentionDecoder& decoder = m.p.gpu->decoder;
  never_stop(decoder);
  NoGradGuard ng;
  const DecodeOptions greedy{6, 1, 0.0};
  std::vector<DecodedCaption> amp, plain;
  {
    AutocastGuard autocast;
    amp = decode(decoder, m.features, greedy);
    EXPECT_TRUE(decoder.step_cache()->runner->serves(decoder, Device::cuda(0)));
  }
  EXPECT_FALSE(decoder.step_cache()->runner->serves(decoder, Device::cuda(0)));
  plain = decode(decoder, m.features, greedy);
  EXPECT_FALSE(decoder.step_cache()->runner->shadowed());
  DeviceGraph::set_enabled(false);
  const auto eager = decode(decoder, m.features, greedy);
  DeviceGraph::set_enabled(true);
  ASSERT_EQ(plain.size(), eager.size());
  bool differs_from_bf16 = false;
  for (size_t i = 0; i < plain.size(); ++i) {
    EXPECT_EQ(plain[i].log_probs, eager[i].log_probs);
    EXPECT_EQ(plain[i].attention, eager[i].attention);
    differs_from_bf16 |= plain[i].log_probs != amp[i].log_probs;
  }
  EXPECT_TRUE(differs_from_bf16) << "autocast changed no log-probability: the test shows nothing";
}

TEST(CudaGraphs, RunnerIsKeptBetweenDecodingCalls) {
  CAPTION_REQUIRE_CUDA_OR_SKIP();
  DeviceGraph::set_enabled(true);
  GpuDecoding m(23, 2);
  Pair& p = m.p;
  const Tensor& features = m.features;
  NoGradGuard ng;
  const DecodeOptions greedy{6, 1, 0.0};
  const auto first = decode(p.gpu->decoder, features, greedy);
  const StepRunner* runner = p.gpu->decoder.step_cache()->runner.get();
  ASSERT_NE(runner, nullptr);
  const StepRunnerStats after_first = runner->stats();
  EXPECT_EQ(after_first.captures, 1);
  const auto second = decode(p.gpu->decoder, features, greedy);
  EXPECT_EQ(p.gpu->decoder.step_cache()->runner.get(), runner);
  EXPECT_EQ(runner->stats().captures, 1);
  EXPECT_EQ(runner->stats().eager_steps, after_first.eager_steps);
  EXPECT_GT(runner->stats().replays, after_first.replays);
  for (size_t i = 0; i < first.size(); ++i) EXPECT_EQ(second[i].tokens, first[i].tokens);
  // New weight storage: the cached runner no longer serves this decoder.
  Tensor& w = p.gpu->decoder.fc.weight;
  w = w.detach().clone();
  EXPECT_FALSE(runner->serves(p.gpu->decoder, Device::cuda(0)));
  const auto third = decode(p.gpu->decoder, features, greedy);
  for (size_t i = 0; i < first.size(); ++i) EXPECT_EQ(third[i].tokens, first[i].tokens);
  EXPECT_EQ(p.gpu->decoder.step_cache()->runner->stats().captures, 1);
}

// A decoding call from another thread waits for the lease rather than stepping (and
// recording graphs) beside it on the device's one stream; a call nested in the
// leaseholder's own thread gets a runner of its own instead of deadlocking.
TEST(CudaGraphs, LeaseFromAnotherThreadWaitsAndNestedLeaseGetsItsOwnRunner) {
  CAPTION_REQUIRE_CUDA_OR_SKIP();
  DeviceGraph::set_enabled(true);
  GpuDecoding m(29, 2);
  const AttentionDecoder& decoder = m.p.gpu->decoder;
  std::atomic<bool> second_leased{false};
  std::thread other;
  {
    StepRunnerLease first(decoder, Device::cuda(0));
    EXPECT_TRUE(first.cached());
    {
      StepRunnerLease nested(decoder, Device::cuda(0));
      EXPECT_FALSE(nested.cached());
      EXPECT_NE(&nested.runner(), &first.runner());
    }
    other = std::thread([&] {
      StepRunnerLease second(decoder, Device::cuda(0));
      second_leased = second.cached();
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    EXPECT_FALSE(second_leased.load()) << "the other thread's lease did not wait";
  }
  other.join();
  EXPECT_TRUE(second_leased.load()) << "the other thread did not get the cached runner";
  // Leases are released: this thread leases the cached runner again.
  StepRunnerLease again(decoder, Device::cuda(0));
  EXPECT_TRUE(again.cached());
}

// A capture that synchronises fails without harm: capture() says so, the allocator's
// private pool is closed, and a later capture of well-behaved work replays it with the
// inputs' current values.
std::vector<float> host_values(const Tensor& t) {
  return t.to(Device::cpu()).contiguous().to_vector<float>();
}

// Inference passes of the encoder (nn/encoder_graph.h): the first eager, the second
// recorded, later ones replayed; each equal to the pass without graphs bit for bit, each
// result the caller's own (not rewritten by later passes), weights changed in place read
// by the replays, and passes that record gradients never recorded.
// Under autocast (amp) the pass recorded is the NHWC bfloat16 one, whose folding and
// packing of the weights are recorded with it.
void expect_encoder_passes_recorded(bool amp) {
  Pair p = make_pair(small_config("resnet18", "none"), 13);
  p.gpu->eval();
  AutocastGuard autocast(amp);
  Generator g(14);
  std::vector<Tensor> images, recorded;
  for (int i = 0; i < 4; ++i) images.push_back(rand_normal({2, 3, 64, 64}, 0, 1, g).to(Device::cuda(0)));
  {
    NoGradGuard ng;
    for (const Tensor& x : images) recorded.push_back(p.gpu->encode_distinct(x));
  }
  const std::shared_ptr<EncoderRunner> runner = p.gpu->encoder_runner();
  ASSERT_TRUE(runner != nullptr);
  EXPECT_EQ(runner->stats().eager_passes, 1);
  EXPECT_EQ(runner->stats().captures, 1);
  EXPECT_EQ(runner->stats().replays, 3);
  EXPECT_EQ(runner->stats().failed_captures, 0);
  auto without_graphs = [&](const Tensor& x) {
    NoGradGuard ng;
    DeviceGraph::set_enabled(false);
    const Tensor f = p.gpu->encode_distinct(x);
    DeviceGraph::set_enabled(true);
    return host_values(f);
  };
  for (size_t i = 0; i < images.size(); ++i)
    EXPECT_EQ(host_values(recorded[i]), without_graphs(images[i])) << "pass " << i;
  {
    NoGradGuard ng;
    Tensor& w = *p.gpu->encoder.named_parameters()[0].tensor;  // the stem's convolution
    w.copy_(mul(w, 0.5));
    const Tensor after = p.gpu->encode_distinct(images[0]);
    EXPECT_EQ(runner->stats().replays, 4);
    EXPECT_EQ(host_values(after), without_graphs(images[0]));
    EXPECT_NE(host_values(after), host_values(recorded[0]));
  }
  p.gpu->encode_distinct(images[1]);  // gradients recorded: not the runner's
  EXPECT_EQ(runner->stats().replays, 4);
  EXPECT_EQ(runner->stats().eager_passes, 1);
}

TEST(CudaGraphs, EncoderPassesAreRecordedAndEqualEagerPasses) {
  CAPTION_REQUIRE_CUDA_OR_SKIP();
  if (!DeviceGraph::enabled(Device::cuda(0))) GTEST_SKIP() << "CAPTION_CUDA_GRAPHS=0";
  expect_encoder_passes_recorded(false);
}

TEST(CudaGraphs, NhwcEncoderPassesAreRecordedAndEqualEagerPasses) {
  CAPTION_REQUIRE_CUDA_OR_SKIP();
  if (!DeviceGraph::enabled(Device::cuda(0))) GTEST_SKIP() << "CAPTION_CUDA_GRAPHS=0";
  expect_encoder_passes_recorded(true);
}

TEST(CudaGraphs, FailedCaptureIsHarmlessAndReplayReadsCurrentInputs) {
  CAPTION_REQUIRE_CUDA_OR_SKIP();
  const Device d = Device::cuda(0);
  const Tensor x = Tensor::from_vector<float>({1, 2, 3, 4}, {4}).to(d);
  DeviceGraph bad;
  EXPECT_FALSE(bad.capture(d, [&] { (void)mul(x, x).to_vector<float>(); }));
  EXPECT_FALSE(bad.captured());
  EXPECT_FALSE(bad.failure().empty());
  EXPECT_EQ(allocator_for(d).active_pool(), 0u);
  EXPECT_EQ(add(x, x).to_vector<float>(), (std::vector<float>{2, 4, 6, 8}));  // the device works
  DeviceGraph good;
  Tensor y;
  ASSERT_TRUE(good.capture(d, [&] { y = add(mul(x, x), x); })) << good.failure();
  for (float v : {1.0f, -2.0f, 0.5f}) {
    Tensor(x).copy_(Tensor::from_vector<float>({v, v, v, v}, {4}));
    good.replay();
    EXPECT_EQ(y.to_vector<float>(), std::vector<float>(4, v * v + v));
  }
  // An exception inside the capture ends it, as a failure.
  DeviceGraph throwing;
  EXPECT_FALSE(throwing.capture(d, [] { throw Error("inside"); }));
  EXPECT_EQ(throwing.failure(), "inside");
  EXPECT_EQ(allocator_for(d).active_pool(), 0u);
}

TEST(CudaModel, GreedyAndBeamDecodingMatchCpu) {
  CAPTION_REQUIRE_CUDA_OR_SKIP();
  skip_unless_full_float32();
  Pair p = make_pair(small_config("resnet18", "none"), 9);
  p.cpu->eval();
  p.gpu->eval();
  Generator g(10);
  const Tensor images = rand_normal({3, 3, 64, 64}, 0, 1, g);
  NoGradGuard ng;
  const Tensor features = p.cpu->encode(images);
  for (const DecodeOptions& o : {DecodeOptions{6, 1, 0.0}, DecodeOptions{6, 3, 0.0}}) {
    const auto ref = decode(p.cpu->decoder, features, o);
    const auto got = decode(p.gpu->decoder, features.to(Device::cuda(0)), o);
    ASSERT_EQ(got.size(), ref.size());
    for (size_t i = 0; i < ref.size(); ++i) {
      SCOPED_TRACE(str("beam ", o.beam, " image ", i));
      EXPECT_EQ(got[i].tokens, ref[i].tokens);
      EXPECT_EQ(got[i].finished, ref[i].finished);
      EXPECT_EQ(got[i].steps, ref[i].steps);
      EXPECT_NEAR(got[i].score, ref[i].score, 1e-4 * (1 + std::abs(ref[i].score)));
      ASSERT_EQ(got[i].attention.size(), ref[i].attention.size());
      for (size_t w = 0; w < ref[i].attention.size(); ++w)
        for (size_t k = 0; k < ref[i].attention[w].size(); ++k)
          EXPECT_NEAR(got[i].attention[w][k], ref[i].attention[w][k], 1e-5);
    }
  }
}

// After two warm-up steps every tensor a step needs has a block of its size in the
// cache: later steps take everything from it, so the backing allocator (cudaMalloc) is
// never called and nothing leaks from step to step.
TEST(CudaAllocator, SteadyTrainingStepCallsNoCudaMalloc) {
  CAPTION_REQUIRE_CUDA_OR_SKIP();
  Pair p = make_pair(small_config("resnet18", "from:3"), 11);
  p.gpu->train();
  Trainer gpu(*p.gpu, Device::cuda(0));
  Generator g(12);
  const Tensor images = rand_normal({3, 3, 64, 64}, 0, 1, g).to(Device::cuda(0));
  const CaptionBatch batch = caption_batch();
  auto step = [&] {
    gpu.forward_backward(images, batch);
    clip_grad_norm(gpu.store, 1.0);
    gpu.opt->step();
    synchronize(Device::cuda(0));
  };
  // Three warm-up steps: since the split products hand out views of one output (kept
  // by the attention and gate nodes until the backward), the cache reaches its steady
  // set of blocks at the third step, not the second (one more backing allocation there).
  for (int w = 0; w < 3; ++w) step();
  CachingAllocator& alloc = allocator_for(Device::cuda(0));
  const AllocatorStats before = alloc.stats();
  for (int i = 0; i < 3; ++i) step();
  const AllocatorStats after = alloc.stats();
  EXPECT_GT(after.allocations, before.allocations);  // the steps did allocate...
  EXPECT_EQ(after.backing_allocations, before.backing_allocations);  // ...all from the cache
  EXPECT_EQ(after.bytes_in_use, before.bytes_in_use);  // and returned it
}

}  // namespace
}  // namespace caption::nn
