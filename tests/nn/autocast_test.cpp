// Autocast (engine/autocast.h) on the CPU, the reference of the GPU's bfloat16 tensor-
// core products: inside a guard, linear, matmul, the LSTM cell and conv2d multiply operands
// rounded to bfloat16 with float32 accumulation, forward and backward (the choice is
// recorded with the op, so a backward run after the guard closed still uses it);
// everything else, and every tensor's dtype, stays float32; and a whole training step of
// the captioning model under autocast stays within stated tolerances of float32:
// loss within 1e-3 relative, every gradient within 2e-2 relative L2 (measured on this
// configuration: 3e-5 and at most 5e-3; bfloat16 keeps 8 bits of mantissa, so single
// products carry ~4e-3 relative error, averaged down in long sums).
#include <gtest/gtest.h>

#include <cmath>

#include "kernels/bf16.h"
#include "nn/caption_model.h"
#include "nn/optim.h"

namespace caption::nn {
namespace {

Tensor rounded(const Tensor& t) {
  std::vector<float> v = t.contiguous().to_vector<float>();
  for (float& x : v) x = kernels::round_to_bf16(x);
  return Tensor::from_vector<float>(v, t.shape());
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  const std::vector<float> x = a.contiguous().to_vector<float>(), y = b.contiguous().to_vector<float>();
  EXPECT_EQ(x.size(), y.size());
  double m = 0;
  for (size_t i = 0; i < x.size() && i < y.size(); ++i) m = std::max(m, std::abs(double{x[i]} - y[i]));
  return m;
}

double rel_l2(const Tensor& got, const Tensor& ref) {
  const std::vector<float> g = got.contiguous().to_vector<float>(), r = ref.contiguous().to_vector<float>();
  double d = 0, n = 0;
  for (size_t i = 0; i < g.size() && i < r.size(); ++i) {
    d += (double{g[i]} - r[i]) * (double{g[i]} - r[i]);
    n += double{r[i]} * r[i];
  }
  return n > 0 ? std::sqrt(d / n) : std::sqrt(d);
}

TEST(Autocast, OffByDefaultAndScoped) {
  EXPECT_FALSE(autocast_enabled());
  {
    AutocastGuard on;
    EXPECT_TRUE(autocast_enabled());
    {
      AutocastGuard off(false);
      EXPECT_FALSE(autocast_enabled());
    }
    EXPECT_TRUE(autocast_enabled());
  }
  EXPECT_FALSE(autocast_enabled());
}

TEST(Autocast, LinearMultipliesRoundedOperandsForwardAndBackward) {
  Generator g(1);
  const Tensor x0 = rand_normal({6, 40}, 0, 1, g), w0 = rand_normal({9, 40}, 0, 0.3, g);
  const Tensor b = rand_normal({9}, 0, 1, g), grad = rand_normal({6, 9}, 0, 1, g);
  Tensor x = x0.clone(), w = w0.clone();
  x.set_requires_grad(true);
  w.set_requires_grad(true);
  Tensor y;
  {
    AutocastGuard autocast;
    y = linear(x, w, b);
  }
  EXPECT_EQ(y.dtype(), DType::F32);
  // Forward: exactly the float32 product of the rounded operands (same sgemm, same order).
  EXPECT_EQ(max_abs_diff(y, linear(rounded(x0), rounded(w0), b)), 0.0);
  EXPECT_GT(max_abs_diff(y, linear(x0, w0, b)), 0.0);
  // Backward, after the guard closed: the recorded op still rounds its operands.
  y.backward(grad);
  EXPECT_EQ(max_abs_diff(x.grad(), matmul(rounded(grad), rounded(w0))), 0.0);
  EXPECT_EQ(max_abs_diff(w.grad(), matmul(rounded(grad), rounded(x0), {Trans::Yes, Trans::No})), 0.0);
  // Outside a guard nothing is rounded.
  EXPECT_EQ(max_abs_diff(linear(x0, w0, b), linear(x0, w0, b)), 0.0);
  EXPECT_GT(max_abs_diff(linear(x0, w0, b), linear(rounded(x0), rounded(w0), b)), 0.0);
}

TEST(Autocast, MatmulAndLstmCellRoundTheirProducts) {
  Generator g(2);
  const Tensor a = rand_normal({3, 5, 17}, 0, 1, g), m = rand_normal({17, 4}, 0, 1, g);
  {
    AutocastGuard autocast;
    EXPECT_EQ(max_abs_diff(matmul(a, m), matmul(rounded(a), rounded(m))), 0.0);
  }
  const int64_t B = 4, I = 10, H = 6;
  const Tensor x = rand_normal({B, I}, 0, 1, g), h = rand_normal({B, H}, 0, 1, g);
  const Tensor c = rand_normal({B, H}, 0, 1, g);
  const Tensor w_ih = rand_normal({4 * H, I}, 0, 0.3, g), w_hh = rand_normal({4 * H, H}, 0, 0.3, g);
  const Tensor b_ih = rand_normal({4 * H}, 0, 0.1, g), b_hh = rand_normal({4 * H}, 0, 0.1, g);
  LstmState auto_state;
  {
    AutocastGuard autocast;
    auto_state = lstm_cell(x, h, c, w_ih, w_hh, b_ih, b_hh);
  }
  const LstmState ref = lstm_cell(rounded(x), rounded(h), c, rounded(w_ih), rounded(w_hh), b_ih, b_hh);
  EXPECT_EQ(max_abs_diff(auto_state.h, ref.h), 0.0);
  EXPECT_EQ(max_abs_diff(auto_state.c, ref.c), 0.0);
}

// Convolutions under autocast: bfloat16-rounded operands, float32 accumulation, outputs
// rounded to bfloat16 (y before its float32 bias, grad_x and grad_w; grad_bias stays a
// float32 sum), as cuDNN's bfloat16 convolution stores them.
TEST(Autocast, ConvolutionRoundsOperandsAndOutputs) {
  Generator g(4);
  const Tensor x0 = rand_normal({2, 5, 9, 8}, 0, 1, g), w0 = rand_normal({7, 5, 3, 3}, 0, 0.3, g);
  const Tensor b = rand_normal({7}, 0, 1, g);
  const Conv2dOptions o{{2, 1}, {1, 1}, {1, 1}};
  Tensor x = x0.clone(), w = w0.clone(), bias = b.clone();
  x.set_requires_grad(true);
  w.set_requires_grad(true);
  bias.set_requires_grad(true);
  Tensor y;
  {
    AutocastGuard autocast;
    y = conv2d(x, w, bias, o);
  }
  const Tensor grad = rand_normal(y.shape(), 0, 1, g);
  y.backward(grad);
  // The reference: the float32 op on rounded operands, its results rounded.
  Tensor xr = rounded(x0), wr = rounded(w0), gr = rounded(grad);
  xr.set_requires_grad(true);
  wr.set_requires_grad(true);
  const Tensor y_ref = conv2d(xr, wr, Tensor(), o);
  y_ref.backward(gr);
  EXPECT_EQ(max_abs_diff(y, add(rounded(y_ref), b.reshape({1, 7, 1, 1}))), 0.0);
  EXPECT_EQ(max_abs_diff(x.grad(), rounded(xr.grad())), 0.0);
  EXPECT_EQ(max_abs_diff(w.grad(), rounded(wr.grad())), 0.0);
  EXPECT_LT(max_abs_diff(bias.grad(), sum(grad, {0, 2, 3})), 1e-5);
  // And it differs from float32.
  EXPECT_GT(max_abs_diff(y, conv2d(x0, w0, b, o)), 0.0);
}

ModelConfig step_config() {
  ModelConfig c;
  c.encoder = "resnet18";
  c.encoder_size = 2;
  c.image_size = 64;
  c.vocab_size = 40;
  c.embed_dim = 32;
  c.decoder_dim = 48;
  c.attention_dim = 40;
  c.dropout = 0.0;
  c.max_decode_len = 6;
  c.text = {{"lowercase", true}};
  return c;
}

TEST(Autocast, TrainingStepStaysCloseToFloat32) {
  Generator g(3);
  CaptionModel m(step_config(), g);
  m.train();
  const Tensor features = rand_normal({4, 4, 512}, 0, 1, g);
  CaptionBatch batch;
  batch.captions = Tensor::from_vector<int64_t>(
      {1, 5, 9, 13, 17, 21, 2, 1, 6, 10, 14, 18, 2, 0, 1, 7, 11, 15, 2, 0, 0, 1, 8, 12, 2, 0, 0, 0},
      {4, 7});
  batch.lengths = {7, 6, 5, 4};
  auto step = [&](bool amp) {
    for (const auto& r : m.named_parameters()) r.tensor->zero_grad();
    AutocastGuard autocast(amp);
    Generator gen(0);
    DecoderOutput out = m.decoder.forward(features, batch, 1.0, gen);
    LossParts loss = caption_loss(out, 1.0);
    loss.total.backward();
    std::vector<Tensor> grads;
    for (const auto& r : m.decoder.named_parameters("decoder")) grads.push_back(r.tensor->grad().clone());
    return std::make_pair(loss.total.item(), grads);
  };
  const auto [loss32, grads32] = step(false);
  const auto [loss16, grads16] = step(true);
  EXPECT_NE(loss16, loss32);  // the products did change
  EXPECT_NEAR(loss16, loss32, 1e-3 * std::abs(loss32));
  const auto params = m.decoder.named_parameters("decoder");
  double worst = 0;
  for (size_t i = 0; i < grads32.size(); ++i) {
    if (params[i].name == "decoder.full_att.bias") continue;  // exactly 0 in exact arithmetic
    const double e = rel_l2(grads16[i], grads32[i]);
    worst = std::max(worst, e);
    EXPECT_LT(e, 2e-2) << params[i].name;
  }
  std::cout << "autocast training step: loss " << loss16 << " vs " << loss32
            << ", worst gradient relative L2 " << worst << "\n";
}

}  // namespace
}  // namespace caption::nn
