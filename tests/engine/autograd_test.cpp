// Autograd: chain rule through views and ops, shared subexpressions, accumulation in
// leaves, no_grad, frozen parameters, release of saved tensors, retain_graph.
#include <gtest/gtest.h>

#include <cmath>

#include "engine/engine.h"
#include "tests/harness/harness.h"

namespace caption {
namespace {

Tensor leaf(std::vector<double> v, Shape s) {
  Tensor t = Tensor::from_vector<double>(v, s);
  t.set_requires_grad(true);
  return t;
}

TEST(Autograd, ChainRuleByHand) {
  // y = sum(tanh(a * b + a)); dy/da = (1 - t^2)(b + 1), dy/db = (1 - t^2) a
  Tensor a = leaf({0.5, -1.0, 2.0}, {3});
  Tensor b = leaf({1.5, 0.25, -0.5}, {3});
  Tensor y = sum(tanh(add(mul(a, b), a)));
  y.backward();
  const std::vector<double> av{0.5, -1.0, 2.0}, bv{1.5, 0.25, -0.5};
  std::vector<double> ga = a.grad().to_vector<double>(), gb = b.grad().to_vector<double>();
  for (int i = 0; i < 3; ++i) {
    const double t = std::tanh(av[i] * bv[i] + av[i]);
    EXPECT_NEAR(ga[i], (1 - t * t) * (bv[i] + 1), 1e-12);
    EXPECT_NEAR(gb[i], (1 - t * t) * av[i], 1e-12);
  }
}

TEST(Autograd, SharedSubexpressionSumsGradients) {
  // z = x * x + x -> dz/dx = 2x + 1 (x feeds three uses)
  Tensor x = leaf({3.0, -2.0}, {2});
  Tensor z = sum(add(mul(x, x), x));
  z.backward();
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{7.0, -3.0}));
}

TEST(Autograd, LeavesAccumulateAcrossBackwardCallsUntilZeroGrad) {
  Tensor x = leaf({1.0, 2.0}, {2});
  sum(mul(x, 3.0)).backward();
  sum(mul(x, 3.0)).backward();
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{6.0, 6.0}));
  x.zero_grad();
  EXPECT_FALSE(x.grad().defined());
  sum(x).backward();
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{1.0, 1.0}));
}

TEST(Autograd, GradientsFlowThroughViews) {
  Tensor x = leaf({1, 2, 3, 4, 5, 6}, {2, 3});
  // Uses a transpose, a narrow, a select and a reshape.
  Tensor y = x.transpose(0, 1).narrow(0, 1, 2);   // [[2, 5], [3, 6]]
  Tensor w = Tensor::from_vector<double>({1, 10, 100, 1000}, {2, 2});
  Tensor z = add(sum(mul(y, w)), sum(x.select(0, 0).reshape({3, 1})));
  z.backward();
  // d/dx: from y: x[0][1] <- 1, x[1][1] <- 10, x[0][2] <- 100, x[1][2] <- 1000; from select row 0: +1
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{1, 2, 101, 0, 10, 1000}));
}

TEST(Autograd, NoGradRecordsNothing) {
  Tensor x = leaf({1.0}, {1});
  {
    NoGradGuard guard;
    Tensor y = mul(x, x);
    EXPECT_FALSE(y.requires_grad());
    EXPECT_EQ(y.grad_fn(), nullptr);
  }
  Tensor y = mul(x, x);
  EXPECT_TRUE(y.requires_grad());
  EXPECT_NE(y.grad_fn(), nullptr);
}

TEST(Autograd, FrozenParametersGetNoGradient) {
  Tensor w = leaf({2.0, 3.0}, {2});
  Tensor frozen = leaf({5.0, 7.0}, {2});
  frozen.set_requires_grad(false);
  sum(mul(w, frozen)).backward();
  EXPECT_EQ(w.grad().to_vector<double>(), (std::vector<double>{5.0, 7.0}));
  EXPECT_FALSE(frozen.grad().defined());
  // Nothing requires grad at all: backward is refused with a clear message.
  Tensor c = sum(mul(frozen, frozen));
  EXPECT_THROW(c.backward(), Error);
}

TEST(Autograd, SavedTensorsAreReleasedUnlessRetained) {
  Tensor x = leaf({1.0, 2.0}, {2});
  Tensor y = sum(mul(x, x));
  y.backward(Tensor(), Tensor::RetainGraph::Yes);
  y.backward();  // second pass works with the retained graph
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{4.0, 8.0}));
  try {
    y.backward();
    FAIL() << "third backward through a released graph was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("second time"), std::string::npos) << e.what();
  }
}

TEST(Autograd, ReleasedGraphFreesActivationMemory) {
  const size_t before = allocator_for(Device::cpu()).stats().bytes_in_use;
  {
    Tensor x = Tensor::ones({1000}, DType::F64);
    x.set_requires_grad(true);
    Tensor y = sum(tanh(mul(x, x)));
    y.backward();
    // After backward, the saved activations are gone: only x, its grad, y remain
    // (plus the tiny scalar y), not the two 1000-element intermediates.
    const size_t live = allocator_for(Device::cpu()).stats().bytes_in_use - before;
    EXPECT_LE(live, 2 * 8000u + 64u);
  }
  EXPECT_EQ(allocator_for(Device::cpu()).stats().bytes_in_use, before);
}

TEST(Autograd, NonScalarBackwardNeedsAGradient) {
  Tensor x = leaf({1.0, 2.0}, {2});
  Tensor y = mul(x, 2.0);
  EXPECT_THROW(y.backward(), Error);
  y.backward(Tensor::from_vector<double>({1.0, -1.0}, {2}));
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{2.0, -2.0}));
}

TEST(Autograd, DetachCutsTheGraph) {
  Tensor x = leaf({2.0}, {1});
  Tensor y = mul(x.detach(), x);
  sum(y).backward();
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{2.0}));
}

}  // namespace
}  // namespace caption
