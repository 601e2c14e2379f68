// Forward values of the image ops against hand-computed numbers and against PyTorch
// 1.13 (the numbers below were printed by torch.nn.functional in float64 for inputs
// given by closed formulas, value k = scale * f(a*k + b), so the test needs no torch),
// the running-statistics update of batch norm, edge cases, and bad input refused with
// a message that names the problem. Gradients are checked by the harness
// (tests/ops/image_cases.cpp); here only a few are pinned to PyTorch's or hand values.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <string>

#include "engine/autocast.h"
#include "tests/harness/harness.h"

namespace caption::testing {
namespace {

using Mode = BatchNormOptions::Mode;

Tensor seq(const Shape& shape, double a, double b, double (*f)(double) = std::sin,
           double scale = 1.0, DType dtype = DType::F64) {
  Tensor t = Tensor::empty(shape, DType::F64);
  double* p = t.data<double>();
  for (int64_t k = 0; k < t.numel(); ++k) p[k] = scale * f(a * static_cast<double>(k) + b);
  return t.to(dtype);
}

Tensor values(const std::vector<double>& v, const Shape& shape, DType dtype = DType::F64) {
  return Tensor::from_vector(v, shape).to(dtype);
}

// Runs fn, expects a caption::Error whose message contains `part`.
void expect_error(const std::function<void()>& fn, const std::string& part) {
  try {
    fn();
    ADD_FAILURE() << "no error thrown; expected one mentioning \"" << part << "\"";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(part), std::string::npos)
        << "message \"" << e.what() << "\" does not mention \"" << part << "\"";
  }
}

constexpr Tolerance kExact{1e-12, 1e-12};

// ---- conv2d ---------------------------------------------------------------------

TEST(Conv2dValues, HandComputedDiagonalDifference) {
  // y[i, j] = x[i, j] - x[i+1, j+1] + 0.5 on x = 1..9 (3x3): every output is -3.5.
  const Tensor x = values({1, 2, 3, 4, 5, 6, 7, 8, 9}, {1, 1, 3, 3});
  const Tensor w = values({1, 0, 0, -1}, {1, 1, 2, 2});
  const Tensor y = conv2d(x, w, values({0.5}, {1}));
  EXPECT_TRUE(allclose(y, values({-3.5, -3.5, -3.5, -3.5}, {1, 1, 2, 2}), kExact, "y"));
}

TEST(Conv2dValues, HandComputedStrideAndPadding) {
  // Pad 1, stride 2: windows start at (-1,-1), (-1,1), (1,-1), (1,1); the padded zeros
  // leave only the "-x[i+1, j+1]" tap for the first three.
  const Tensor x = values({1, 2, 3, 4, 5, 6, 7, 8, 9}, {1, 1, 3, 3});
  const Tensor w = values({1, 0, 0, -1}, {1, 1, 2, 2});
  const Tensor y = conv2d(x, w, Tensor(), {.stride = {2, 2}, .padding = {1, 1}});
  EXPECT_TRUE(allclose(y, values({-1, -3, -7, -4}, {1, 1, 2, 2}), kExact, "y"));
}

TEST(Conv2dValues, MatchesPyTorchMixedOptions) {
  // F.conv2d(x, w, b, stride=(2, 1), padding=(1, 2), dilation=(1, 2))
  const Tensor x = seq({2, 3, 6, 5}, 0.37, 0.1);
  const Tensor w = seq({4, 3, 3, 3}, 0.23, 0.0, std::cos, 0.5);
  const Tensor b = values({-0.2, -0.1, 0.0, 0.1}, {4});
  const Tensor y = conv2d(x, w, b, {.stride = {2, 1}, .padding = {1, 2}, .dilation = {1, 2}});
  const Tensor ref = values(
      {-0.61679715607087893, -0.60240621051271293, -0.49258166545089282, -0.30578281105445193,
       -0.29016772027735604, 0.43479093638026151, -0.097625392867096886, -0.08804139415601954,
       -0.09588740241567266, -0.6234428379800443, -0.021215627530605324, 0.5034191858560908,
       0.72961357242190483, 0.47434913322352162, 0.89010621947990187, -0.41986535236337308,
       -0.40959076389820648, -0.26731391953939199, -0.10946918302846272, -0.11110350778715629,
       0.53293206082658595, 0.0035226598137066134, 0.00081933392856320397,
       0.0035119935339442687, -0.51217238078658023, 0.076139470762204675, 0.59815362767692504,
       0.82521945522343343, 0.55752467015749874, 0.96427186175836688, -0.2212210858474859,
       -0.2151178615290309, -0.04115042526871783, 0.086895140152980263, 0.068020149541279884,
       0.62768465754901226, 0.10411648333700373, 0.089140305648651677, 0.10235721743010349,
       -0.39869527674148575, 0.17255157135132695, 0.68915036513841099, 0.91587199157792265,
       0.63718001794026646, 1.0327397128637599, -0.021392468231537148, -0.019493282885558072,
       0.18523337599144524, 0.28279425291184296, 0.24677964746498501, 0.71907681956507941,
       0.20415289855041024, 0.17698404700595982, 0.20065445159645301, -0.28308367820283786,
       0.26803988277014879, 0.7764575989979503, 1.0016212249918828, 0.71342409571549781,
       1.095678586429226, -0.10789600982516201, 0.033513029856793802, 0.10897087413850592,
       -0.1451529605542535, -0.1150798180187752, -1.683283185092636, -1.6504429217811245,
       -2.0741261990465261, -1.6014293872177312, -1.3819976055727725, 1.1569278626397876,
       0.83818696621502475, 1.1301305215329311, 0.80599911448725403, 0.36374331152447975,
       -0.031340544471532047, 0.077556076316037198, 0.13523122969529305, -0.10306716007441899,
       -0.098900910082861226, -1.5751307083084394, -1.5430905650191455, -1.9458409984536114,
       -1.4701211328697259, -1.2562473202481073, 1.2503777302957637, 0.93385277344199846,
       1.2047927039598716, 0.88448575484655723, 0.4526012167118032, 0.044847338825562966,
       0.12064854099189395, 0.16023222805929188, -0.060964938942843945, -0.082727886343507376,
       -1.4590808257664312, -1.4280123357815711, -1.8076737208033264, -1.3314776624200657,
       -1.124306834832727, 1.3365980820841674, 1.0239836441377721, 1.2724694190279062,
       0.95770175483140163, 0.5385006613328468, 0.12079512297085426, 0.16309508969777264,
       0.18437539130852076, -0.018536329880273456, -0.066111962404013458, -1.3352194637062869,
       -1.3052889583687797, -1.6598287022108267, -1.1857058613768079, -0.98634714907059773,
       1.4156626900934739, 1.1086324146497648, 1.3333337158743805, 1.0257905079151637,
       0.62151713551646703},
      {2, 4, 3, 5});
  EXPECT_TRUE(allclose(y, ref, kExact, "conv2d vs PyTorch"));
}

TEST(Conv2dValues, MatchesPyTorchPointwise) {
  const Tensor y = conv2d(seq({1, 3, 2, 2}, 0.37, 0.1), seq({2, 3, 1, 1}, 0.23, 0.0, std::cos, 0.5));
  const Tensor ref = values({0.57324439005490446, 0.55126138605666586, 0.45466773953972511,
                             0.29653694741886949, 0.35804161409510582, 0.39794246573444342,
                             0.3839836714691221, 0.31805448861928898},
                            {1, 2, 2, 2});
  EXPECT_TRUE(allclose(y, ref, kExact, "1x1 conv2d vs PyTorch"));
}

// Direct 7-loop convolution and its gradients in double: the reference for layers large
// enough to take the threaded im2col/col2im path and the float32 gemm.
struct DirectConv {
  std::vector<double> y, gx, gw;
};
DirectConv direct_conv(const std::vector<double>& x, const std::vector<double>& w,
                       const std::vector<double>& gy, const kernels::cpu::Conv2dGeometry& g) {
  DirectConv r;
  r.y.assign(static_cast<size_t>(g.batch * g.out_channels * g.out_plane()), 0.0);
  r.gx.assign(x.size(), 0.0);
  r.gw.assign(w.size(), 0.0);
  for (int64_t b = 0; b < g.batch; ++b)
    for (int64_t o = 0; o < g.out_channels; ++o)
      for (int64_t oh = 0; oh < g.out_h; ++oh)
        for (int64_t ow = 0; ow < g.out_w; ++ow) {
          const size_t yi = static_cast<size_t>(((b * g.out_channels + o) * g.out_h + oh) * g.out_w + ow);
          for (int64_t c = 0; c < g.in_channels; ++c)
            for (int64_t ki = 0; ki < g.kernel_h; ++ki)
              for (int64_t kj = 0; kj < g.kernel_w; ++kj) {
                const int64_t h = oh * g.stride_h - g.pad_h + ki * g.dilation_h;
                const int64_t w_ = ow * g.stride_w - g.pad_w + kj * g.dilation_w;
                if (h < 0 || h >= g.in_h || w_ < 0 || w_ >= g.in_w) continue;
                const size_t xi = static_cast<size_t>(((b * g.in_channels + c) * g.in_h + h) * g.in_w + w_);
                const size_t wi = static_cast<size_t>(((o * g.in_channels + c) * g.kernel_h + ki) * g.kernel_w + kj);
                r.y[yi] += x[xi] * w[wi];
                r.gx[xi] += gy[yi] * w[wi];
                r.gw[wi] += gy[yi] * x[xi];
              }
        }
  return r;
}

void check_against_direct(const Shape& xs, const Shape& ws, Conv2dOptions o) {
  Generator gen(7);
  const Tensor x = random_tensor(xs, gen, DType::F32, Device::cpu());
  Tensor w = random_tensor(ws, gen, DType::F32, Device::cpu(), -0.1, 0.1);
  w.set_requires_grad(true);
  Tensor xr = x.clone();
  xr.set_requires_grad(true);
  const Tensor y = conv2d(xr, w, Tensor(), o);
  const Tensor gy = random_tensor(y.shape(), gen, DType::F32, Device::cpu());
  y.backward(gy);
  kernels::cpu::Conv2dGeometry g;
  g.batch = xs[0];
  g.in_channels = xs[1];
  g.in_h = xs[2];
  g.in_w = xs[3];
  g.out_channels = ws[0];
  g.kernel_h = ws[2];
  g.kernel_w = ws[3];
  g.stride_h = o.stride.h;
  g.stride_w = o.stride.w;
  g.pad_h = o.padding.h;
  g.pad_w = o.padding.w;
  g.dilation_h = o.dilation.h;
  g.dilation_w = o.dilation.w;
  g.out_h = y.shape()[2];
  g.out_w = y.shape()[3];
  const DirectConv r = direct_conv(x.to_vector<double>(), w.to_vector<double>(),
                                   gy.to_vector<double>(), g);
  // float32 sums of up to a few thousand products of O(0.1) terms: ~1e-5 relative.
  const Tolerance tol{2e-4, 2e-4};
  EXPECT_TRUE(allclose(y.to(DType::F64), Tensor::from_vector(r.y, y.shape()), tol, "y"));
  EXPECT_TRUE(allclose(xr.grad().to(DType::F64), Tensor::from_vector(r.gx, xs), tol, "grad_x"));
  EXPECT_TRUE(allclose(w.grad().to(DType::F64), Tensor::from_vector(r.gw, ws), {2e-3, 2e-4},
                       "grad_w"));
}

TEST(Conv2dValues, LargeResNetLikeLayerMatchesDirectLoops) {
  // im2col buffer of 576 x 1024 values: large enough to be split over two threads.
  check_against_direct({1, 64, 32, 32}, {8, 64, 3, 3}, {.padding = {1, 1}});
}

TEST(Conv2dValues, StemLikeLayerMatchesDirectLoops) {
  check_against_direct({2, 3, 33, 31}, {4, 3, 7, 7}, {.stride = {2, 2}, .padding = {3, 3}});
}

// im2col copies a tap's block in one span when the output rows are as wide as the input's
// and both strides are 1 (kernels/cpu/conv.cpp); these shapes reach that path's corners.
TEST(Conv2dValues, SameWidthDilatedLayerMatchesDirectLoops) {
  check_against_direct({2, 3, 9, 8}, {4, 3, 3, 3}, {.padding = {2, 2}, .dilation = {2, 2}});
}

TEST(Conv2dValues, SameWidthRowStrideLayerMatchesDirectLoops) {
  // Wo == W but the rows stride 2: the one-span copy does not apply.
  check_against_direct({2, 3, 9, 8}, {4, 3, 3, 3}, {.stride = {2, 1}, .padding = {1, 1}});
}

TEST(Conv2dValues, SameWidthTapsWhollyInThePaddingMatchDirectLoops) {
  // A 5x5 kernel with padding 2 over a 1-row, 2-column image: most taps read nothing.
  check_against_direct({2, 2, 1, 2}, {3, 2, 5, 5}, {.padding = {2, 2}});
  check_against_direct({1, 2, 3, 1}, {3, 2, 5, 5}, {.padding = {2, 2}});
}

// im2col's strided gathers (a loop of its own for column stride 2, kernels/cpu/conv.cpp):
// odd and even widths, paddings 0-3, a dilated kernel, ResNet's strided 3x3 and 1x1 shapes,
// an image smaller than the kernel.
TEST(Conv2dValues, ColumnStrideTwoMatchesDirectLoops) {
  check_against_direct({2, 3, 12, 12}, {4, 3, 3, 3}, {.stride = {2, 2}, .padding = {1, 1}});
  check_against_direct({2, 3, 11, 13}, {4, 3, 3, 3}, {.stride = {2, 2}, .padding = {1, 1}});
  check_against_direct({2, 5, 9, 10}, {3, 5, 1, 1}, {.stride = {2, 2}});
  check_against_direct({1, 2, 9, 9}, {3, 2, 3, 3}, {.stride = {1, 2}, .padding = {2, 3}});
  check_against_direct({1, 2, 10, 15}, {3, 2, 3, 3},
                       {.stride = {2, 2}, .padding = {2, 2}, .dilation = {2, 3}});
  check_against_direct({2, 2, 1, 2}, {3, 2, 3, 3}, {.stride = {2, 2}, .padding = {1, 1}});
}

TEST(Conv2dValues, PointwiseBatchMatchesDirectLoops) {
  check_against_direct({3, 17, 9, 11}, {5, 17, 1, 1}, {});
}

// The epilogue computes what add and relu compute, to the bit: float32 and float64, with
// and without bias, a residual and ReLU, NaN and negative zero included (relu maps both
// to +0).
TEST(Conv2dValues, EpilogueEqualsSeparateOpsBitForBit) {
  for (DType t : {DType::F32, DType::F64}) {
    Generator gen(5);
    Tensor x = random_tensor({2, 3, 6, 5}, gen, t, Device::cpu());
    const Tensor w = random_tensor({4, 3, 3, 3}, gen, t, Device::cpu());
    const Tensor b = random_tensor({4}, gen, t, Device::cpu());
    const Conv2dOptions o{.padding = {1, 1}};
    Tensor r = random_tensor({2, 4, 6, 5}, gen, t, Device::cpu());
    if (t == DType::F32) {
      x.data<float>()[7] = std::nanf("");  // poisons the outputs whose windows read it
      r.data<float>()[3] = -0.f;
    }
    for (const Tensor& bias : {b, Tensor()})
      for (const Tensor& residual : {r, Tensor()})
        for (bool relu_on : {true, false}) {
          Tensor unfused = conv2d(x, w, bias, o);
          if (residual.defined()) unfused = add(unfused, residual);
          if (relu_on) unfused = relu(unfused);
          const Tensor fused = conv2d(x, w, bias, o, {.residual = residual, .relu = relu_on});
          ASSERT_EQ(fused.shape(), unfused.shape());
          EXPECT_EQ(std::memcmp(fused.raw_data(), unfused.raw_data(),
                                static_cast<size_t>(fused.numel()) * dtype_size(t)),
                    0)
              << dtype_name(t) << " bias " << bias.defined() << " residual "
              << residual.defined() << " relu " << relu_on;
        }
  }
}

// With small output planes the forward multiplies several images at once (13 images of
// 7x7 outputs: a group of 11, then one of 2); each image's result must be the one it gets
// alone, for 3x3 and pointwise layers, with the epilogue. Not to the bit: OpenBLAS may
// sum a product of 539 columns in another order than one of 49 (it does, on SkylakeX
// kernels), so to float32 rounding.
TEST(Conv2dValues, ImagesGroupedInOneProductEqualOneAtATime) {
  Generator gen(8);
  const Tensor x = random_tensor({13, 16, 7, 7}, gen, DType::F32, Device::cpu());
  const Tensor w3 = random_tensor({12, 16, 3, 3}, gen, DType::F32, Device::cpu());
  const Tensor w1 = random_tensor({12, 16, 1, 1}, gen, DType::F32, Device::cpu());
  const Tensor b = random_tensor({12}, gen, DType::F32, Device::cpu());
  const Tensor r = random_tensor({13, 12, 7, 7}, gen, DType::F32, Device::cpu());
  NoGradGuard no_grad;
  for (const Tensor& w : {w3, w1}) {
    const Conv2dOptions o{.padding = {w.size(2) / 2, w.size(3) / 2}};
    const Tensor all = conv2d(x, w, b, o, {.residual = r, .relu = true});
    std::vector<Tensor> each;
    for (int64_t i = 0; i < 13; ++i)
      each.push_back(conv2d(x.narrow(0, i, 1).contiguous(), w, b, o,
                            {.residual = r.narrow(0, i, 1).contiguous(), .relu = true}));
    // Sums of 144 products of O(1) terms: float32 rounding is ~1e-6 of the largest term.
    EXPECT_TRUE(allclose(all, concat(each, 0), {1e-5, 1e-5}, "grouped vs alone"))
        << "kernel " << w.size(2);
  }
}

// Under autocast the product is rounded to bfloat16 before the bias, and the epilogue
// follows in float32: still what add and relu give on that output, bit for bit.
TEST(Conv2dValues, EpilogueUnderAutocastEqualsSeparateOps) {
  Generator gen(6);
  const Tensor x = random_tensor({3, 4, 5, 6}, gen, DType::F32, Device::cpu());
  const Tensor w = random_tensor({5, 4, 3, 3}, gen, DType::F32, Device::cpu());
  const Tensor b = random_tensor({5}, gen, DType::F32, Device::cpu());
  const Tensor r = random_tensor({3, 5, 5, 6}, gen, DType::F32, Device::cpu());
  const Conv2dOptions o{.padding = {1, 1}};
  NoGradGuard no_grad;
  AutocastGuard autocast(true);
  const Tensor unfused = relu(add(conv2d(x, w, b, o), r));
  const Tensor fused = conv2d(x, w, b, o, {.residual = r, .relu = true});
  ASSERT_EQ(fused.shape(), unfused.shape());
  EXPECT_EQ(std::memcmp(fused.raw_data(), unfused.raw_data(), sizeof(float) * fused.numel()), 0);
}

TEST(Conv2dValues, EpilogueRefusedWhileDifferentiating) {
  Tensor x = Tensor::ones({1, 2, 4, 4});
  x.set_requires_grad(true);
  const Tensor w = Tensor::ones({3, 2, 1, 1});
  expect_error([&] { conv2d(x, w, Tensor(), {}, {.relu = true}); },
               "the epilogue (residual or ReLU) is for inference");
  {
    NoGradGuard no_grad;  // the same call without gradients: allowed
    EXPECT_EQ(conv2d(x, w, Tensor(), {}, {.relu = true}).shape(), (Shape{1, 3, 4, 4}));
  }
  const Tensor wrong = Tensor::ones({1, 3, 4, 5});
  expect_error([&] { conv2d(x.detach(), w, Tensor(), {}, {.residual = wrong}); },
               "conv2d: residual float32[1, 3, 4, 5] on cpu does not match the output "
               "[1, 3, 4, 4] of input float32[1, 2, 4, 4] on cpu");
}

TEST(Conv2dValues, EmptyBatch) {
  Tensor w = seq({2, 3, 3, 3}, 0.1, 0.0);
  w.set_requires_grad(true);
  const Tensor y = conv2d(Tensor::zeros({0, 3, 5, 5}, DType::F64), w, Tensor(), {.padding = {1, 1}});
  EXPECT_EQ(y.shape(), (Shape{0, 2, 5, 5}));
  y.backward(Tensor::zeros(y.shape(), DType::F64));
  EXPECT_TRUE(allclose(w.grad(), Tensor::zeros(w.shape(), DType::F64), kExact, "grad_w"));
}

TEST(Conv2dValues, RefusesBadInput) {
  const Tensor x = Tensor::zeros({1, 3, 5, 5});
  const Tensor w = Tensor::zeros({4, 3, 3, 3});
  expect_error([&] { conv2d(Tensor::zeros({3, 5, 5}), w); }, "input must be [B, C, H, W]");
  expect_error([&] { conv2d(x, Tensor::zeros({4, 2, 3, 3})); }, "has 3 channels but weight");
  expect_error([&] { conv2d(x, w, Tensor::zeros({3})); }, "bias");
  expect_error([&] { conv2d(x, Tensor::zeros({4, 3, 7, 7})); }, "does not fit input");
  expect_error([&] { conv2d(x, w, Tensor(), {.stride = {0, 1}}); }, "stride (0, 1)");
  expect_error([&] { conv2d(x, w, Tensor(), {.padding = {-1, 0}}); }, "padding (-1, 0)");
  expect_error([&] { conv2d(x, w, Tensor(), {.dilation = {1, 0}}); }, "dilation (1, 0)");
  expect_error([&] { conv2d(x.to(DType::F64), w); }, "differ in device or dtype");
}

// ---- batch_norm2d ---------------------------------------------------------------

TEST(BatchNormValues, TrainHandComputedAndRunningStatsUseUnbiasedVariance) {
  // One channel, values 1, 2, 3, 4: mean 2.5, biased variance 1.25, unbiased 5/3.
  const Tensor x = values({1, 2, 3, 4}, {2, 1, 1, 2});
  const Tensor rm = values({0.0}, {1}), rv = values({1.0}, {1});
  const Tensor y = batch_norm2d(x, values({2.0}, {1}), values({1.0}, {1}), rm, rv,
                                {.mode = Mode::Train});
  const double s = 2.0 / std::sqrt(1.25 + 1e-5);
  EXPECT_TRUE(allclose(y, values({1 - 1.5 * s, 1 - 0.5 * s, 1 + 0.5 * s, 1 + 1.5 * s}, {2, 1, 1, 2}),
                       kExact, "y"));
  EXPECT_NEAR(rm.item(), 0.1 * 2.5, 1e-15);                    // 0.9 * 0 + 0.1 * 2.5
  EXPECT_NEAR(rv.item(), 0.9 * 1.0 + 0.1 * 5.0 / 3.0, 1e-15);  // PyTorch: 1.0666666666666667
}

TEST(BatchNormValues, TrainUpdatesFloat32RunningStatsInPlace) {
  const Tensor x = values({1, 2, 3, 4}, {2, 1, 1, 2}, DType::F32);
  const Tensor rm = Tensor::zeros({1}), rv = Tensor::ones({1});
  batch_norm2d(x, Tensor(), Tensor(), rm, rv, {.mode = Mode::Train, .momentum = 0.5});
  EXPECT_FLOAT_EQ(static_cast<float>(rm.item()), 1.25f);
  EXPECT_FLOAT_EQ(static_cast<float>(rv.item()), 0.5f + 0.5f * 5.0f / 3.0f);
}

TEST(BatchNormValues, EvalUsesRunningStatsAndLeavesThemAlone) {
  const Tensor x = values({1, 2, 3, 4, -1, 0.5}, {3, 2, 1, 1});
  const Tensor rm = values({0.5, -1.0}, {2}), rv = values({4.0, 0.25}, {2});
  const Tensor y = batch_norm2d(x, values({2.0, 1.0}, {2}), values({0.0, 3.0}, {2}), rm, rv,
                                {.mode = Mode::Eval, .eps = 0.0});
  // channel 0: (x - 0.5) / 2 * 2; channel 1: (x + 1) / 0.5 + 3.
  EXPECT_TRUE(allclose(y, values({0.5, 9, 2.5, 13, -1.5, 6}, {3, 2, 1, 1}), kExact, "y"));
  EXPECT_TRUE(allclose(rm, values({0.5, -1.0}, {2}), kExact, "running_mean untouched"));
  EXPECT_TRUE(allclose(rv, values({4.0, 0.25}, {2}), kExact, "running_var untouched"));
}

TEST(BatchNormValues, EvalBackwardIsTheAffineMap) {
  Tensor x = values({1, 2, 3, 4}, {1, 1, 2, 2});
  x.set_requires_grad(true);
  Tensor w = values({3.0}, {1});
  w.set_requires_grad(true);
  const Tensor y = batch_norm2d(x, w, values({0.0}, {1}), values({1.0}, {1}), values({4.0}, {1}),
                                {.mode = Mode::Eval, .eps = 0.0});
  y.backward(values({1, 1, 1, -1}, {1, 1, 2, 2}));
  EXPECT_TRUE(allclose(x.grad(), values({1.5, 1.5, 1.5, -1.5}, {1, 1, 2, 2}), kExact, "grad_x"));
  // grad_w = sum dy * (x - 1) / 2 = (0 + 0.5 + 1 - 1.5)
  EXPECT_NEAR(w.grad().item(), 0.0, 1e-15);
}

TEST(BatchNormValues, TrainMatchesPyTorchWithGradients) {
  Tensor x = seq({2, 3, 2, 2}, 0.37, 0.1, std::sin, 2.0);
  Tensor w = values({0.5, 1.0, 1.5}, {3}), b = values({0.1, -0.2, 0.3}, {3});
  x.set_requires_grad(true);
  w.set_requires_grad(true);
  b.set_requires_grad(true);
  const Tensor rm = values({0.0, 0.1, -0.1}, {3}), rv = values({1.0, 0.5, 2.0}, {3});
  const Tensor y = batch_norm2d(x, w, b, rm, rv, {.mode = Mode::Train});
  y.backward(seq({2, 3, 2, 2}, 0.71, 0.3, std::cos));
  const Tolerance tol{1e-12, 1e-10};
  EXPECT_TRUE(allclose(
      y,
      values({0.26445092028623957, 0.50066973782982471, 0.69587691664417073, 0.82365208083502905,
              0.99980988930038373, 0.82269064982175044, 0.33191069320694505, -0.40610521576907566,
              -0.036317140924596737, -0.8124128785559247, -1.506863186440571, -2.0256774732200142,
              -0.46150285306515398, -0.4583987578116786, -0.36650087959606642, -0.19824716512236509,
              -2.1438117653904789, -1.2288290640481754, -0.34984351068379121, 0.37417832356244002,
              1.7802275285056783, 1.9114511715409699, 1.7556580233662336, 1.3339339557282246},
             {2, 3, 2, 2}),
      tol, "y"));
  EXPECT_TRUE(allclose(
      x.grad(),
      values({0.3720302336332682, 0.18751963935180135, -0.075540887484465732, -0.30233857781988804,
              -0.66367623438993406, -0.48256239921930955, -0.054406018781748389, 0.29914992366963933,
              1.0027848161495667, 0.71153091289246873, -0.023763095326926709, -0.92653592691731768,
              -0.091102194932838013, -0.14915239094521371, -0.062526938841434371, 0.12111111703877026,
              -0.75926896357206142, 0.30972571857211373, 0.76330378146319644, 0.58773419225810253,
              0.20667092410473648, -0.30582511072166885, -0.46166129895620062, -0.20320122122465778},
             {2, 3, 2, 2}),
      tol, "grad_x"));
  EXPECT_TRUE(allclose(w.grad(), values({2.1685596768104589, -4.3090228595221616, -3.68996247910433}, {3}),
                       tol, "grad_weight"));
  EXPECT_TRUE(allclose(b.grad(), values({-1.9671391964795866, 1.4265533589841191, -0.75719145526329035}, {3}),
                       tol, "grad_bias"));
  EXPECT_TRUE(allclose(rm, values({-0.029191016955880347, 0.19380319811882807, -0.041984973848070255}, {3}),
                       tol, "running_mean"));
  EXPECT_TRUE(allclose(rv, values({1.1552939422833517, 0.52345224857906647, 2.0286612910122224}, {3}),
                       tol, "running_var"));
}

TEST(BatchNormValues, TrainWithoutRunningStatsAndOneValuePerImage) {
  // H*W = 1, batch 3: statistics over the batch alone; no running buffers to update.
  const Tensor x = values({1, 10, 2, 20, 3, 30}, {3, 2, 1, 1});
  const Tensor y = batch_norm2d(x, Tensor(), Tensor(), Tensor(), Tensor(),
                                {.mode = Mode::Train, .eps = 0.0});
  const double s = std::sqrt(1.5);  // both channels: standardised (-1, 0, 1) / sqrt(2/3)
  EXPECT_TRUE(allclose(y, values({-s, -s, 0, 0, s, s}, {3, 2, 1, 1}), kExact, "y"));
}

TEST(BatchNormValues, RefusesBadInput) {
  const Tensor x = Tensor::zeros({2, 3, 4, 4});
  const Tensor c3 = Tensor::ones({3});
  expect_error([&] { batch_norm2d(Tensor::zeros({2, 3, 4}), c3, c3, c3, c3); },
               "input must be [B, C, H, W]");
  expect_error([&] { batch_norm2d(x, Tensor::ones({4}), c3, c3, c3); }, "weight");
  expect_error([&] { batch_norm2d(x, c3, c3, Tensor::ones({2}), c3); }, "running_mean");
  expect_error([&] { batch_norm2d(x, c3, c3, c3, Tensor()); }, "both be given");
  expect_error([&] { batch_norm2d(x, c3, c3, Tensor(), Tensor(), {.mode = Mode::Eval}); },
               "Eval mode needs running_mean");
  expect_error([&] { batch_norm2d(Tensor::zeros({1, 3, 1, 1}), c3, c3, c3, c3); },
               "more than one value per channel");
  expect_error([&] { batch_norm2d(x, c3, c3, c3, c3, {.momentum = 1.5}); }, "momentum");
  expect_error([&] { batch_norm2d(x, c3.to(DType::F64), c3, c3, c3); }, "device or dtype");
  const Tensor strided = Tensor::ones({3, 2}).select(1, 0);  // not contiguous
  expect_error([&] { batch_norm2d(x, c3, c3, strided, strided); }, "contiguous");
}

// ---- max_pool2d -----------------------------------------------------------------

TEST(MaxPoolValues, HandComputedStemWindow) {
  // x = 0..15 (4x4), 3x3 stride 2 pad 1: each window's maximum is its bottom-right
  // in-image pixel: 5, 7, 13, 15.
  std::vector<double> v(16);
  for (int i = 0; i < 16; ++i) v[static_cast<size_t>(i)] = i;
  Tensor x = values(v, {1, 1, 4, 4});
  x.set_requires_grad(true);
  const Tensor y = max_pool2d(x, {.kernel = {3, 3}, .stride = Size2{2, 2}, .padding = {1, 1}});
  EXPECT_TRUE(allclose(y, values({5, 7, 13, 15}, {1, 1, 2, 2}), kExact, "y"));
  y.backward(values({1, 2, 3, 4}, {1, 1, 2, 2}));
  std::vector<double> g(16, 0.0);
  g[5] = 1;
  g[7] = 2;
  g[13] = 3;
  g[15] = 4;
  EXPECT_TRUE(allclose(x.grad(), values(g, {1, 1, 4, 4}), kExact, "grad_x"));
}

TEST(MaxPoolValues, PaddingIsMinusInfinity) {
  // All inputs negative: zero padding would win, -inf padding does not.
  const Tensor y = max_pool2d(Tensor::full({1, 1, 3, 3}, -5.0, DType::F64),
                              {.kernel = {3, 3}, .stride = Size2{1, 1}, .padding = {1, 1}});
  EXPECT_TRUE(allclose(y, Tensor::full({1, 1, 3, 3}, -5.0, DType::F64), kExact, "y"));
}

TEST(MaxPoolValues, DefaultStrideIsTheKernelAndFloorMode) {
  const Tensor x = seq({1, 1, 5, 5}, 1.0, 0.0, [](double k) { return k; });  // 0..24
  const Tensor y = max_pool2d(x, {.kernel = {2, 2}});
  EXPECT_TRUE(allclose(y, values({6, 8, 16, 18}, {1, 1, 2, 2}), kExact, "y"));
}

TEST(MaxPoolValues, TiesGoToTheFirstMaximumInScanOrder) {
  Tensor x = Tensor::ones({1, 1, 2, 3}, DType::F64);
  x.set_requires_grad(true);
  const Tensor y = max_pool2d(x, {.kernel = {2, 2}, .stride = Size2{1, 1}});
  y.backward(values({1, 10}, {1, 1, 1, 2}));
  // Window 0 covers columns 0-1 (first max at (0,0)), window 1 columns 1-2 (at (0,1)).
  EXPECT_TRUE(allclose(x.grad(), values({1, 10, 0, 0, 0, 0}, {1, 1, 2, 3}), kExact, "grad_x"));
}

TEST(MaxPoolValues, OverlappingWindowsAccumulate) {
  Tensor x = values({0, 5, 1}, {1, 1, 1, 3});
  x.set_requires_grad(true);
  const Tensor y = max_pool2d(x, {.kernel = {1, 2}, .stride = Size2{1, 1}});
  EXPECT_TRUE(allclose(y, values({5, 5}, {1, 1, 1, 2}), kExact, "y"));
  y.backward(values({1, 2}, {1, 1, 1, 2}));
  EXPECT_TRUE(allclose(x.grad(), values({0, 3, 0}, {1, 1, 1, 3}), kExact, "grad_x"));
}

// Without a gradient to compute, max_pool2d skips the indices and takes a separable
// path; it must give the same values, NaN propagation included.
TEST(MaxPoolValues, InferencePathMatchesTrainingPath) {
  const std::vector<MaxPool2dOptions> configs{
      {.kernel = {3, 3}, .stride = Size2{2, 2}, .padding = {1, 1}},
      {.kernel = {3, 3}, .stride = Size2{1, 1}, .padding = {1, 1}, .dilation = {2, 2}},
      {.kernel = {3, 2}, .stride = Size2{1, 2}, .padding = {1, 1}},
      {.kernel = {2, 2}},
      {.kernel = {3, 3}, .stride = Size2{2, 3}, .padding = {1, 1}, .dilation = {1, 2}},
      {.kernel = {1, 3}, .stride = Size2{1, 2}, .padding = {0, 1}},
  };
  Generator gen(3);
  Tensor x = random_tensor({2, 3, 17, 15}, gen, DType::F32, Device::cpu());
  x.data<float>()[40] = std::nanf("");
  x.data<float>()[15 * 3] = -std::numeric_limits<float>::infinity();  // a row's first pixel
  for (const MaxPool2dOptions& o : configs) {
    Tensor inference;
    {
      NoGradGuard no_grad;
      inference = max_pool2d(x, o);
    }
    Tensor xg = x.clone();
    xg.set_requires_grad(true);
    const Tensor training = max_pool2d(xg, o);
    EXPECT_TRUE(equal(inference, training.detach(), "inference vs training path"));
    const std::vector<double> v = inference.to_vector<double>();
    EXPECT_GE(std::count_if(v.begin(), v.end(), [](double e) { return std::isnan(e); }), 1)
        << "the NaN input must reach the outputs whose windows hold it";
  }
}

TEST(MaxPoolValues, RefusesBadInput) {
  const Tensor x = Tensor::zeros({1, 2, 5, 5});
  expect_error([&] { max_pool2d(Tensor::zeros({2, 5, 5}), {.kernel = {2, 2}}); },
               "input must be [B, C, H, W]");
  expect_error([&] { max_pool2d(x, {.kernel = {3, 3}, .padding = {2, 1}}); },
               "half the kernel");
  expect_error([&] { max_pool2d(x, {.kernel = {0, 2}}); }, "kernel (0, 2)");
  expect_error([&] { max_pool2d(x, {.kernel = {2, 2}, .stride = Size2{1, 0}}); }, "stride (1, 0)");
  expect_error([&] { max_pool2d(x, {.kernel = {6, 6}}); }, "does not fit input");
  expect_error([&] { max_pool2d(Tensor::zeros({1, 1, 3, 3}, DType::I64), {.kernel = {2, 2}}); },
               "float32 or float64");
}

// ---- adaptive_avg_pool2d --------------------------------------------------------

TEST(AdaptiveAvgPoolValues, DownFiveToTwoHasOverlappingBins) {
  // Bins of 5 -> 2: rows/columns [0, 3) and [2, 5): the middle row/column is in both.
  const Tensor x = seq({1, 1, 5, 5}, 1.0, 0.0, [](double k) { return k; });  // 0..24
  const Tensor y = adaptive_avg_pool2d(x, {2, 2});
  EXPECT_TRUE(allclose(y, values({6, 8, 16, 18}, {1, 1, 2, 2}), kExact, "y"));
}

TEST(AdaptiveAvgPoolValues, UpsamplingRepeatsAndSharesGradient) {
  // 1x2 -> 1x3: bins [0, 1), [0, 2), [1, 2) -> a, (a + b) / 2, b.
  Tensor x = values({2, 6}, {1, 1, 1, 2});
  x.set_requires_grad(true);
  const Tensor y = adaptive_avg_pool2d(x, {1, 3});
  EXPECT_TRUE(allclose(y, values({2, 4, 6}, {1, 1, 1, 3}), kExact, "y"));
  y.backward(values({1, 1, 1}, {1, 1, 1, 3}));
  EXPECT_TRUE(allclose(x.grad(), values({1.5, 1.5}, {1, 1, 1, 2}), kExact, "grad_x"));
}

TEST(AdaptiveAvgPoolValues, IdentityAndGlobal) {
  const Tensor x = seq({2, 3, 4, 5}, 0.37, 0.1);
  EXPECT_TRUE(equal(adaptive_avg_pool2d(x, {4, 5}), x, "identity"));
  const Tensor g = adaptive_avg_pool2d(x, {1, 1});
  EXPECT_TRUE(allclose(g.reshape({2, 3}), mean(x, {2, 3}), kExact, "global mean"));
}

TEST(AdaptiveAvgPoolValues, MatchesPyTorchUpAndDown) {
  // F.adaptive_avg_pool2d(x [1, 1, 3, 4], (5, 3)): rows up-sampled, columns down.
  const Tensor y = adaptive_avg_pool2d(seq({1, 1, 3, 4}, 0.37, 0.1), {5, 3});
  const Tensor ref = values({0.27635985101294824, 0.59876470267496384, 0.84012956076212264,
                             0.62040926588212642, 0.71468014109601208, 0.71222241192865576,
                             0.9644586807513047, 0.83059557951706031, 0.58431526309518889,
                             0.43149845018160404, 0.19122688888873474, -0.074926334729335659,
                             -0.10146178038809671, -0.44814180173959089, -0.73416793255386015},
                            {1, 1, 5, 3});
  EXPECT_TRUE(allclose(y, ref, kExact, "adaptive_avg_pool2d vs PyTorch"));
}

TEST(AdaptiveAvgPoolValues, RefusesBadInput) {
  expect_error([&] { adaptive_avg_pool2d(Tensor::zeros({3, 4, 4}), {2, 2}); },
               "input must be [B, C, H, W]");
  expect_error([&] { adaptive_avg_pool2d(Tensor::zeros({1, 3, 4, 4}), {0, 2}); },
               "output size (0, 2)");
  expect_error([&] { adaptive_avg_pool2d(Tensor::zeros({1, 3, 0, 4}), {2, 2}); },
               "empty plane");
}

}  // namespace
}  // namespace caption::testing
