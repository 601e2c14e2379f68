// nn/recurrence.h against plain recording, in float64 on a toy recurrence with
// shrinking batches (as the decoder's packed steps): the same outputs and the same
// gradients for the weights, the bias, the initial state, the inputs and a base tensor
// read through per-step views; steps whose outputs get no gradient; a second backward
// with a retained graph; no recording without grad mode.
#include <gtest/gtest.h>

#include <cmath>

#include "nn/recurrence.h"

namespace caption::nn {
namespace {

Tensor param(const Shape& s, Generator& g) {
  Tensor t = rand_normal(s, 0, 0.5, g, DType::F64);
  t.set_requires_grad(true);
  return t;
}

double max_diff(const Tensor& a, const Tensor& b) {
  EXPECT_EQ(a.shape(), b.shape());
  const std::vector<double> x = a.contiguous().to_vector<double>(), y = b.contiguous().to_vector<double>();
  double m = 0;
  for (size_t i = 0; i < x.size() && i < y.size(); ++i) m = std::max(m, std::abs(x[i] - y[i]));
  return m;
}

struct Toy {
  Tensor w, b, v, h0, base, seq;  // leaves
  std::vector<int64_t> rows{5, 5, 4, 2, 1};
  explicit Toy(uint64_t seed) {
    Generator g(seed);
    w = param({6, 6}, g);
    b = param({6}, g);
    v = param({6, 3}, g);
    h0 = param({5, 6}, g);
    base = param({5, 6}, g);      // read through row prefixes
    seq = param({5, 5, 3}, g);    // [T, B, 3], time-major, one step per index
  }
  // h_{t+1} = tanh(h_t W^T + b + base[:n] + seq[t, :n] V^T) on the first n rows; the loss
  // is the sum of squares of every step's h (step `skip` contributes nothing).
  Tensor run(bool helpers, int skip = -1) {
    Tensor loss = Tensor::zeros({}, DType::F64);
    Tensor h = h0;
    RecurrentLinear rw(w, b), rv(v, Tensor());
    StepViews base_rows(base), seq_steps(seq);
    for (size_t t = 0; t < rows.size(); ++t) {
      const int64_t n = rows[t];
      const Tensor hn = h.narrow(0, 0, n);
      const Tensor s = seq_steps.view([t, n](const Tensor& x) { return x.select(0, static_cast<int64_t>(t)).narrow(0, 0, n); });
      const Tensor pre = helpers ? add(add(rw(hn), base_rows.view([n](const Tensor& x) { return x.narrow(0, 0, n); })), rv(s))
                                 : add(add(linear(hn, w, b), base.narrow(0, 0, n)),
                                       linear(seq.select(0, static_cast<int64_t>(t)).narrow(0, 0, n), v));
      h = tanh(pre);
      if (static_cast<int>(t) != skip) loss = add(loss, sum(mul(h, h)));
    }
    return loss;
  }
  std::vector<Tensor> grads() {
    std::vector<Tensor> g;
    for (Tensor* t : {&w, &b, &v, &h0, &base, &seq}) {
      g.push_back(t->grad().clone());
      t->zero_grad();
    }
    return g;
  }
};

TEST(Recurrence, SameValuesAndGradientsAsPlainRecording) {
  for (int skip : {-1, 2, 4}) {
    SCOPED_TRACE(skip < 0 ? std::string("every step scored") : str("step ", skip, " unscored"));
    Toy toy(7);
    const Tensor plain = toy.run(false, skip);
    plain.backward();
    const std::vector<Tensor> expected = toy.grads();
    const Tensor helped = toy.run(true, skip);
    EXPECT_NEAR(helped.item(), plain.item(), 1e-12);
    helped.backward();
    const std::vector<Tensor> got = toy.grads();
    const char* names[] = {"W", "b", "V", "h0", "base", "seq"};
    for (size_t i = 0; i < got.size(); ++i) EXPECT_LT(max_diff(got[i], expected[i]), 1e-12) << names[i];
  }
}

TEST(Recurrence, RetainedGraphSecondBackwardAccumulates) {
  Toy toy(8);
  toy.run(false).backward();
  const std::vector<Tensor> once = toy.grads();
  const Tensor loss = toy.run(true);
  loss.backward(Tensor(), Tensor::RetainGraph::Yes);
  loss.backward();
  const std::vector<Tensor> twice = toy.grads();
  for (size_t i = 0; i < once.size(); ++i) EXPECT_LT(max_diff(twice[i], mul(once[i], 2.0)), 1e-12) << i;
}

TEST(Recurrence, NothingIsRecordedWithoutGradMode) {
  Toy toy(9);
  NoGradGuard no_grad;
  RecurrentLinear rw(toy.w, toy.b);
  StepViews rows(toy.base);
  const Tensor y = rw(toy.h0);
  const Tensor v = rows.view([](const Tensor& x) { return x.narrow(0, 0, 2); });
  EXPECT_FALSE(y.requires_grad());
  EXPECT_FALSE(v.requires_grad());
  EXPECT_LT(max_diff(y, linear(toy.h0, toy.w, toy.b)), 1e-15);
}

}  // namespace
}  // namespace caption::nn

namespace caption::nn {
namespace {

// split(): several weights that read the same h, stacked into one RecurrentLinear and
// handed out as column blocks, give the values and gradients of separate products, also
// when a block's output gets no gradient at some step, and with frozen weights.
TEST(Recurrence, SplitBlocksEqualSeparateProducts) {
  for (bool score_second_block : {true, false}) {
    SCOPED_TRACE(score_second_block ? "every block scored" : "block 1 unscored");
    Generator g(11);
    Tensor wa = param({4, 6}, g), ba = param({4}, g), wb = param({3, 6}, g), bb = param({3}, g);
    Tensor wc = param({6, 6}, g), bc = param({6}, g), h0 = param({5, 6}, g);
    const std::vector<int64_t> rows{5, 4, 4, 2};
    auto run = [&](bool split) {
      Tensor loss = Tensor::zeros({}, DType::F64);
      Tensor h = h0;
      RecurrentLinear stacked(concat({wa, wb, wc}, 0), concat({ba, bb, bc}, 0));
      for (int64_t n : rows) {
        const Tensor hn = h.narrow(0, 0, n);
        std::vector<Tensor> p;
        if (split) {
          p = stacked.split(hn, {4, 3, 6});
        } else {
          p = {linear(hn, wa, ba), linear(hn, wb, bb), linear(hn, wc, bc)};
        }
        h = tanh(p[2]);
        loss = add(loss, sum(mul(p[0], p[0])));
        if (score_second_block) loss = add(loss, sum(p[1]));
        loss = add(loss, sum(mul(h, h)));
      }
      return loss;
    };
    auto grads = [&] {
      std::vector<Tensor> out;
      for (Tensor* t : {&wa, &ba, &wb, &bb, &wc, &bc, &h0}) {
        out.push_back(t->grad().defined() ? t->grad().clone() : Tensor::zeros(t->shape(), DType::F64));
        t->zero_grad();
      }
      return out;
    };
    const Tensor plain = run(false);
    plain.backward();
    const std::vector<Tensor> want = grads();
    const Tensor stacked = run(true);
    EXPECT_NEAR(stacked.item(), plain.item(), 1e-12);
    stacked.backward();
    const std::vector<Tensor> got = grads();
    const char* names[] = {"wa", "ba", "wb", "bb", "wc", "bc", "h0"};
    for (size_t i = 0; i < got.size(); ++i) EXPECT_LT(max_diff(got[i], want[i]), 1e-12) << names[i];
  }
  // Frozen weights: the blocks still carry h's gradient.
  Generator g(12);
  const Tensor w = rand_normal({7, 6}, 0, 0.5, g, DType::F64);
  Tensor h = param({3, 6}, g);
  RecurrentLinear frozen(w, Tensor());
  const std::vector<Tensor> p = frozen.split(h, {2, 5});
  add(sum(p[0]), sum(mul(p[1], p[1]))).backward();
  // d/dh: ones [3, 2] w[0:2] + 2 p1 w[2:7].
  const Tensor want = add(matmul(Tensor::ones({3, 2}, DType::F64), w.narrow(0, 0, 2)),
                          matmul(mul(p[1].detach(), 2.0), w.narrow(0, 2, 5)));
  ASSERT_TRUE(h.grad().defined());
  EXPECT_LT(max_diff(h.grad(), want), 1e-12);
  EXPECT_THROW(frozen.split(h, {2, 4}), Error);  // blocks must cover the output
}

}  // namespace
}  // namespace caption::nn
