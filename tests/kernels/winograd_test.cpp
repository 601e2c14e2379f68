// Winograd F(2x2, 3x3) (kernels/cpu/winograd.h): in float64 the transforms are exact up to
// roundoff, so the method must give the direct sums to 1e-12 on every shape corner (odd
// sizes that leave half tiles, paddings 0-2, images smaller than a tile, images grouped
// into one set of products); in float32 its error against float64 must be of the order of
// im2col's; and conv2d must take it exactly where conv.h says, with the epilogue equal to
// the separate ops bit for bit.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#include "engine/autocast.h"
#include "kernels/cpu/conv.h"
#include "kernels/cpu/winograd.h"
#include "tests/harness/harness.h"

namespace caption::testing {
namespace {

namespace kc = kernels::cpu;

kc::Conv2dGeometry geometry(int64_t B, int64_t C, int64_t H, int64_t W, int64_t O, int64_t pad) {
  kc::Conv2dGeometry g;
  g.batch = B;
  g.in_channels = C;
  g.in_h = H;
  g.in_w = W;
  g.out_channels = O;
  g.kernel_h = g.kernel_w = 3;
  g.pad_h = g.pad_w = pad;
  g.out_h = H + 2 * pad - 2;
  g.out_w = W + 2 * pad - 2;
  return g;
}

template <typename T>
std::vector<T> random_values(size_t n, Generator& gen, double scale = 1.0) {
  const Tensor t = random_tensor({static_cast<int64_t>(n)}, gen, DType::F64, Device::cpu());
  std::vector<T> v(n);
  const double* p = t.data<double>();
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<T>(scale * p[i]);
  return v;
}

// The forward through Winograd and through im2col + gemm of the same operands.
template <typename T>
struct Both {
  std::vector<T> winograd, im2col;
};

template <typename T>
Both<T> run_both(const kc::Conv2dGeometry& g, const std::vector<T>& x, const std::vector<T>& w,
                 std::type_identity_t<const T*> bias, std::type_identity_t<const T*> residual) {
  const size_t y_elems = static_cast<size_t>(g.batch * g.out_channels * g.out_plane());
  Both<T> r{std::vector<T>(y_elems), std::vector<T>(y_elems)};
  std::vector<T> U(static_cast<size_t>(kc::winograd_weight_elems(g.out_channels, g.in_channels)));
  std::vector<T> ws(static_cast<size_t>(kc::winograd_workspace_elems(g)));
  kc::winograd_weights(g.out_channels, g.in_channels, w.data(), U.data());
  kc::winograd_forward(g, x.data(), U.data(), bias, residual, r.winograd.data(), ws.data());
  const bool was = kc::conv_winograd();
  kc::set_conv_winograd(false);  // conv2d_forward's own choice would be Winograd for float
  std::vector<T> ws2(static_cast<size_t>(kc::conv2d_workspace_elems(g)) + 1);
  kc::conv2d_forward(g, x.data(), w.data(), bias, residual, r.im2col.data(), ws2.data());
  kc::set_conv_winograd(was);
  return r;
}

double max_abs(const std::vector<double>& v) {
  double m = 0;
  for (double e : v) m = std::max(m, std::abs(e));
  return m;
}

template <typename T>
double max_diff(const std::vector<T>& a, const std::vector<double>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(static_cast<double>(a[i]) - b[i]));
  return m;
}

TEST(Winograd, Float64EqualsDirectSumsOnEveryShapeCorner) {
  struct Case {
    int64_t B, C, H, W, O, pad;
  };
  const Case cases[] = {
      {1, 1, 3, 3, 1, 0},    // one output: a half tile in both directions
      {2, 3, 6, 5, 4, 1},    // odd output width
      {1, 5, 7, 7, 3, 1},    // ResNet's 7x7 maps: 4x4 tiles, the last row and column half
      {3, 2, 1, 2, 2, 1},    // images smaller than a tile
      {2, 4, 5, 9, 3, 2},    // padding 2: outputs larger than the input
      {2, 3, 8, 8, 5, 0},    // no padding
      {40, 3, 4, 4, 2, 1},   // 4 tiles an image: the batch goes through in groups
  };
  std::vector<Case> all(std::begin(cases), std::end(cases));
  for (int64_t h = 1; h <= 9; ++h)  // and every small size with every padding up to 2
    for (int64_t w = 1; w <= 9; ++w)
      for (int64_t pad = 0; pad <= 2; ++pad)
        if (h + 2 * pad >= 3 && w + 2 * pad >= 3) all.push_back({2, 2, h, w, 3, pad});
  Generator gen(11);
  for (const Case& c : all) {
    const kc::Conv2dGeometry g = geometry(c.B, c.C, c.H, c.W, c.O, c.pad);
    const auto x = random_values<double>(static_cast<size_t>(c.B * c.C * c.H * c.W), gen);
    const auto w = random_values<double>(static_cast<size_t>(c.O * c.C * 9), gen);
    const auto bias = random_values<double>(static_cast<size_t>(c.O), gen);
    const auto res =
        random_values<double>(static_cast<size_t>(c.B * c.O * g.out_plane()), gen);
    for (int variant = 0; variant < 4; ++variant) {
      kc::Conv2dGeometry gv = g;
      gv.relu = variant % 2 == 1;
      const double* b = variant >= 2 ? bias.data() : nullptr;
      const double* r = variant >= 2 ? res.data() : nullptr;
      const Both<double> got = run_both(gv, x, w, b, r);
      const double scale = std::max(1.0, max_abs(got.im2col));
      EXPECT_LE(max_diff(got.winograd, got.im2col), 1e-12 * scale)
          << "B" << c.B << " C" << c.C << " " << c.H << "x" << c.W << " O" << c.O << " pad "
          << c.pad << " variant " << variant;
    }
  }
}

// ResNet layer3's shape (256 channels, 14x14, padding 1) in float32, against the float64
// result: the transforms add and subtract before and after the products, and the error
// stays of the order of im2col's (measured: 6e-7 against 4e-7 of the largest output).
TEST(Winograd, Float32ErrorIsOfTheOrderOfIm2col) {
  const kc::Conv2dGeometry g = geometry(2, 256, 14, 14, 64, 1);
  Generator gen(12);
  const auto xd = random_values<double>(static_cast<size_t>(2 * 256 * 14 * 14), gen);
  const auto wd = random_values<double>(static_cast<size_t>(64 * 256 * 9), gen, 0.05);
  const std::vector<float> x(xd.begin(), xd.end()), w(wd.begin(), wd.end());
  const std::vector<double> xr(x.begin(), x.end()), wr(w.begin(), w.end());  // as rounded
  const Both<double> reference = run_both(g, xr, wr, nullptr, nullptr);
  const Both<float> got = run_both(g, x, w, nullptr, nullptr);
  const double scale = max_abs(reference.im2col);
  const double e_wino = max_diff(got.winograd, reference.im2col) / scale;
  const double e_im2col = max_diff(got.im2col, reference.im2col) / scale;
  std::cout << "float32 error, relative to the largest output: Winograd " << e_wino
            << ", im2col " << e_im2col << "\n";
  EXPECT_LT(e_wino, 4e-6);
  EXPECT_LT(e_wino, 4 * e_im2col);
  EXPECT_GT(e_wino, 0);  // float32 really ran (a float64 path would be exact here)
}

TEST(Winograd, ChosenWhereConvHSays) {
  const bool was = kc::conv_winograd();
  kc::set_conv_winograd(true);
  // ResNet-50 at 224: layer1 (56x56), layer2 (28x28), layer3 (14x14), layer4 (7x7).
  EXPECT_TRUE(kc::conv2d_takes_winograd(geometry(1, 64, 56, 56, 64, 1)));
  EXPECT_TRUE(kc::conv2d_takes_winograd(geometry(1, 128, 28, 28, 128, 1)));
  EXPECT_FALSE(kc::conv2d_takes_winograd(geometry(1, 256, 14, 14, 256, 1)));
  EXPECT_TRUE(kc::conv2d_takes_winograd(geometry(2, 256, 14, 14, 256, 1)));
  EXPECT_FALSE(kc::conv2d_takes_winograd(geometry(7, 512, 7, 7, 512, 1)));
  EXPECT_TRUE(kc::conv2d_takes_winograd(geometry(8, 512, 7, 7, 512, 1)));
  kc::Conv2dGeometry strided = geometry(8, 128, 56, 56, 128, 1);
  strided.stride_h = strided.stride_w = 2;
  strided.out_h = strided.out_w = 28;
  EXPECT_FALSE(kc::conv2d_takes_winograd(strided));
  kc::Conv2dGeometry dilated = geometry(8, 16, 30, 30, 16, 2);
  dilated.dilation_h = dilated.dilation_w = 2;
  dilated.out_h = dilated.out_w = 30;
  EXPECT_FALSE(kc::conv2d_takes_winograd(dilated));
  kc::Conv2dGeometry autocast = geometry(8, 64, 56, 56, 64, 1);
  autocast.bf16 = true;
  EXPECT_FALSE(kc::conv2d_takes_winograd(autocast));
  const kc::Conv2dGeometry layer1 = geometry(1, 64, 56, 56, 64, 1);
  const int64_t scratch_on = kc::conv2d_workspace_elems(layer1);
  EXPECT_GE(scratch_on, kc::winograd_weight_elems(64, 64) + kc::winograd_workspace_elems(layer1));
  kc::set_conv_winograd(false);
  EXPECT_FALSE(kc::conv2d_takes_winograd(layer1));
  // The scratch size does not follow the switch: a call sized before a flip stays safe.
  EXPECT_EQ(kc::conv2d_workspace_elems(layer1), scratch_on);
  kc::set_conv_winograd(was);
}

// Through the op: with the switch on, conv2d's result is winograd_forward's bit for bit;
// off, it is im2col's; the two agree to float32 rounding; the fused epilogue equals the
// separate add and relu bit for bit on the Winograd path too; autocast never takes it.
TEST(Winograd, Conv2dOpTakesItAndItsEpilogueEqualsSeparateOps) {
  Generator gen(13);
  const Tensor x = random_tensor({2, 8, 17, 15}, gen, DType::F32, Device::cpu());
  const Tensor w = random_tensor({6, 8, 3, 3}, gen, DType::F32, Device::cpu(), -0.3, 0.3);
  const Tensor b = random_tensor({6}, gen, DType::F32, Device::cpu());
  const Tensor r = random_tensor({2, 6, 17, 15}, gen, DType::F32, Device::cpu());
  const Conv2dOptions o{.padding = {1, 1}};
  NoGradGuard no_grad;
  const bool was = kc::conv_winograd();
  kc::set_conv_winograd(true);
  const kc::Conv2dGeometry g = geometry(2, 8, 17, 15, 6, 1);
  ASSERT_TRUE(kc::conv2d_takes_winograd(g));  // 2 * 255 positions
  const Tensor on = conv2d(x, w, b, o);
  const Both<float> kernel = run_both(g, x.to_vector<float>(), w.to_vector<float>(),
                                      b.data<float>(), nullptr);
  EXPECT_EQ(std::memcmp(on.raw_data(), kernel.winograd.data(), sizeof(float) * on.numel()), 0);
  const Tensor fused = conv2d(x, w, b, o, {.residual = r, .relu = true});
  const Tensor unfused = relu(add(on, r));
  EXPECT_EQ(std::memcmp(fused.raw_data(), unfused.raw_data(), sizeof(float) * fused.numel()), 0);
  {
    AutocastGuard autocast(true);  // bfloat16 products of the untransformed operands
    kc::set_conv_winograd(false);
    const Tensor direct_bf16 = conv2d(x, w, b, o);
    kc::set_conv_winograd(true);
    const Tensor bf16 = conv2d(x, w, b, o);
    EXPECT_EQ(std::memcmp(bf16.raw_data(), direct_bf16.raw_data(), sizeof(float) * bf16.numel()),
              0);
  }
  kc::set_conv_winograd(false);
  const Tensor off = conv2d(x, w, b, o);
  EXPECT_EQ(std::memcmp(off.raw_data(), kernel.im2col.data(), sizeof(float) * off.numel()), 0);
  kc::set_conv_winograd(was);
  EXPECT_TRUE(allclose(on, off, {1e-5, 1e-5}, "Winograd vs im2col"));
  EXPECT_FALSE(std::memcmp(on.raw_data(), off.raw_data(), sizeof(float) * on.numel()) == 0)
      << "the two paths gave the same bits: was Winograd taken at all?";
}

// Images with few tiles share one set of 16 products (13 images of 7x7 outputs: one group
// of 13 at kGroupTiles 512); each image's result must be the one it gets alone, to float32
// rounding (OpenBLAS may order its sums by the number of columns).
TEST(Winograd, ImagesGroupedInOneProductEqualOneAtATime) {
  const kc::Conv2dGeometry g = geometry(13, 16, 7, 7, 12, 1);
  Generator gen(14);
  const auto x = random_values<float>(static_cast<size_t>(13 * 16 * 49), gen);
  const auto w = random_values<float>(static_cast<size_t>(12 * 16 * 9), gen, 0.3);
  const auto bias = random_values<float>(12, gen);
  const Both<float> all = run_both(g, x, w, bias.data(), nullptr);
  const kc::Conv2dGeometry one = geometry(1, 16, 7, 7, 12, 1);
  for (int64_t i = 0; i < 13; ++i) {
    const std::vector<float> xi(x.begin() + i * 16 * 49, x.begin() + (i + 1) * 16 * 49);
    const Both<float> alone = run_both(one, xi, w, bias.data(), nullptr);
    for (int64_t k = 0; k < 12 * 49; ++k)
      ASSERT_NEAR(all.winograd[static_cast<size_t>(i * 12 * 49 + k)], alone.winograd[static_cast<size_t>(k)],
                  1e-5 * std::max(1.f, std::abs(alone.winograd[static_cast<size_t>(k)])))
          << "image " << i << " element " << k;
  }
}

}  // namespace
}  // namespace caption::testing
