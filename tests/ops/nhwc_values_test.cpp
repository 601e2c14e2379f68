// The NHWC bfloat16 inference ops (engine/ops/nhwc.h) on the CPU, value by value:
// packing rounds to nearest even and permutes to NHWC, unpacking is exact; the
// convolution is exactly autocast's NCHW convolution (the same rounded product) followed
// by the epilogue's bias, residual and ReLU rounded once; max pooling is exactly
// max_pool2d's values. Then the refusals: wrong dtypes and shapes, inputs requiring grad.
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
  expect_error([&] { nhwc_pack(trainable); }, "nhwc_pack: inference only (no backward)");
  Tensor bias = Tensor::zeros({2});
  bias.set_requires_grad(true);
  expect_error([&] { conv_nhwc(px, pw, bias, Tensor(), {}); }, "conv_nhwc: inference only");
  NoGradGuard no_grad;  // under no_grad the same inputs are accepted
  EXPECT_EQ(nhwc_pack(trainable).shape(), (Shape{1, 5, 5, 4}));
  EXPECT_EQ(conv_nhwc(px, pw, bias, Tensor(), {}).shape(), (Shape{1, 3, 3, 2}));
}

}  // namespace
}  // namespace caption
