// Values of the fused model ops against PyTorch (torch 1.13, float64: nn.LSTMCell and
// the attention formula of MODEL_SPEC section 4 written out in torch), and refusals of
// bad input with messages that name the problem. The gradients are covered by the
// harness' finite-difference check (tests/ops/model_cases.cpp).
#include <gtest/gtest.h>

#include <cmath>

#include "tests/harness/expect_error.h"
#include "tests/harness/harness.h"

namespace caption::testing {
namespace {

Tensor t(std::vector<float> v, Shape s) { return Tensor::from_vector(v, s); }

using caption::testing::expect_error;

const Tolerance kFloat{1e-6, 1e-5};

// ---- LSTM cell -------------------------------------------------------------------

struct LstmInputs {
  Tensor x = t({-0.2f, 0.5f, 0.1f, -0.3f, 0.4f, 0.0f}, {2, 3});
  Tensor h = t({0.0f, -0.4f, 0.6f, 0.2f}, {2, 2});
  Tensor c = t({0.3f, -0.3f, 0.6f, 0.0f}, {2, 2});
  Tensor w_ih =
      t({-0.3f, 0.2f,  -0.6f, -0.1f, 0.4f,  -0.4f, 0.1f,  0.6f, -0.2f, 0.3f,  -0.5f, 0.0f,
         0.5f,  -0.3f, 0.2f,  -0.6f, -0.1f, 0.4f,  -0.4f, 0.1f, 0.6f,  -0.2f, 0.3f,  -0.5f},
        {8, 3});
  Tensor w_hh = t({0.0f, 0.45f, -0.15f, 0.3f, -0.3f, 0.15f, -0.45f, 0.0f, 0.45f, -0.15f, 0.3f,
                   -0.3f, 0.15f, -0.45f, 0.0f, 0.45f},
                  {8, 2});
  Tensor b_ih = t({0.1f, -0.2f, 0.0f, 0.2f, -0.1f, 0.1f, -0.2f, 0.0f}, {8});
  Tensor b_hh = t({-0.1f, -0.05f, 0.0f, 0.05f, -0.1f, -0.05f, 0.0f, 0.05f}, {8});
};

TEST(LstmCell, MatchesTorchLstmCell) {
  LstmInputs in;
  LstmState s = lstm_cell(in.x, in.h, in.c, in.w_ih, in.w_hh, in.b_ih, in.b_hh);
  EXPECT_TRUE(allclose(s.h,
                       t({-0.00269547661f, -0.0110396272f, 0.087911372f, 0.0825462148f}, {2, 2}),
                       kFloat, "h'"));
  EXPECT_TRUE(allclose(s.c, t({-0.00496959629f, -0.0219729438f, 0.18137349f, 0.143463273f}, {2, 2}),
                       kFloat, "c'"));
}

// One unit by hand: with zero weights every gate is sigmoid(b) or tanh(b) of the biases.
TEST(LstmCell, ZeroWeightsGiveBiasGates) {
  const Tensor x = Tensor::zeros({1, 2}), h = Tensor::zeros({1, 1});
  const Tensor c = t({0.5f}, {1, 1});
  const Tensor b_ih = t({0.2f, -0.4f, 0.3f, 1.0f}, {4}), b_hh = Tensor::zeros({4});
  LstmState s = lstm_cell(x, h, c, Tensor::zeros({4, 2}), Tensor::zeros({4, 1}), b_ih, b_hh);
  auto sig = [](double v) { return 1.0 / (1.0 + std::exp(-v)); };
  const double cn = sig(-0.4) * 0.5 + sig(0.2) * std::tanh(0.3);
  EXPECT_NEAR(s.c.item(), cn, 1e-6);
  EXPECT_NEAR(s.h.item(), sig(1.0) * std::tanh(cn), 1e-6);
}

TEST(LstmCell, NonContiguousInputsGiveTheSameResult) {
  LstmInputs in;
  const Tensor w_t = in.w_ih.transpose(0, 1).contiguous().transpose(0, 1);  // a strided view
  ASSERT_FALSE(w_t.is_contiguous());
  LstmState a = lstm_cell(in.x, in.h, in.c, in.w_ih, in.w_hh, in.b_ih, in.b_hh);
  LstmState b = lstm_cell(in.x, in.h, in.c, w_t, in.w_hh, in.b_ih, in.b_hh);
  EXPECT_TRUE(equal(b.h, a.h, "h'"));
  EXPECT_TRUE(equal(b.c, a.c, "c'"));
}

TEST(LstmCell, RefusesBadShapes) {
  LstmInputs in;
  expect_error(
      [&] {
        lstm_cell(in.x, in.h, in.c, Tensor::zeros({8, 4}), in.w_hh, in.b_ih, in.b_hh);
      },
      "lstm_cell: w_ih is float32[8, 4] on cpu, expected [8, 3]");
  expect_error(
      [&] {
        lstm_cell(in.x, Tensor::zeros({3, 2}), in.c, in.w_ih, in.w_hh, in.b_ih, in.b_hh);
      },
      "lstm_cell: h is float32[3, 2] on cpu, expected [2, 2]");
  expect_error(
      [&] {
        lstm_cell(in.x, in.h, in.c, in.w_ih, Tensor::zeros({6, 2}), in.b_ih, in.b_hh);
      },
      "lstm_cell: w_hh must be [4H, H]");
  expect_error([&] { lstm_cell(in.x, in.h, in.c, in.w_ih, in.w_hh, Tensor(), in.b_hh); },
               "lstm_cell: b_ih is undefined");
  expect_error(
      [&] { lstm_cell(in.x.reshape({6}), in.h, in.c, in.w_ih, in.w_hh, in.b_ih, in.b_hh); },
      "lstm_cell: x must be [B, I]");
  expect_error(
      [&] { lstm_cell(in.x, in.h, in.c.to(DType::F64), in.w_ih, in.w_hh, in.b_ih, in.b_hh); },
      "lstm_cell: c float64[2, 2] on cpu differs from x");
}

// ---- additive attention -----------------------------------------------------------

struct AttentionInputs {
  Tensor enc =
      t({-0.2f, 0.8f, 0.0f, -0.8f, 0.2f, -0.6f, 0.4f, -0.4f, 0.6f, -0.2f, 0.8f, 0.0f}, {2, 3, 2});
  Tensor dec = t({0.25f, -0.25f, 0.5f, 0.0f}, {2, 2});
  Tensor w = t({-0.7f, 1.1f}, {2});
  Tensor bias = t({0.3f}, {1});
  Tensor features =
      t({-0.3f, 0.4f, -0.2f, 0.5f, -0.1f, 0.6f, 0.0f, -0.6f, 0.1f, -0.5f, 0.2f, -0.4f}, {2, 3, 2});
};

TEST(AdditiveAttention, TanhMatchesTorch) {
  AttentionInputs in;
  AttentionResult r = additive_attention(in.enc, in.dec, in.w, in.bias, in.features);
  EXPECT_TRUE(allclose(
      r.alpha,
      t({0.703881358f, 0.149841548f, 0.146277094f, 0.283745832f, 0.327002913f, 0.389251255f},
        {2, 3}),
      kFloat, "alpha"));
  EXPECT_TRUE(allclose(r.context,
                       t({-0.255760426f, 0.444239574f, 0.110550542f, -0.489449458f}, {2, 2}),
                       kFloat, "context"));
}

TEST(AdditiveAttention, ReluMatchesTorch) {
  AttentionInputs in;
  AttentionResult r = additive_attention(in.enc, in.dec, in.w, in.bias, in.features,
                                         {AttentionOptions::Activation::Relu});
  EXPECT_TRUE(allclose(
      r.alpha,
      t({0.529815788f, 0.251521727f, 0.218662485f, 0.380931778f, 0.331166178f, 0.287902044f},
        {2, 3}),
      kFloat, "alpha"));
  EXPECT_TRUE(allclose(r.context,
                       t({-0.23111533f, 0.46888467f, 0.0906970266f, -0.509302973f}, {2, 2}), kFloat,
                       "context"));
}

// Scores far apart must not overflow: softmax subtracts the maximum.
TEST(AdditiveAttention, LargeScoresStayFinite) {
  const Tensor enc = t({1.0f, -1.0f}, {1, 2, 1});
  const Tensor dec = Tensor::zeros({1, 1});
  AttentionResult r =
      additive_attention(enc, dec, t({1000.0f}, {1}), t({0.0f}, {1}), t({2.0f, 5.0f}, {1, 2, 1}));
  // e = 1000 * tanh(+-1): alpha is one-hot to the first position.
  EXPECT_TRUE(allclose(r.alpha, t({1.0f, 0.0f}, {1, 2}), kFloat, "alpha"));
  EXPECT_TRUE(allclose(r.context, t({2.0f}, {1, 1}), kFloat, "context"));
}

// The bias shifts every score equally, so its gradient is zero (up to rounding).
TEST(AdditiveAttention, BiasGradientIsZero) {
  AttentionInputs in;
  Tensor bias = in.bias.clone();
  bias.set_requires_grad(true);
  AttentionResult r = additive_attention(in.enc, in.dec, in.w, bias, in.features);
  Tensor g = t({0.3f, -1.0f, 0.7f, 0.2f}, {2, 2});
  r.context.backward(g);
  ASSERT_TRUE(bias.grad().defined());
  EXPECT_NEAR(bias.grad().item(), 0.0, 1e-7);
}

TEST(AdditiveAttention, RefusesBadShapes) {
  AttentionInputs in;
  expect_error(
      [&] {
        additive_attention(in.enc, Tensor::zeros({2, 3}), in.w, in.bias, in.features);
      },
      "additive_attention: dec_proj is float32[2, 3] on cpu, expected [2, 2]");
  expect_error([&] { additive_attention(in.enc, in.dec, in.w, Tensor::zeros({2}), in.features); },
               "additive_attention: bias (full_att bias) is float32[2] on cpu, expected [1]");
  expect_error(
      [&] {
        additive_attention(in.enc, in.dec, in.w.reshape({1, 2}), in.bias, in.features);
      },
      "additive_attention: w (full_att weight, flattened) is float32[1, 2] on cpu");
  expect_error(
      [&] {
        additive_attention(in.enc, in.dec, in.w, in.bias, Tensor::zeros({2, 4, 2}));
      },
      "additive_attention: features is float32[2, 4, 2] on cpu, expected [2, 3, 2]");
  expect_error(
      [&] {
        additive_attention(in.enc.reshape({6, 2}), in.dec, in.w, in.bias, in.features);
      },
      "additive_attention: enc_proj must be [B, P, A]");
  expect_error(
      [&] {
        additive_attention(Tensor::zeros({2, 0, 2}), in.dec, in.w, in.bias,
                           Tensor::zeros({2, 0, 2}));
      },
      "additive_attention: softmax over zero positions");
}

// ---- LSTM gates in parts ---------------------------------------------------------

// Parts summed by the op are the gates of their sum, left to right, bit for bit; every
// part receives the sum's gradient.
TEST(LstmGates, PartsAreTheirSumsGates) {
  Generator g(4);
  const Device cpu = Device::cpu();
  const int64_t B = 3, H = 4;
  const Tensor wide = random_tensor({B, 4 * H + 3}, g, DType::F32, cpu, -2, 2);
  const Tensor p1 = random_tensor({B, 4 * H}, g, DType::F32, cpu, -1, 1);
  const Tensor p2 = random_tensor({B, 4 * H}, g, DType::F32, cpu, -1, 1);
  const Tensor c = random_tensor({B, H}, g, DType::F32, cpu);
  auto leaf = [](const Tensor& x) {
    Tensor l = x.clone();
    l.set_requires_grad(true);
    return l;
  };
  Tensor wa = leaf(wide), a1 = leaf(p1), a2 = leaf(p2);
  Tensor wb = leaf(wide), b1 = leaf(p1), b2 = leaf(p2);
  const LstmState fused = lstm_gates({wa.narrow(1, 1, 4 * H), a1, a2}, c);
  const LstmState composed = lstm_gates(add(add(wb.narrow(1, 1, 4 * H), b1), b2), c);
  EXPECT_TRUE(allclose(fused.h, composed.h, {0.0, 0.0}, "h"));
  EXPECT_TRUE(allclose(fused.c, composed.c, {0.0, 0.0}, "c"));
  const Tensor gh = random_tensor({B, H}, g, DType::F32, cpu), gc = random_tensor({B, H}, g, DType::F32, cpu);
  add(sum(mul(fused.h, gh)), sum(mul(fused.c, gc))).backward();
  add(sum(mul(composed.h, gh)), sum(mul(composed.c, gc))).backward();
  EXPECT_TRUE(allclose(wa.grad(), wb.grad(), {0.0, 0.0}, "column block"));
  EXPECT_TRUE(allclose(a1.grad(), b1.grad(), {0.0, 0.0}, "part 1"));
  EXPECT_TRUE(allclose(a2.grad(), b2.grad(), {0.0, 0.0}, "part 2"));
  expect_error([&] { lstm_gates({p1, p2.narrow(1, 0, 4)}, c); },
               "lstm_gates: pre-activation part 1 is float32[3, 4] on cpu, expected [3, 16]");
  expect_error([&] { lstm_gates(std::vector<Tensor>{}, c); },
               "lstm_gates: 1 to 3 pre-activation parts, got 0");
}

// ---- the decoder's attention step ------------------------------------------------

// The step is the composition it replaces in the decoder: additive_attention, then
// sigmoid(gate) * context and sum + scale * alpha. Forward bit for bit (the same CPU
// arithmetic; the running sum to one rounding, which a fused multiply-add may save),
// gradients of every input to float32 rounding.
TEST(AttentionStep, EqualsTheComposedOps) {
  Generator g(11);
  const int64_t B = 3, P = 5, A = 4, D = 6;
  const Device cpu = Device::cpu();
  auto rnd = [&](const Shape& s, double lo, double hi) {
    return random_tensor(s, g, DType::F32, cpu, lo, hi);
  };
  const Tensor enc = rnd({B, P, A}, -1, 1), features = rnd({B, P, D}, -1, 1);
  const Tensor h_out = rnd({B, A + D + 2}, -2, 2);  // dec_proj and gate as column blocks
  const Tensor w = rnd({A}, -2, 2), bias = rnd({1}, -1, 1);
  const Tensor sum0 = rnd({B, P}, 0, 1);
  const Tensor scale = t({1.0f, 1.0f, 0.0f}, {B, 1});  // the last row's caption has ended
  std::vector<Tensor> leaves{enc, features, h_out, w, bias, sum0};
  auto fresh = [&] {
    std::vector<Tensor> v;
    for (const Tensor& x : leaves) {
      Tensor c = x.clone();
      c.set_requires_grad(true);
      v.push_back(c);
    }
    return v;
  };
  const Tensor gz = rnd({B, D}, -1, 1), ga = rnd({B, P}, -1, 1), gs = rnd({B, P}, -1, 1);

  std::vector<Tensor> a = fresh();
  AttentionStepResult fused =
      attention_step(a[0], a[2].narrow(1, 0, A), a[3], a[4], a[1], a[2].narrow(1, A + 1, D),
                     {true, a[5], scale});
  std::vector<Tensor> b = fresh();
  AttentionResult att =
      additive_attention(b[0], b[2].narrow(1, 0, A).contiguous(), b[3], b[4], b[1]);
  const Tensor z = mul(sigmoid(b[2].narrow(1, A + 1, D).contiguous()), att.context);
  const Tensor running = add(b[5], mul(att.alpha, scale));

  EXPECT_TRUE(allclose(fused.z, z, {0.0, 0.0}, "z"));
  EXPECT_TRUE(allclose(fused.alpha, att.alpha, {0.0, 0.0}, "alpha"));
  EXPECT_TRUE(allclose(fused.alpha_sum, running, {1e-7, 1e-7}, "alpha_sum"));
  // The ended row adds nothing to its sum.
  EXPECT_TRUE(allclose(fused.alpha_sum.narrow(0, 2, 1), sum0.narrow(0, 2, 1), {0.0, 0.0},
                       "ended row"));

  add(add(sum(mul(fused.z, gz)), sum(mul(fused.alpha, ga))),
      sum(mul(fused.alpha_sum, gs)))
      .backward();
  add(add(sum(mul(z, gz)), sum(mul(att.alpha, ga))), sum(mul(running, gs)))
      .backward();
  const char* names[] = {"enc_proj", "features", "h_out", "w", "bias", "sum"};
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_TRUE(a[i].grad().defined()) << names[i];
    EXPECT_TRUE(allclose(a[i].grad(), b[i].grad(), kFloat, names[i])) << names[i];
  }
  // The column between the blocks and the two after them receive nothing.
  EXPECT_TRUE(allclose(a[2].grad().narrow(1, A, 1), Tensor::zeros({B, 1}), {0.0, 0.0}, "gap"));
  EXPECT_TRUE(allclose(a[2].grad().narrow(1, A + 1 + D, 1), Tensor::zeros({B, 1}), {0.0, 0.0},
                       "tail"));
}

// The first step of a sum (no sum so far) is scale * alpha, and without a scale alpha.
TEST(AttentionStep, StartsItsRunningSumFromZero) {
  AttentionInputs in;
  const Tensor gate = t({0.5f, -1.0f, 2.0f, 0.0f}, {2, 2});
  AttentionStepResult first = attention_step(in.enc, in.dec, in.w, in.bias, in.features, gate,
                                             {true, Tensor(), Tensor()});
  EXPECT_TRUE(allclose(first.alpha_sum, first.alpha, {0.0, 0.0}, "unscaled"));
  AttentionStepResult masked = attention_step(in.enc, in.dec, in.w, in.bias, in.features, gate,
                                              {true, Tensor(), t({0.0f, 0.5f}, {2})});
  EXPECT_TRUE(allclose(masked.alpha_sum,
                       concat({Tensor::zeros({1, 3}), mul(first.alpha.narrow(0, 1, 1), 0.5)}, 0),
                       {0.0, 0.0}, "scaled"));
  AttentionStepResult off = attention_step(in.enc, in.dec, in.w, in.bias, in.features, gate);
  EXPECT_FALSE(off.alpha_sum.defined());
  // Against torch: z = sigmoid(gate) * context, the context of TanhMatchesTorch.
  EXPECT_TRUE(allclose(off.z,
                       t({0.622459331f * -0.255760426f, 0.268941421f * 0.444239574f,
                          0.880797078f * 0.110550542f, 0.5f * -0.489449458f},
                         {2, 2}),
                       kFloat, "z"));
}

TEST(AttentionStep, RefusesBadInput) {
  AttentionInputs in;
  const Tensor gate = Tensor::zeros({2, 2});
  expect_error([&] { attention_step(in.enc, in.dec, in.w, in.bias, in.features, Tensor::zeros({2, 3})); },
               "attention_step: gate (f_beta(h), before the sigmoid) is float32[2, 3] on cpu, "
               "expected [2, 2]");
  expect_error([&] { attention_step(in.enc, in.dec, in.w, in.bias, in.features, Tensor()); },
               "attention_step: gate (f_beta(h), before the sigmoid) is undefined");
  expect_error(
      [&] {
        attention_step(in.enc, in.dec, in.w, in.bias, in.features, gate,
                       {true, Tensor::zeros({2, 4}), Tensor()});
      },
      "attention_step: running sum is float32[2, 4] on cpu, expected [2, 3]");
  expect_error(
      [&] {
        attention_step(in.enc, in.dec, in.w, in.bias, in.features, gate,
                       {true, Tensor(), Tensor::ones({3})});
      },
      "attention_step: the running sum's scale is float32[3] on cpu, expected 2 row weights");
  expect_error(
      [&] {
        attention_step(in.enc, in.dec, in.w, in.bias, in.features, gate,
                       {false, Tensor::zeros({2, 3}), Tensor()});
      },
      "attention_step: a running sum or scale was given with the running sum off");
  expect_error(
      [&] {
        attention_step(in.enc, in.dec, in.w, in.bias, in.features,
                       Tensor::zeros({2, 2}, DType::F64));
      },
      "attention_step: gate (f_beta(h), before the sigmoid) float64[2, 2] on cpu differs from "
      "enc_proj");
}

// ---- optimiser ops: bad input -------------------------------------------------------

TEST(OptimiserOps, RefuseBadInput) {
  const Tensor p = Tensor::zeros({3, 4}), g = Tensor::zeros({3, 4}), m = Tensor::zeros({3, 4});
  SgdOptions nesterov_damped;
  nesterov_damped.momentum = 0.9;
  nesterov_damped.dampening = 0.1;
  nesterov_damped.nesterov = Nesterov::Yes;
  expect_error([&] { sgd_step(p, g, m, nesterov_damped); },
               "sgd_step: Nesterov momentum requires a momentum and zero dampening");
  SgdOptions momentum;
  momentum.momentum = 0.9;
  expect_error([&] { sgd_step(p, g, Tensor(), momentum); }, "sgd_step: momentum_buf is undefined");
  expect_error(
      [&] {
        sgd_step(p, Tensor::zeros({4, 3}), m, momentum);
      },
      "sgd_step: grad float32[4, 3] on cpu does not match param float32[3, 4] on cpu");
  SgdOptions step0;
  step0.step = 0;
  expect_error([&] { sgd_step(p, g, Tensor(), step0); }, "sgd_step: step must be 1-based");

  AdamOptions bad_beta;
  bad_beta.beta2 = 1.0;
  expect_error([&] { adam_step(p, g, m, m.clone(), bad_beta); }, "adam_step: invalid beta2 1");
  const Tensor strided = Tensor::zeros({4, 3}).transpose(0, 1);
  expect_error([&] { adam_step(strided, g, m, m.clone(), AdamOptions{}); },
               "adam_step: param float32[3, 4] on cpu must be contiguous (it is updated in place)");
  AdamOptions adamw;
  adamw.mode = WeightDecayMode::Decoupled;
  expect_error(
      [&] {
        adam_step(p, g, m, Tensor::zeros({3, 4}, DType::F64), adamw);
      },
      "adam_step (AdamW): exp_avg_sq float64[3, 4] on cpu differs from param");
  expect_error([&] { sum_of_squares(Tensor::zeros({2}, DType::I64)); },
               "sum_of_squares: expected a floating-point tensor");
  expect_error([&] { scale(strided, 2.0); }, "scale: x float32[3, 4] on cpu must be contiguous");
}

// ---- optimiser ops: values by hand ----------------------------------------------------

TEST(OptimiserOps, SgdStepByHand) {
  Tensor p = t({1.0f, -2.0f}, {2});
  Tensor buf = t({7.0f, 7.0f}, {2});  // ignored on the first step
  SgdOptions o;
  o.lr = 0.1;
  o.momentum = 0.5;
  o.dampening = 0.25;
  o.weight_decay = 0.5;
  sgd_step(p, t({0.5f, 1.0f}, {2}), buf, o);
  // d = g + 0.5 p = {1.0, 0.0}; buf = d; p -= 0.1 * buf.
  EXPECT_TRUE(allclose(buf, t({1.0f, 0.0f}, {2}), kFloat, "buf after step 1"));
  EXPECT_TRUE(allclose(p, t({0.9f, -2.0f}, {2}), kFloat, "param after step 1"));
  o.step = 2;
  sgd_step(p, t({0.5f, 1.0f}, {2}), buf, o);
  // d = {0.5 + 0.45, 1 - 1} = {0.95, 0}; buf = 0.5 buf + 0.75 d = {1.2125, 0}.
  EXPECT_TRUE(allclose(buf, t({1.2125f, 0.0f}, {2}), kFloat, "buf after step 2"));
  EXPECT_TRUE(allclose(p, t({0.77875f, -2.0f}, {2}), kFloat, "param after step 2"));
}

TEST(OptimiserOps, AdamStepByHand) {
  // Step 1 from zero moments moves each element by lr * g / (|g| + eps * ...) ~ lr * sign(g).
  Tensor p = t({1.0f, -1.0f, 0.5f}, {3});
  Tensor m = Tensor::zeros({3}), v = Tensor::zeros({3});
  AdamOptions o;
  o.lr = 0.01;
  adam_step(p, t({0.2f, -3.0f, 0.0f}, {3}), m, v, o);
  EXPECT_TRUE(allclose(p, t({0.99f, -0.99f, 0.5f}, {3}), kFloat, "param"));
  EXPECT_TRUE(allclose(m, t({0.02f, -0.3f, 0.0f}, {3}), kFloat, "exp_avg"));
  EXPECT_TRUE(allclose(v, t({0.00004f, 0.009f, 0.0f}, {3}), {1e-9, 1e-5}, "exp_avg_sq"));
  // AdamW: decay first, p *= 1 - lr * wd = 0.999, then the same Adam move.
  Tensor q = t({2.0f}, {1});
  Tensor m2 = Tensor::zeros({1}), v2 = Tensor::zeros({1});
  o.weight_decay = 0.1;
  o.mode = WeightDecayMode::Decoupled;
  adam_step(q, t({1.0f}, {1}), m2, v2, o);
  EXPECT_NEAR(q.item(), 2.0 * 0.999 - 0.01, 1e-6);
}

// The per-step scalars read from a float64 tensor give the host-scalar update bit for
// bit; clip_coefficient is clip_grad_norm's arithmetic.
TEST(OptimiserOps, DeviceScalarsEqualHostScalars) {
  Generator g(5);
  const Tensor p0 = rand_uniform({37}, -1, 1, g), grad = rand_uniform({37}, -1, 1, g);
  const Tensor m0 = rand_uniform({37}, -0.1, 0.1, g), v0 = rand_uniform({37}, 0, 0.05, g);
  for (WeightDecayMode mode : {WeightDecayMode::L2, WeightDecayMode::Decoupled}) {
    AdamOptions o;
    o.lr = 0.003;
    o.weight_decay = 0.02;
    o.mode = mode;
    o.step = 9;
    Tensor p = p0.clone(), m = m0.clone(), v = v0.clone();
    adam_step(p, grad, m, v, o);
    const std::array<double, 3> d = adam_dynamic_scalars(o);
    Tensor p2 = p0.clone(), m2 = m0.clone(), v2 = v0.clone();
    AdamOptions decoy = o;
    decoy.lr = 1.0;
    decoy.step = 1;
    adam_step(p2, grad, m2, v2, decoy, Tensor::from_vector<double>({d[0], d[1], d[2]}, {3}));
    EXPECT_EQ(p2.to_vector<float>(), p.to_vector<float>());
    EXPECT_EQ(m2.to_vector<float>(), m.to_vector<float>());
    EXPECT_EQ(v2.to_vector<float>(), v.to_vector<float>());
  }
  SgdOptions s;
  s.lr = 0.05;
  s.momentum = 0.9;
  s.step = 3;
  Tensor p = p0.clone(), buf = m0.clone(), p2 = p0.clone(), buf2 = m0.clone();
  sgd_step(p, grad, buf, s);
  SgdOptions decoy = s;
  decoy.lr = 2.0;
  sgd_step(p2, grad, buf2, decoy, Tensor::from_vector<double>({0.05}, {1}));
  EXPECT_EQ(p2.to_vector<float>(), p.to_vector<float>());
  EXPECT_EQ(buf2.to_vector<float>(), buf.to_vector<float>());
  EXPECT_ERROR_WITH(adam_step(p2, grad, m0.clone(), v0.clone(), AdamOptions{}, Tensor::zeros({2}, DType::F64)),
                    "3 contiguous float64");

  // Clipping: {norm, factor}; below the threshold the factor is exactly 1.
  const Tensor a = t({3.0f, -4.0f}, {2}), b = t({12.0f}, {1});
  const std::vector<double> c = clip_coefficient({sum_of_squares(a), sum_of_squares(b)}, 6.5).to_vector<double>();
  EXPECT_DOUBLE_EQ(c[0], 13.0);
  EXPECT_DOUBLE_EQ(c[1], 6.5 / (13.0 + 1e-6));
  EXPECT_EQ(clip_coefficient({sum_of_squares(a)}, 100.0).to_vector<double>()[1], 1.0);
  Tensor x = a.clone();
  scale_by(x, Tensor::from_vector<double>({c[1]}, {1}));
  Tensor x2 = a.clone();
  scale(x2, c[1]);
  EXPECT_EQ(x.to_vector<float>(), x2.to_vector<float>());
  EXPECT_ERROR_WITH(clip_coefficient({}, 1.0), "no sums of squares");
}

TEST(OptimiserOps, SumOfSquaresAndScale) {
  const Tensor x = t({3.0f, -4.0f, 12.0f}, {3});
  const Tensor s = sum_of_squares(x);
  EXPECT_EQ(s.dtype(), DType::F64);
  EXPECT_EQ(s.dim(), 0);
  EXPECT_DOUBLE_EQ(s.item(), 169.0);
  Tensor y = x.clone();
  scale(y, -0.5);
  EXPECT_TRUE(equal(y, t({-1.5f, 2.0f, -6.0f}, {3}), "scaled"));
}

}  // namespace
}  // namespace caption::testing
