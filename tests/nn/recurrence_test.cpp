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
