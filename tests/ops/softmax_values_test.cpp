// Forward and backward values of softmax, log_softmax and cross_entropy against numbers
// PyTorch 1.13 computed (float64; torch.softmax, torch.log_softmax on masked_fill(-inf)
// inputs, F.cross_entropy with ignore_index), the choices PyTorch leaves open (fully
// masked rows, no valid rows), and bad input refused with a message naming it.
#include <cmath>
#include <limits>
#include <string>

#include "tests/harness/expect_error.h"
#include "tests/harness/harness.h"

namespace caption::testing {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

Tensor f64(const std::vector<double>& v, const Shape& s) { return Tensor::from_vector<double>(v, s); }
Tensor i32(const std::vector<int32_t>& v, const Shape& s) { return Tensor::from_vector<int32_t>(v, s); }
Tensor i64(const std::vector<int64_t>& v, const Shape& s) { return Tensor::from_vector<int64_t>(v, s); }


const Tensor kX = f64({1.0, 2.0, 3.0, -1.0, 0.0, 0.5}, {2, 3});
const Tensor kG = f64({1.0, -1.0, 0.5, 0.25, 2.0, -3.0}, {2, 3});

TEST(SoftmaxValues, RowsOfTheLastAxis) {
  EXPECT_TRUE(allclose(softmax(kX), f64({0.0900305732, 0.2447284711, 0.6652409558, 0.1219516523,
                                         0.3314989604, 0.5465493873}, {2, 3}),
                       {1e-9, 0}, "softmax"));
  EXPECT_TRUE(allclose(log_softmax(kX), f64({-2.4076059644, -1.4076059644, -0.4076059644,
                                             -2.1041306053, -1.1041306053, -0.6041306053}, {2, 3}),
                       {1e-9, 0}, "log_softmax"));
}

TEST(SoftmaxValues, FirstAxis) {
  EXPECT_TRUE(allclose(softmax(kX, 0), f64({0.8807970780, 0.8807970780, 0.9241418200, 0.1192029220,
                                            0.1192029220, 0.0758581800}, {2, 3}),
                       {1e-9, 0}, "softmax over axis 0"));
}

TEST(SoftmaxValues, LargeInputsAreStableInFloat32) {
  const Tensor x = Tensor::from_vector<float>({1000.f, 1001.f, 1002.f}, {3});
  EXPECT_TRUE(allclose(softmax(x), Tensor::from_vector<float>({0.0900305732f, 0.2447284711f, 0.6652409558f}, {3}),
                       {1e-6, 0}, "softmax of large logits"));
  EXPECT_TRUE(allclose(log_softmax(x), Tensor::from_vector<float>({-2.4076059644f, -1.4076059644f, -0.4076059644f}, {3}),
                       {1e-5, 0}, "log_softmax of large logits"));
}

TEST(SoftmaxValues, Backward) {
  Tensor x = kX.clone().set_requires_grad(true);
  softmax(x).backward(kG);
  EXPECT_TRUE(allclose(x.grad(), f64({0.0740121013, -0.2882711920, 0.2142590907, 0.1458739723,
                                      0.9766497489, -1.1225237212}, {2, 3}),
                       {1e-9, 0}, "softmax gradient"));
  Tensor x2 = kX.clone().set_requires_grad(true);
  log_softmax(x2).backward(kG);
  EXPECT_TRUE(allclose(x2.grad(), f64({0.9549847134, -1.1223642355, 0.1673795221, 0.3414637392,
                                       2.2486242203, -2.5900879596}, {2, 3}),
                       {1e-9, 0}, "log_softmax gradient"));
}

// Row 0 keeps entries 0 and 2; row 1 keeps nothing.
const Tensor kMask = i32({1, 0, 1, 0, 0, 0}, {2, 3});

TEST(SoftmaxValues, MaskedAndFullyMaskedRows) {
  EXPECT_TRUE(allclose(softmax(kX, -1, kMask), f64({0.1192029220, 0, 0.8807970780, 0, 0, 0}, {2, 3}),
                       {1e-9, 0}, "masked softmax"));
  EXPECT_TRUE(allclose(log_softmax(kX, -1, kMask),
                       f64({-2.1269280110, -kInf, -0.1269280110, -kInf, -kInf, -kInf}, {2, 3}),
                       {1e-9, 0}, "masked log_softmax"));
}

TEST(SoftmaxValues, MaskedGradientsAreFiniteAndZeroWhereExcluded) {
  // Upstream gradients that are NaN where the outputs were excluded (what 0 * -inf
  // downstream produces) must not leak into the row.
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const Tensor g = f64({1.0, nan, 0.5, nan, nan, nan}, {2, 3});
  Tensor x = kX.clone().set_requires_grad(true);
  softmax(x, -1, kMask).backward(g);
  // Row 0 is a softmax over {1, 3}: p = (0.1192029220, 0.8807970780), s = sum(g p).
  const double p0 = 0.1192029220, p2 = 0.8807970780, s = p0 * 1.0 + p2 * 0.5;
  EXPECT_TRUE(allclose(x.grad(), f64({p0 * (1.0 - s), 0, p2 * (0.5 - s), 0, 0, 0}, {2, 3}),
                       {1e-9, 0}, "masked softmax gradient"));
  Tensor x2 = kX.clone().set_requires_grad(true);
  log_softmax(x2, -1, kMask).backward(g);
  EXPECT_TRUE(allclose(x2.grad(), f64({1.0 - p0 * 1.5, 0, 0.5 - p2 * 1.5, 0, 0, 0}, {2, 3}),
                       {1e-9, 0}, "masked log_softmax gradient"));
}

TEST(SoftmaxValues, MaskBroadcastsOverLeadingAxes) {
  const Tensor y = softmax(kX, -1, i32({1, 0, 1}, {3}));
  EXPECT_TRUE(allclose(y, f64({0.1192029220, 0, 0.8807970780, 0.1824255238, 0, 0.8175744762}, {2, 3}),
                       {1e-9, 0}, "softmax with a [3] mask over [2, 3]"));
}

TEST(SoftmaxValues, MaskAlongAMiddleAxis) {
  // x [2, 2, 1]: softmax over axis 1, mask excludes entry (0, 1, 0) and all of column 1.
  const Tensor x = f64({0.0, 5.0, 1.0, 2.0}, {2, 2, 1});
  const Tensor y = softmax(x, 1, i32({1, 0, 0, 0}, {2, 2, 1}));
  EXPECT_TRUE(allclose(y, f64({1, 0, 0, 0}, {2, 2, 1}), {0, 0}, "middle-axis masked softmax"));
  const Tensor ly = log_softmax(x, 1, i32({1, 0, 0, 0}, {2, 2, 1}));
  EXPECT_TRUE(allclose(ly, f64({0, -kInf, -kInf, -kInf}, {2, 2, 1}), {0, 0}, "middle-axis masked log_softmax"));
}

TEST(SoftmaxValues, BadInputRefused) {
  EXPECT_ERROR_WITH(softmax(kX, -1, f64({1, 1, 1}, {3})), "mask must be int32");
  EXPECT_ERROR_WITH(softmax(kX, -1, i32({1, 1}, {2})), "suffix");
  EXPECT_ERROR_WITH(log_softmax(kX, 2), "axis");
  EXPECT_ERROR_WITH(softmax(i64({1, 2}, {2})), "float32 or float64");
}

// PyTorch: F.cross_entropy(logits, t, ignore_index=-100) for these logits and targets.
const Tensor kLogits = f64({1.0, 2.0, 3.0, -1.0, 0.0, 0.5, 0.3, -0.2, 0.1, 2.0, 2.0, 2.0}, {4, 3});
const std::vector<int64_t> kTargets = {2, -100, 0, 1};

TEST(CrossEntropyValues, MeanOverValidRows) {
  Tensor x = kLogits.clone().set_requires_grad(true);
  const Tensor loss = cross_entropy(x, i64(kTargets, {4}));
  EXPECT_EQ(loss.dim(), 0);
  EXPECT_NEAR(loss.item(), 0.797385856926982, 1e-12);
  loss.backward();
  EXPECT_TRUE(allclose(x.grad(), f64({0.0300101911, 0.0815761570, -0.1115863481, 0, 0, 0,
                                      -0.1958911048, 0.0833629255, 0.1125281793, 0.1111111111,
                                      -0.2222222222, 0.1111111111}, {4, 3}),
                       {1e-9, 0}, "cross_entropy mean gradient"));
}

TEST(CrossEntropyValues, SumWithInt32Targets) {
  Tensor x = kLogits.clone().set_requires_grad(true);
  const Tensor loss = cross_entropy(x, i64(kTargets, {4}).to(DType::I32), {-100, Reduction::Sum});
  EXPECT_NEAR(loss.item(), 2.392157570780946, 1e-12);
  loss.backward(Tensor::scalar(2.0, DType::F64));  // an upstream gradient of 2 scales it
  EXPECT_TRUE(allclose(x.grad(), f64({0.1800611464, 0.4894569422, -0.6695180884, 0, 0, 0,
                                      -1.1753466288, 0.5001775532, 0.6751690756, 0.6666666667,
                                      -1.3333333333, 0.6666666667}, {4, 3}),
                       {1e-9, 0}, "cross_entropy sum gradient"));
}

TEST(CrossEntropyValues, CustomIgnoreIndexInsideTheVocabulary) {
  // ignore_index 0 (a <pad> id): row 2's target 0 is ignored, so the mean is over rows 0 and 3.
  const Tensor loss = cross_entropy(kLogits, i64({2, 0, 0, 1}, {4}), {0, Reduction::Mean});
  EXPECT_NEAR(loss.item(), (0.4076059644 + 1.0986122887) / 2, 1e-9);
}

TEST(CrossEntropyValues, NoValidRowGivesZeroLossAndGradient) {
  Tensor x = kLogits.clone().set_requires_grad(true);
  const Tensor loss = cross_entropy(x, i64({-100, -100, -100, -100}, {4}));
  EXPECT_EQ(loss.item(), 0.0);
  loss.backward();
  EXPECT_TRUE(equal(x.grad(), Tensor::zeros({4, 3}, DType::F64), "gradient with no valid row"));
}

TEST(CrossEntropyValues, LargeLogitsAreStableInFloat32) {
  const Tensor x = Tensor::from_vector<float>({1000.f, 1001.f, 1002.f}, {1, 3});
  EXPECT_NEAR(cross_entropy(x, i64({0}, {1})).item(), 2.4076059644, 1e-4);
}

// A caller that counted the valid rows (and checked the targets) gets the same loss and
// gradient without the op reading the targets back; a count above the rows is refused.
TEST(CrossEntropyValues, KnownValidRowsGiveTheSameResult) {
  Tensor x = kLogits.clone().set_requires_grad(true), y = kLogits.clone().set_requires_grad(true);
  const Tensor checked = cross_entropy(x, i64(kTargets, {4}));
  CrossEntropyOptions o;
  o.known_valid_rows = 3;
  const Tensor counted = cross_entropy(y, i64(kTargets, {4}), o);
  EXPECT_EQ(counted.item(), checked.item());
  checked.backward();
  counted.backward();
  EXPECT_TRUE(equal(y.grad(), x.grad(), "gradient with the rows counted by the caller"));
  o.known_valid_rows = 5;
  EXPECT_ERROR_WITH(cross_entropy(kLogits, i64(kTargets, {4}), o), "5 valid rows claimed for 4 rows");
}

TEST(CrossEntropyValues, BadInputRefused) {
  EXPECT_ERROR_WITH(cross_entropy(kLogits, i64({2, 3, 0, 1}, {4})), "target 3 of row 1");
  EXPECT_ERROR_WITH(cross_entropy(kLogits, i64({2, 0, -1, 1}, {4})), "target -1 of row 2");
  EXPECT_ERROR_WITH(cross_entropy(kLogits, i64({2, 0, 1}, {3})), "3 targets for 4 rows");
  EXPECT_ERROR_WITH(cross_entropy(kLogits, f64({2, 0, 0, 1}, {4})), "int64 or int32");
  EXPECT_ERROR_WITH(cross_entropy(f64({1, 2, 3}, {3}), i64({0}, {1})), "logits must be float [N, V]");
}

}  // namespace
}  // namespace caption::testing
