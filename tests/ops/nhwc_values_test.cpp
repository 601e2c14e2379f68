// The NHWC bfloat16 inference ops (engine/ops/nhwc.h) on the CPU, value by value:
// packing rounds to nearest even and permutes to NHWC, unpacking is exact; the
// convolution is exactly autocast's NCHW convolution (the same rounded product) followed
// by the epilogue's bias, residual and ReLU rounded once; max pooling is exactly
// max_pool2d's values; in training, the convolution's gradients are autocast's and the
// batch norm (residual and ReLU fused) is float32's rounded once. Then the refusals: wrong
// dtypes and shapes, inputs requiring grad where no gradient exists.
// The CUDA kernels are held to these through the harness cases (tests/ops/nhwc_cases.cpp).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "engine/autocast.h"
#include "engine/engine.h"
#include "kernels/bf16.h"
#include "tests/harness/expect_error.h"
#include "tests/harness/harness.h"

namespace caption {
namespace {

using testing::equal;
using testing::expect_error;

// x rounded to bfloat16 values (float32 tensor).
Tensor rounded(const Tensor& x) { return x.to(DType::BF16).to(DType::F32); }

TEST(NhwcOps, PackRoundsToNearestEvenAndPermutes) {
  Generator g(3);
  Tensor x = rand_normal({2, 3, 4, 5}, 0, 10, g);
  // Ties: 1 + 2^-8 lies halfway between two bfloat16 values and goes to the even one (1);
  // 1 + 3 * 2^-8 goes up to 1 + 2^-6.
  x.data<float>()[0] = 1.f + 1.f / 256;
  x.data<float>()[1] = 1.f + 3.f / 256;
  const Tensor p = nhwc_pack(x);
  ASSERT_EQ(p.shape(), (Shape{2, 4, 5, 3}));
  ASSERT_EQ(p.dtype(), DType::BF16);
  const float* xs = x.data<float>();
  const uint16_t* ps = p.data<uint16_t>();
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t c = 0; c < 3; ++c)
      for (int64_t i = 0; i < 20; ++i)
        ASSERT_EQ(ps[(b * 20 + i) * 3 + c], kernels::bf16_bits(xs[(b * 3 + c) * 20 + i]))
            << b << " " << c << " " << i;
  EXPECT_EQ(kernels::bf16_to_float(ps[0]), 1.f);
  EXPECT_EQ(kernels::bf16_to_float(ps[3]), 1.f + 1.f / 64);  // x[0, 0, 0, 1]: pixel 1, channel 0
  EXPECT_TRUE(equal(nhwc_unpack(p), rounded(x), "round trip"));
}

TEST(NhwcOps, PackPadsChannelsWithZeros) {
  Generator g(4);
  const Tensor x = rand_normal({2, 3, 2, 3}, 0, 1, g);
  const Tensor p = nhwc_pack(x, 8);
  ASSERT_EQ(p.shape(), (Shape{2, 2, 3, 8}));
  const std::vector<float> v = p.to(DType::F32).to_vector<float>();
  const Tensor ref = nhwc_pack(x);  // unpadded
  const std::vector<float> r = ref.to(DType::F32).to_vector<float>();
  for (int64_t px = 0; px < 12; ++px)
    for (int64_t c = 0; c < 8; ++c)
      EXPECT_EQ(v[px * 8 + c], c < 3 ? r[px * 3 + c] : 0.f) << px << " " << c;
  EXPECT_EQ(nhwc_pack(x, 3).shape(), (Shape{2, 2, 3, 3}));
  expect_error([&] { nhwc_pack(x, 0); }, "nhwc_pack: channel_multiple must be between 1 and 64, got 0");
}

struct ConvCase {
  Shape x, w;
  Conv2dOptions o;
  bool bias, residual, relu;
};

TEST(NhwcOps, ConvolutionIsAutocastConvolutionThenOneRoundedEpilogue) {
  const ConvCase cases[] = {
      {{2, 5, 7, 6}, {3, 5, 3, 3}, {{1, 1}, {1, 1}, {1, 1}}, true, false, true},
      {{3, 8, 5, 4}, {16, 8, 1, 1}, {}, true, true, true},
      {{1, 6, 7, 7}, {10, 6, 1, 1}, {{2, 2}, {0, 0}, {1, 1}}, false, false, false},
      {{2, 3, 15, 13}, {8, 3, 7, 7}, {{2, 2}, {3, 3}, {1, 1}}, true, true, false},
      // A float32 3x3 this size would go through Winograd (kernels/cpu/conv.h); the twin's
      // products must stay those of the operands. Its float32 sums differ from the direct
      // ones by ~1e-6 relative, so among 131,072 outputs some round to another bfloat16.
      {{2, 64, 32, 32}, {64, 64, 3, 3}, {{1, 1}, {1, 1}, {1, 1}}, true, true, true},
  };
  Generator g(5);
  for (const ConvCase& k : cases) {
    SCOPED_TRACE(shape_string(k.x) + " * " + shape_string(k.w));
    const Tensor x = rounded(rand_normal(k.x, 0, 1, g));
    const Tensor w = rounded(rand_normal(k.w, 0, 0.3, g));
    const Tensor b = k.bias ? rand_normal({k.w[0]}, 0, 1, g) : Tensor();
    const int64_t ho = conv_output_size(k.x[2], k.w[2], k.o.stride.h, k.o.padding.h, 1);
    const int64_t wo = conv_output_size(k.x[3], k.w[3], k.o.stride.w, k.o.padding.w, 1);
    const Tensor r = k.residual ? rounded(rand_normal({k.x[0], k.w[0], ho, wo}, 0, 1, g)) : Tensor();
    Tensor ref;
    {
      AutocastGuard autocast;  // the product rounded to bfloat16, as cuDNN stores it
      ref = conv2d(x, w, Tensor(), k.o);
    }
    if (b.defined()) ref = add(ref, b.reshape({1, k.w[0], 1, 1}));
    if (r.defined()) ref = add(ref, r);
    if (k.relu) ref = relu(ref);
    ref = rounded(ref);
    const Tensor got = nhwc_unpack(conv_nhwc(nhwc_pack(x), nhwc_pack(w), b,
                                             r.defined() ? nhwc_pack(r) : Tensor(),
                                             {k.o, k.relu}));
    EXPECT_TRUE(equal(got, ref, "conv_nhwc"));
  }
}

TEST(NhwcOps, MaxPoolIsMaxPool2dIncludingPaddingAndNan) {
  Generator g(8);
  Tensor x = rounded(rand_normal({2, 4, 9, 8}, 0, 1, g));
  x.data<float>()[5] = std::numeric_limits<float>::quiet_NaN();
  x.data<float>()[100] = -std::numeric_limits<float>::infinity();
  const MaxPool2dOptions opts[] = {
      {.kernel = {3, 3}, .stride = Size2{2, 2}, .padding = {1, 1}},
      {.kernel = {2, 3}, .padding = {1, 1}, .dilation = {2, 2}},
  };
  int nans = 0;
  for (const MaxPool2dOptions& o : opts) {
    const Tensor ref = max_pool2d(x, o);
    const Tensor got = nhwc_unpack(max_pool_nhwc(nhwc_pack(x), o));
    ASSERT_EQ(got.shape(), ref.shape());
    const float* a = got.data<float>();
    const float* e = ref.data<float>();
    for (int64_t i = 0; i < ref.numel(); ++i) {
      if (std::isnan(e[i])) {
        EXPECT_TRUE(std::isnan(a[i])) << i;
        ++nans;
      } else {
        EXPECT_EQ(a[i], e[i]) << i;
      }
    }
  }
  EXPECT_GT(nans, 0);  // the NaN reached an output window
}

// Gradients of x and w (float32 leaves) after loss = sum(y * g), g already bfloat16.
struct Grads {
  Tensor y, dx, dw;
};
template <typename F>
Grads conv_grads(const Tensor& x0, const Tensor& w0, const Tensor& g, F conv) {
  Tensor x = x0.clone(), w = w0.clone();
  x.set_requires_grad(true);
  w.set_requires_grad(true);
  const Tensor y = conv(x, w);
  sum(mul(y, g)).backward();
  return {y.detach(), x.grad(), w.grad()};
}

TEST(NhwcOps, ConvolutionGradientsAreAutocastGradients) {
  // Training path: pack, plain conv_nhwc, unpack. Autocast's NCHW convolution rounds the
  // same operands, the incoming gradient and both gradients to bfloat16 and computes them
  // with the same float32 kernels on the CPU: the same bits.
  const ConvCase cases[] = {
      {{2, 6, 7, 6}, {4, 6, 3, 3}, {{2, 2}, {1, 1}, {1, 1}}, false, false, false},
      {{3, 5, 5, 5}, {7, 5, 1, 1}, {{2, 2}, {0, 0}, {1, 1}}, false, false, false},
      {{1, 8, 4, 3}, {16, 8, 1, 1}, {}, false, false, false},
  };
  Generator gen(8);
  for (const ConvCase& k : cases) {
    SCOPED_TRACE(shape_string(k.x) + " * " + shape_string(k.w));
    const Tensor x = rand_normal(k.x, 0, 1, gen), w = rand_normal(k.w, 0, 0.3, gen);
    const int64_t ho = conv_output_size(k.x[2], k.w[2], k.o.stride.h, k.o.padding.h, 1);
    const int64_t wo = conv_output_size(k.x[3], k.w[3], k.o.stride.w, k.o.padding.w, 1);
    const Tensor g = rounded(rand_normal({k.x[0], k.w[0], ho, wo}, 0, 1, gen));
    const Grads ours = conv_grads(x, w, g, [&](const Tensor& a, const Tensor& b) {
      return nhwc_unpack(conv_nhwc(nhwc_pack(a), nhwc_pack(b), Tensor(), Tensor(), {k.o, false}));
    });
    const Grads ref = conv_grads(x, w, g, [&](const Tensor& a, const Tensor& b) {
      AutocastGuard autocast;
      return conv2d(a, b, Tensor(), k.o);
    });
    EXPECT_TRUE(equal(ours.y, ref.y, "y"));
    EXPECT_TRUE(equal(ours.dx, ref.dx, "grad x"));
    EXPECT_TRUE(equal(ours.dw, ref.dw, "grad w"));
  }
}

TEST(NhwcOps, TrainingBatchNormIsFloat32BatchNormResidualAndReluRoundedOnce) {
  struct Case {
    Shape x;
    bool affine, residual, relu;
  };
  const Case cases[] = {{{2, 6, 3, 5}, true, true, true},
                        {{3, 5, 4, 3}, true, false, true},
                        {{2, 4, 2, 3}, false, true, false}};
  Generator gen(9);
  for (const Case& k : cases) {
    SCOPED_TRACE(shape_string(k.x));
    const int64_t C = k.x[1];
    const Tensor x0 = rounded(rand_normal(k.x, 0.5, 2, gen));
    const Tensor w0 = k.affine ? rand_uniform({C}, 0.5, 1.5, gen) : Tensor();
    const Tensor b0 = k.affine ? rand_normal({C}, 0, 1, gen) : Tensor();
    const Tensor r0 = k.residual ? rounded(rand_normal(k.x, 0, 1, gen)) : Tensor();
    const Tensor g = rounded(rand_normal(k.x, 0, 1, gen));
    const Tensor rm0 = rand_normal({C}, 0, 1, gen), rv0 = rand_uniform({C}, 0.5, 2, gen);
    struct Run {
      Tensor y, rm, rv, dx, dw, db, dr;
    };
    auto run = [&](bool nhwc) {
      Tensor x = x0.clone(), w = k.affine ? w0.clone() : Tensor(), b = k.affine ? b0.clone() : Tensor();
      Tensor r = k.residual ? r0.clone() : Tensor();
      Tensor rm = rm0.clone(), rv = rv0.clone();
      for (Tensor* t : {&x, &w, &b, &r})
        if (t->defined()) t->set_requires_grad(true);
      Tensor y;
      if (nhwc) {
        y = nhwc_unpack(batch_norm_nhwc(nhwc_pack(x), w, b, rm, rv,
                                        r.defined() ? nhwc_pack(r) : Tensor(), {0.1, 1e-5, k.relu}));
      } else {
        y = batch_norm2d(x, w, b, rm, rv, {.mode = BatchNormOptions::Mode::Train});
        if (r.defined()) y = add(y, r);
        if (k.relu) y = relu(y);
      }
      sum(mul(y, g)).backward();
      auto grad = [](const Tensor& t) { return t.defined() ? t.grad() : Tensor(); };
      return Run{y.detach(), rm, rv, x.grad(), grad(w), grad(b), grad(r)};
    };
    const Run ours = run(true), ref = run(false);
    // One rounding to bfloat16 of the same float32 value (to float32's last bits).
    const testing::Tolerance one_step{1e-5, 4e-3};
    EXPECT_TRUE(testing::allclose(ours.y, ref.y, one_step, "y"));
    EXPECT_TRUE(equal(ours.y, rounded(ours.y), "y is bfloat16"));
    EXPECT_TRUE(testing::allclose(ours.rm, ref.rm, {1e-6, 1e-6}, "running mean"));
    EXPECT_TRUE(testing::allclose(ours.rv, ref.rv, {1e-6, 1e-6}, "running var"));
    EXPECT_TRUE(testing::allclose(ours.dx, ref.dx, one_step, "grad x"));
    if (k.affine) {
      EXPECT_TRUE(testing::allclose(ours.dw, ref.dw, {1e-5, 1e-5}, "grad weight"));
      EXPECT_TRUE(testing::allclose(ours.db, ref.db, {1e-5, 1e-5}, "grad bias"));
    }
    // The residual's gradient is the incoming one where ReLU passed: exact.
    if (k.residual) {
      EXPECT_TRUE(equal(ours.dr, ref.dr, "grad residual"));
    }
  }
}

TEST(NhwcOps, BfloatAddSumsEqualShapesRoundedOnce) {
  // Autograd sums the bfloat16 gradients of an activation that feeds two layers.
  Generator gen(10);
  const Tensor a = rand_normal({2, 3, 4, 5}, 0, 1, gen), b = rand_normal({2, 3, 4, 5}, 0, 1, gen);
  const Tensor got = add(nhwc_pack(a), nhwc_pack(b));
  EXPECT_TRUE(equal(got, nhwc_pack(add(rounded(a), rounded(b))), "sum"));
  // And through autograd: x packed once, used by two convolutions.
  Tensor x = a.clone();
  x.set_requires_grad(true);
  const Tensor px = nhwc_pack(x);
  const Tensor w1 = nhwc_pack(rand_normal({4, 3, 1, 1}, 0, 1, gen));
  const Tensor w2 = nhwc_pack(rand_normal({4, 3, 3, 3}, 0, 1, gen));
  const Conv2dOptions pad1{{1, 1}, {1, 1}, {1, 1}};
  const Tensor y1 = conv_nhwc(px, w1, Tensor(), Tensor(), {});
  const Tensor y2 = conv_nhwc(px, w2, Tensor(), Tensor(), {pad1, false});
  sum(add(nhwc_unpack(y1), nhwc_unpack(y2))).backward();
  Tensor x1 = a.clone(), x2 = a.clone();
  x1.set_requires_grad(true);
  x2.set_requires_grad(true);
  sum(nhwc_unpack(conv_nhwc(nhwc_pack(x1), w1, Tensor(), Tensor(), {}))).backward();
  sum(nhwc_unpack(conv_nhwc(nhwc_pack(x2), w2, Tensor(), Tensor(), {pad1, false}))).backward();
  EXPECT_TRUE(equal(x.grad(), nhwc_unpack(add(nhwc_pack(x1.grad()), nhwc_pack(x2.grad()))),
                    "gradient of an activation used twice"));
}

// Training the stem: its 3 input channels packed with padding to 8 (the padded channels'
// gradients dropped) and the max pool's gradient to each window's first maximum, as
// max_pool2d's (ties and NaN included).
TEST(NhwcOps, PaddedPackAndMaxPoolGradientsAreTheFloat32Ones) {
  Generator gen(11);
  Tensor w = rand_normal({4, 3, 2, 2}, 0, 1, gen);
  w.set_requires_grad(true);
  const Tensor packed = nhwc_pack(w, 8);
  EXPECT_EQ(packed.shape(), (Shape{4, 2, 2, 8}));
  const Tensor u = rounded(rand_normal({4, 8, 2, 2}, 0, 1, gen));  // NCHW of the padded weight
  sum(mul(nhwc_unpack(packed), u)).backward();
  EXPECT_TRUE(equal(w.grad(), u.narrow(1, 0, 3).contiguous(), "padded pack's gradient"));

  // Max pooling: 3x3, stride 2, padding 1 over values with ties and a NaN.
  Tensor x = rounded(rand_normal({2, 3, 7, 6}, 0, 1, gen));
  x.data<float>()[0] = x.data<float>()[1];  // a tie in the first window
  x.data<float>()[20] = NAN;
  const MaxPool2dOptions o{.kernel = {3, 3}, .stride = Size2{2, 2}, .padding = {1, 1}};
  const Tensor up = rounded(rand_normal({2, 3, 4, 3}, 0, 1, gen));
  Tensor a = x.clone(), b = x.clone();
  a.set_requires_grad(true);
  b.set_requires_grad(true);
  const Tensor ya = nhwc_unpack(max_pool_nhwc(nhwc_pack(a), o));
  const Tensor yb = max_pool2d(b, o);
  EXPECT_TRUE(equal(ya, yb, "values"));
  sum(mul(ya, up)).backward();
  sum(mul(yb, up)).backward();
  EXPECT_TRUE(equal(a.grad(), rounded(b.grad()), "gradient"));
}

TEST(NhwcOps, RefusalsNameTheOpAndTheProblem) {
  const Tensor x = Tensor::zeros({1, 4, 5, 5});
  const Tensor px = nhwc_pack(x), pw = nhwc_pack(Tensor::zeros({2, 4, 3, 3}));
  expect_error([&] { nhwc_pack(Tensor::zeros({4, 5, 5})); }, "nhwc_pack: input must be a 4-d float32");
  expect_error([&] { nhwc_unpack(x); }, "nhwc_unpack: input must be a 4-d bfloat16 tensor in NHWC");
  expect_error([&] { conv_nhwc(px, nhwc_pack(Tensor::zeros({2, 3, 3, 3})), Tensor(), Tensor(), {}); },
               "has 4 channels but weight");
  expect_error([&] { conv_nhwc(px, pw, Tensor::zeros({3}), Tensor(), {}); }, "conv_nhwc: bias");
  expect_error([&] { conv_nhwc(px, pw, Tensor(), nhwc_pack(Tensor::zeros({1, 2, 5, 5})), {}); },
               "conv_nhwc: residual");
  expect_error([&] { conv_nhwc(nhwc_pack(Tensor::zeros({1, 4, 2, 2})), pw, Tensor(), Tensor(), {}); },
               "conv_nhwc: kernel 3x3 with dilation (1, 1) does not fit input");
  expect_error([&] { max_pool_nhwc(px, {.kernel = {3, 3}, .padding = {2, 2}}); },
               "max_pool_nhwc: padding (2, 2)");
  Tensor trainable = Tensor::zeros({1, 4, 5, 5});
  trainable.set_requires_grad(true);
  Tensor bias = Tensor::zeros({2});
  bias.set_requires_grad(true);
  expect_error([&] { conv_nhwc(px, pw, bias, Tensor(), {}); },
               "conv_nhwc: an input requires grad; only the plain convolution");
  const Tensor pt = nhwc_pack(trainable);
  expect_error([&] { conv_nhwc(pt, pw, Tensor(), Tensor(), {{}, true}); },
               "conv_nhwc: an input requires grad");
  expect_error([&] { fold_pack_nhwc(trainable.reshape({4, 5, 5, 1}), Tensor(), Tensor(), Tensor(),
                                    Tensor::zeros({4}), Tensor::ones({4}), 1e-5); },
               "fold_pack_nhwc: inference only");
  // batch_norm_nhwc
  const Tensor y = nhwc_pack(Tensor::zeros({2, 4, 3, 3}));
  const Tensor ones = Tensor::ones({4});
  expect_error([&] { batch_norm_nhwc(x, ones, ones, Tensor(), Tensor(), Tensor(), {}); },
               "batch_norm_nhwc: input must be a 4-d bfloat16 tensor in NHWC");
  expect_error([&] { batch_norm_nhwc(y, Tensor::ones({3}), ones, Tensor(), Tensor(), Tensor(), {}); },
               "batch_norm_nhwc: weight must be float32 [4]");
  expect_error([&] { batch_norm_nhwc(y, ones, ones, Tensor(), Tensor(), px, {}); },
               "batch_norm_nhwc: residual bfloat16[1, 5, 5, 4] on cpu does not match input "
               "bfloat16[2, 3, 3, 4] on cpu");
  expect_error([&] { batch_norm_nhwc(nhwc_pack(Tensor::zeros({1, 4, 1, 1})), ones, ones, Tensor(),
                                     Tensor(), Tensor(), {}); },
               "batch_norm_nhwc: training mode needs more than one value per channel");
  expect_error([&] { batch_norm_nhwc(y, ones, ones, Tensor::zeros({3}), Tensor(), Tensor(), {}); },
               "batch_norm_nhwc: running_mean must be float32 [4]");
  Tensor stat = Tensor::zeros({4});
  stat.set_requires_grad(true);
  expect_error([&] { batch_norm_nhwc(y, ones, ones, stat, Tensor(), Tensor(), {}); },
               "batch_norm_nhwc: the running statistics must not require grad");
  // bfloat16 arithmetic is add of equal shapes only.
  expect_error([&] { add(y, nhwc_pack(Tensor::zeros({1, 4, 3, 3}))); },
               "add: bfloat16 operands support only add of equal shapes");
  expect_error([&] { mul(y, y); }, "mul: bfloat16 operands support only add of equal shapes");
  NoGradGuard no_grad;  // under no_grad the same inputs are accepted
  EXPECT_EQ(conv_nhwc(px, pw, bias, Tensor(), {}).shape(), (Shape{1, 3, 3, 2}));
}

}  // namespace
}  // namespace caption
