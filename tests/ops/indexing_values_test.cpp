// Forward and backward values of embedding, dropout, concat, slice, index_select and
// gather against numbers PyTorch 1.13 computed (float64, F.embedding with padding_idx,
// torch.gather, torch.index_select) or that follow from the definitions (dropout's Philox
// mask), and bad input refused with a message naming it.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>

#include "kernels/philox.h"
#include "tests/harness/expect_error.h"
#include "tests/harness/harness.h"

namespace caption::testing {
namespace {

Tensor f64(const std::vector<double>& v, const Shape& s) { return Tensor::from_vector<double>(v, s); }
Tensor i64(const std::vector<int64_t>& v, const Shape& s) { return Tensor::from_vector<int64_t>(v, s); }

// 0, 1, 2, ... in the given shape.
Tensor arange(const Shape& s, DType t = DType::F64) {
  std::vector<double> v(static_cast<size_t>(shape_numel(s)));
  std::iota(v.begin(), v.end(), 0.0);
  return f64(v, s).to(t);
}


// ---- embedding ----------------------------------------------------------------------------

TEST(EmbeddingValues, RowsAndGradientWithPadding) {
  Tensor w = arange({4, 3}).set_requires_grad(true);
  const Tensor ids = i64({1, 0, 1, 3, 1, 0}, {2, 3});
  const Tensor y = embedding(w, ids, 0);
  // The padding row is still read in the forward pass (PyTorch does the same).
  EXPECT_TRUE(equal(y, f64({3, 4, 5, 0, 1, 2, 3, 4, 5, 9, 10, 11, 3, 4, 5, 0, 1, 2}, {2, 3, 3}),
                    "embedding"));
  y.backward(arange({2, 3, 3}));
  // Row 1 sums three gradient rows (ids at positions 0, 2, 4); the padding row 0 gets none.
  EXPECT_TRUE(equal(w.grad(), f64({0, 0, 0, 18, 21, 24, 0, 0, 0, 9, 10, 11}, {4, 3}),
                    "embedding gradient"));
}

TEST(EmbeddingValues, Int32IdsAndNegativePaddingIndex) {
  Tensor w = arange({3, 2}).set_requires_grad(true);
  const Tensor y = embedding(w, i64({2, 2, 0}, {3}).to(DType::I32), -1);  // padding row 2
  EXPECT_TRUE(equal(y, f64({4, 5, 4, 5, 0, 1}, {3, 2}), "embedding, int32 ids"));
  y.backward(f64({1, 1, 1, 1, 1, 1}, {3, 2}));
  EXPECT_TRUE(equal(w.grad(), f64({1, 1, 0, 0, 0, 0}, {3, 2}), "gradient, padding row 2"));
}

TEST(EmbeddingValues, BadInputRefused) {
  const Tensor w = arange({4, 3});
  EXPECT_ERROR_WITH(embedding(w, i64({1, 0, 1, 3, 4, 0}, {2, 3})), "id 4 at position [1, 1]");
  EXPECT_ERROR_WITH(embedding(w, i64({-1}, {1})), "id -1 at position [0]");
  EXPECT_ERROR_WITH(embedding(w, i64({1}, {1}), 4), "padding_idx 4");
  EXPECT_ERROR_WITH(embedding(w, f64({1}, {1})), "int64 or int32");
  EXPECT_ERROR_WITH(embedding(arange({4}), i64({1}, {1})), "weight must be float [V, E]");
}

// ---- dropout ------------------------------------------------------------------------------

TEST(DropoutValues, EvalAndZeroRateReturnTheInputItself) {
  const Tensor x = arange({2, 3});
  Generator gen(5);
  EXPECT_TRUE(dropout(x, 0.5, gen, DropoutMode::Eval).same(x));
  EXPECT_TRUE(dropout(x, 0.0, gen, DropoutMode::Train).same(x));
  EXPECT_EQ(gen.offset(), 0u) << "an identity dropout must not draw numbers";
}

TEST(DropoutValues, MaskFollowsThePhiloxStream) {
  const int64_t n = 1001;  // ends in the middle of a Philox block
  const double p = 0.3;
  Generator gen(42);
  gen.reserve(3);  // the stream starts at counter 1
  const uint64_t base = gen.offset();
  Tensor x = Tensor::ones({n}, DType::F32).set_requires_grad(true);
  const Tensor y = dropout(x, p, gen, DropoutMode::Train);
  EXPECT_EQ(gen.offset(), base + (n + 3) / 4);
  const std::vector<float> got = y.to_vector<float>();
  const float scale = static_cast<float>(1.0 / (1.0 - p));
  int64_t kept = 0;
  for (int64_t i = 0; i < n; ++i) {
    const bool keep =
        kernels::word_to_unit_float(kernels::philox_word(42, base, static_cast<uint64_t>(i))) >= 0.3f;
    kept += keep;
    ASSERT_EQ(got[i], keep ? scale : 0.0f) << "element " << i;
  }
  EXPECT_GT(kept, 0);
  EXPECT_LT(kept, n);
  // The backward regenerates the same mask: gradient = mask * scale * upstream.
  const Tensor g = arange({n}, DType::F32);
  y.backward(g);
  const std::vector<float> gx = x.grad().to_vector<float>();
  for (int64_t i = 0; i < n; ++i)
    ASSERT_EQ(gx[i], got[i] * static_cast<float>(i)) << "gradient element " << i;
}

TEST(DropoutValues, KeepRateAndDeterminism) {
  const int64_t n = 100000;
  const Tensor x = Tensor::ones({n}, DType::F64);
  Generator a(7), b(7);
  const std::vector<double> ya = dropout(x, 0.25, a, DropoutMode::Train).to_vector<double>();
  const std::vector<double> yb = dropout(x, 0.25, b, DropoutMode::Train).to_vector<double>();
  EXPECT_EQ(ya, yb) << "same generator state, same mask";
  const double kept = static_cast<double>(std::count_if(ya.begin(), ya.end(), [](double v) { return v != 0; }));
  EXPECT_NEAR(kept / n, 0.75, 0.01);
  EXPECT_DOUBLE_EQ(*std::max_element(ya.begin(), ya.end()), 1.0 / 0.75);
  // float32 and float64 draw the same mask from the same state.
  Generator c(7);
  const std::vector<float> yc = dropout(x.to(DType::F32), 0.25, c, DropoutMode::Train).to_vector<float>();
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(yc[i] != 0, ya[i] != 0) << "element " << i;
  // The next call continues the stream: a different mask.
  EXPECT_NE(dropout(x, 0.25, a, DropoutMode::Train).to_vector<double>(), ya);
}

// A device counter (engine/random.h) replaces the generator's offset at origin by the
// counter's value: holding the offset the generator would have used, it draws exactly
// the plain call's mask, forward and backward; holding another value, another mask.
TEST(DropoutValues, DeviceCounterStandsForTheOffset) {
  const Tensor x = arange({4, 9});
  Generator plain(11);
  plain.reserve(40);  // 10 Philox counters (4 words each)
  const uint64_t start = plain.offset();
  const Tensor leaf = x.clone().set_requires_grad(true);
  const Tensor y = dropout(leaf, 0.4, plain, DropoutMode::Train);
  sum(mul(y, arange({4, 9}))).backward();

  Generator counted(11);
  counted.reserve(3);  // origin 1; the counter holds 10: the stream starts at 10 + (1 - 1)
  const uint64_t origin = counted.offset();
  Tensor counter = i64({static_cast<int64_t>(start)}, {1});
  counted.attach_device_counter(counter);
  EXPECT_EQ(counted.counter_origin(), origin);
  const Tensor leaf2 = x.clone().set_requires_grad(true);
  const Tensor y2 = dropout(leaf2, 0.4, counted, DropoutMode::Train);
  sum(mul(y2, arange({4, 9}))).backward();
  EXPECT_EQ(y2.to_vector<double>(), y.to_vector<double>());
  EXPECT_EQ(leaf2.grad().to_vector<double>(), leaf.grad().to_vector<double>());
  EXPECT_EQ(counted.offset(), origin + 9u) << "the generator still reserves what the call draws (36 words)";

  // The counter is read when the kernel runs: a new value, a new mask.
  counter.fill_(static_cast<double>(start + 1));
  Generator again(11);
  again.reserve(3);
  again.attach_device_counter(counter);
  EXPECT_NE(dropout(x, 0.4, again, DropoutMode::Train).to_vector<double>(), y.to_vector<double>());
  again.detach_device_counter();
  EXPECT_FALSE(again.device_counter().defined());
  EXPECT_ERROR_WITH(again.attach_device_counter(f64({1.0}, {1})), "one int64");
}

TEST(DropoutValues, BadRateRefused) {
  Generator gen(1);
  const Tensor x = arange({3});
  EXPECT_ERROR_WITH(dropout(x, 1.0, gen, DropoutMode::Train), "p must be in [0, 1), got 1");
  EXPECT_ERROR_WITH(dropout(x, -0.1, gen, DropoutMode::Eval), "p must be in [0, 1)");
  EXPECT_ERROR_WITH(dropout(x, std::nan(""), gen, DropoutMode::Train), "p must be in [0, 1)");
}

// ---- concat and slice ----------------------------------------------------------------------

TEST(ConcatValues, ValuesAndSplitGradients) {
  Tensor a = arange({2, 2}).set_requires_grad(true);
  Tensor b = f64({4, 5}, {2, 1}).set_requires_grad(true);
  const Tensor y = concat({a, b}, -1);
  EXPECT_TRUE(equal(y, f64({0, 1, 4, 2, 3, 5}, {2, 3}), "concat"));
  y.backward(f64({10, 11, 12, 13, 14, 15}, {2, 3}));
  EXPECT_TRUE(equal(a.grad(), f64({10, 11, 13, 14}, {2, 2}), "gradient of the first piece"));
  EXPECT_TRUE(equal(b.grad(), f64({12, 15}, {2, 1}), "gradient of the second piece"));
}

TEST(ConcatValues, IntegerTensorsAndNonContiguousInputs) {
  const Tensor y = concat({i64({1, 2}, {1, 2}), i64({3, 4, 5, 6}, {2, 2})}, 0);
  EXPECT_TRUE(equal(y, i64({1, 2, 3, 4, 5, 6}, {3, 2}), "concat of int64"));
  const Tensor t = arange({2, 3}).transpose(0, 1);  // [3, 2], not contiguous
  EXPECT_TRUE(equal(concat({t, t}, 1), f64({0, 3, 0, 3, 1, 4, 1, 4, 2, 5, 2, 5}, {3, 4}),
                    "concat of transposed views"));
}

TEST(ConcatValues, BadInputRefused) {
  EXPECT_ERROR_WITH(concat({}, 0), "no tensors");
  EXPECT_ERROR_WITH(concat({arange({2, 3}), arange({3, 3})}, 1), "tensor 1 has shape [3, 3]");
  EXPECT_ERROR_WITH(concat({arange({2, 3}), arange({2, 3, 1})}, 0), "tensor 1 has shape");
  EXPECT_ERROR_WITH(concat({arange({2}), arange({2}, DType::F32)}, 0), "dtype or device");
}

TEST(SliceValues, PythonRangesAndScatteredGradient) {
  Tensor x = arange({2, 5}).set_requires_grad(true);
  const Tensor y = slice(x, 1, 1, 5, 2);
  EXPECT_TRUE(equal(y, f64({1, 3, 6, 8}, {2, 2}), "x[:, 1:5:2]"));
  y.backward(f64({1, 2, 3, 4}, {2, 2}));
  EXPECT_TRUE(equal(x.grad(), f64({0, 1, 0, 2, 0, 0, 3, 0, 4, 0}, {2, 5}), "slice gradient"));
  EXPECT_TRUE(equal(slice(x, 1, -2), f64({3, 4, 8, 9}, {2, 2}), "x[:, -2:]"));
  EXPECT_TRUE(equal(slice(x, 0, -10, 1), f64({0, 1, 2, 3, 4}, {1, 5}), "x[-10:1] (clamped)"));
  EXPECT_EQ(slice(x, 1, 4, 2).shape(), (Shape{2, 0}));
  EXPECT_TRUE(equal(slice(i64({1, 2, 3}, {3}), 0, 1), i64({2, 3}, {2}), "slice of int64"));
}

TEST(SliceValues, BadInputRefused) {
  EXPECT_ERROR_WITH(slice(arange({3}), 0, 0, 3, 0), "step must be positive");
  EXPECT_ERROR_WITH(slice(arange({3}), 1, 0, 3), "axis");
}

// ---- index_select and gather -----------------------------------------------------------------

TEST(IndexSelectValues, RepeatedIndicesAccumulate) {
  Tensor x = arange({3, 4}).set_requires_grad(true);
  const Tensor y = index_select(x, 0, i64({2, 0, 2}, {3}));
  EXPECT_TRUE(equal(y, f64({8, 9, 10, 11, 0, 1, 2, 3, 8, 9, 10, 11}, {3, 4}), "index_select"));
  y.backward(Tensor::ones({3, 4}, DType::F64));
  EXPECT_TRUE(equal(x.grad(), f64({1, 1, 1, 1, 0, 0, 0, 0, 2, 2, 2, 2}, {3, 4}),
                    "index_select gradient"));
  EXPECT_TRUE(equal(index_select(arange({2, 3}, DType::I64), 1, i64({2, 2}, {2}).to(DType::I32)),
                    i64({2, 2, 5, 5}, {2, 2}), "index_select of int64 along the last axis"));
}

TEST(IndexSelectValues, BadInputRefused) {
  const Tensor x = arange({3, 4});
  EXPECT_ERROR_WITH(index_select(x, 0, i64({0, 3}, {2})), "index 3 at position [1]");
  EXPECT_ERROR_WITH(index_select(x, 0, i64({0, 1}, {1, 2})), "index must be 1-D");
  EXPECT_ERROR_WITH(index_select(x, 1, f64({0}, {1})), "int64 or int32");
}

TEST(GatherValues, ValuesAndScatterAddGradient) {
  Tensor x = arange({3, 4}).set_requires_grad(true);
  const Tensor y = gather(x, 1, i64({0, 0, 3, 1, 2, 2}, {3, 2}));
  EXPECT_TRUE(equal(y, f64({0, 0, 7, 5, 10, 10}, {3, 2}), "gather"));
  y.backward(f64({1, 2, 3, 4, 5, 6}, {3, 2}));
  EXPECT_TRUE(equal(x.grad(), f64({3, 0, 0, 0, 0, 4, 0, 3, 0, 0, 11, 0}, {3, 4}), "gather gradient"));
}

TEST(GatherValues, IndexSmallerThanInputOnOtherAxes) {
  Tensor x = arange({2, 3, 4}).set_requires_grad(true);
  const Tensor y = gather(x, 1, i64({2, 0}, {1, 1, 2}));
  EXPECT_TRUE(equal(y, f64({8, 1}, {1, 1, 2}), "gather with a [1, 1, 2] index"));
  y.backward(f64({1, 2}, {1, 1, 2}));
  std::vector<double> expected(24, 0.0);
  expected[8] = 1;  // x[0, 2, 0]
  expected[1] = 2;  // x[0, 0, 1]
  EXPECT_TRUE(equal(x.grad(), f64(expected, {2, 3, 4}), "gradient through the narrowed input"));
}

TEST(GatherValues, BadInputRefused) {
  const Tensor x = arange({3, 4});
  EXPECT_ERROR_WITH(gather(x, 1, i64({0, 4}, {1, 2})), "index 4 at position [0, 1]");
  EXPECT_ERROR_WITH(gather(x, 1, i64({0, 1}, {2})), "must have the rank of the input");
  EXPECT_ERROR_WITH(gather(x, 1, i64({0, 0, 0, 0}, {4, 1})), "larger than the input");
}

// max_last is torch.max(x, dim=-1): the first index among equal maxima, a NaN counts as
// the maximum (the first NaN), values keep the dtype, indices are int64, shape [...].
TEST(MaxLast, FirstMaximumAndNaNLikePyTorch) {
  const float nan = std::nanf("");
  const Tensor x = Tensor::from_vector<float>({1, 3, 3, 2,       //
                                               -1, -1, -1, -1,   //
                                               0, nan, 5, nan,   //
                                               -2, -1, -3, -1},
                                              {2, 2, 4});
  const MaxResult r = max_last(x);
  EXPECT_EQ(r.values.shape(), (Shape{2, 2}));
  EXPECT_EQ(r.indices.dtype(), DType::I64);
  EXPECT_EQ(r.indices.to_vector<int64_t>(), (std::vector<int64_t>{1, 0, 1, 1}));
  const std::vector<float> v = r.values.to_vector<float>();
  EXPECT_EQ(v[0], 3.0f);
  EXPECT_EQ(v[1], -1.0f);
  EXPECT_TRUE(std::isnan(v[2]));
  EXPECT_EQ(v[3], -1.0f);
  // A long row (more than a block's threads) with its maximum near the end.
  std::vector<double> row(5000, 0.5);
  row[4321] = 2.0;
  row[4999] = 2.0;
  const MaxResult d = max_last(Tensor::from_vector<double>(row, {5000}));
  EXPECT_EQ(d.values.dim(), 0);
  EXPECT_EQ(d.indices.to_vector<int64_t>(), std::vector<int64_t>{4321});
  EXPECT_ERROR_WITH(max_last(Tensor::empty({3, 0}, DType::F32)), "is empty");
  EXPECT_ERROR_WITH(max_last(Tensor::from_vector<int64_t>({1, 2}, {2})), "floating");
}

}  // namespace
}  // namespace caption::testing
