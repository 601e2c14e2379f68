// The per-element pooling arithmetic of kernels/pool_math.h, which the CUDA pooling
// kernels run on the device, checked here on the CPU against the CPU kernels
// (kernels/cpu/pool.h): max-pool outputs and indices identical (ties, NaN, padding,
// dilation, strides larger and smaller than the window), the gathering backward equal
// to the CPU's scatter (to float rounding: the same terms summed in another order), and
// adaptive average pooling forward and backward bit-identical (same terms, same order),
// over down- and up-sampling and non-dividing sizes.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "kernels/pool_math.h"

namespace caption::kernels {
namespace {

std::vector<float> random_values(int64_t n, std::mt19937& rng, bool distinct) {
  std::vector<float> v(static_cast<size_t>(n));
  if (distinct) {
    std::iota(v.begin(), v.end(), 0.f);
    std::shuffle(v.begin(), v.end(), rng);
    for (float& x : v) x = x / static_cast<float>(n) - 0.5f;
  } else {
    // Coarse values: many ties inside windows.
    std::uniform_int_distribution<int> d(-3, 3);
    for (float& x : v) x = static_cast<float>(d(rng));
  }
  return v;
}

MaxPool2dParams max_params(int64_t planes, int64_t h, int64_t w, int64_t k, int64_t s,
                           int64_t pad, int64_t dil) {
  MaxPool2dParams p;
  p.planes = planes;
  p.in_h = h;
  p.in_w = w;
  p.kernel_h = k;
  p.kernel_w = k;  // square; the rectangular case is adjusted by its caller
  p.stride_h = p.stride_w = s;
  p.pad_h = p.pad_w = pad;
  p.dilation_h = p.dilation_w = dil;
  const auto out = [](int64_t in, int64_t kk, int64_t st, int64_t pd, int64_t dl) {
    return (in + 2 * pd - dl * (kk - 1) - 1) / st + 1;
  };
  p.out_h = out(h, p.kernel_h, s, pad, dil);
  p.out_w = out(w, p.kernel_w, s, pad, dil);
  return p;
}

void check_max_pool(const MaxPool2dParams& p, bool distinct, uint32_t seed) {
  SCOPED_TRACE(testing::Message() << "max pool " << p.in_h << "x" << p.in_w << " k"
                                  << p.kernel_h << "x" << p.kernel_w << " s" << p.stride_h
                                  << " pad" << p.pad_h << " dil" << p.dilation_h
                                  << (distinct ? " distinct" : " ties"));
  std::mt19937 rng(seed);
  const int64_t in_plane = p.in_h * p.in_w, out_plane = p.out_h * p.out_w;
  const std::vector<float> x = random_values(p.planes * in_plane, rng, distinct);
  std::vector<float> y(static_cast<size_t>(p.planes * out_plane));
  std::vector<int64_t> idx(y.size());
  cpu::max_pool2d_forward<float>(p, x.data(), y.data(), idx.data());
  for (int64_t pl = 0; pl < p.planes; ++pl)
    for (int64_t oh = 0; oh < p.out_h; ++oh)
      for (int64_t ow = 0; ow < p.out_w; ++ow) {
        float v = 0;
        const int64_t o = pl * out_plane + oh * p.out_w + ow;
        const int64_t at = max_pool_output(p, x.data() + pl * in_plane, oh, ow, &v);
        ASSERT_EQ(at, idx[o]) << "output " << o;
        ASSERT_EQ(v, y[o]) << "output " << o;
      }
  const std::vector<float> gy = random_values(p.planes * out_plane, rng, true);
  std::vector<float> gx(static_cast<size_t>(p.planes * in_plane));
  cpu::max_pool2d_backward<float>(p, idx.data(), gy.data(), gx.data());
  int64_t nonzero = 0;
  for (int64_t pl = 0; pl < p.planes; ++pl)
    for (int64_t h = 0; h < p.in_h; ++h)
      for (int64_t w = 0; w < p.in_w; ++w) {
        const float ref = gx[pl * in_plane + h * p.in_w + w];
        const float got = max_pool_gather(p, idx.data() + pl * out_plane,
                                          gy.data() + pl * out_plane, h, w);
        ASSERT_NEAR(got, ref, 1e-6f) << "pixel " << pl << "," << h << "," << w;
        nonzero += ref != 0;
      }
  EXPECT_GT(nonzero, 0);
}

TEST(PoolMath, MaxPoolMatchesCpu) {
  uint32_t seed = 1;
  for (bool distinct : {true, false}) {
    check_max_pool(max_params(3, 112, 112, 3, 2, 1, 1), distinct, seed++);  // ResNet's stem
    check_max_pool(max_params(2, 13, 11, 3, 2, 1, 1), distinct, seed++);
    check_max_pool(max_params(2, 9, 10, 2, 2, 0, 1), distinct, seed++);
    check_max_pool(max_params(2, 9, 7, 3, 1, 1, 1), distinct, seed++);    // overlapping
    check_max_pool(max_params(2, 12, 12, 2, 3, 1, 1), distinct, seed++);  // stride > window
    check_max_pool(max_params(2, 15, 14, 3, 2, 1, 2), distinct, seed++);  // dilation
    check_max_pool(max_params(1, 1, 1, 1, 1, 0, 1), distinct, seed++);
    MaxPool2dParams rect = max_params(2, 10, 9, 3, 2, 1, 1);
    rect.kernel_w = 2;
    rect.stride_w = 1;
    rect.pad_w = 0;
    rect.out_w = (rect.in_w - 2) / 1 + 1;
    check_max_pool(rect, distinct, seed++);
  }
}

TEST(PoolMath, MaxPoolNanWinsAndStays) {
  MaxPool2dParams p = max_params(1, 4, 4, 2, 2, 0, 1);
  std::vector<float> x(16, 1.f);
  x[5] = std::numeric_limits<float>::quiet_NaN();
  x[6] = 7.f;
  float v = 0;
  EXPECT_EQ(max_pool_output(p, x.data(), 0, 0, &v), 5);
  EXPECT_TRUE(std::isnan(v));
  EXPECT_EQ(max_pool_output(p, x.data(), 0, 1, &v), 6);
  EXPECT_EQ(v, 7.f);
  EXPECT_EQ(max_pool_output(p, x.data(), 1, 1, &v), 10);  // all ties: the first
}

void check_adaptive(int64_t h, int64_t w, int64_t oh, int64_t ow, uint32_t seed) {
  SCOPED_TRACE(testing::Message() << "adaptive " << h << "x" << w << " -> " << oh << "x" << ow);
  AdaptiveAvgPool2dParams p;
  p.planes = 3;
  p.in_h = h;
  p.in_w = w;
  p.out_h = oh;
  p.out_w = ow;
  std::mt19937 rng(seed);
  const std::vector<float> x = random_values(p.planes * h * w, rng, true);
  std::vector<float> y(static_cast<size_t>(p.planes * oh * ow));
  cpu::adaptive_avg_pool2d_forward<float>(p, x.data(), y.data());
  for (int64_t pl = 0; pl < p.planes; ++pl)
    for (int64_t i = 0; i < oh; ++i)
      for (int64_t j = 0; j < ow; ++j)
        ASSERT_EQ(adaptive_avg_output(p, x.data() + pl * h * w, i, j), y[(pl * oh + i) * ow + j]);
  const std::vector<float> gy = random_values(p.planes * oh * ow, rng, true);
  std::vector<float> gx(x.size());
  cpu::adaptive_avg_pool2d_backward<float>(p, gy.data(), gx.data());
  for (int64_t pl = 0; pl < p.planes; ++pl)
    for (int64_t i = 0; i < h; ++i)
      for (int64_t j = 0; j < w; ++j)
        ASSERT_EQ(adaptive_avg_gather(p, gy.data() + pl * oh * ow, i, j), gx[(pl * h + i) * w + j])
            << "pixel " << pl << "," << i << "," << j;
}

TEST(PoolMath, AdaptiveAvgMatchesCpuBitForBit) {
  uint32_t seed = 100;
  check_adaptive(7, 7, 14, 14, seed++);   // ResNet-50 at 224 to encoder_size 14
  check_adaptive(8, 8, 8, 8, seed++);     // identity
  check_adaptive(14, 14, 7, 7, seed++);
  check_adaptive(10, 7, 3, 4, seed++);    // overlapping, non-dividing bins
  check_adaptive(5, 9, 7, 2, seed++);     // up in one axis, down in the other
  check_adaptive(13, 11, 1, 1, seed++);   // global
  check_adaptive(1, 1, 5, 3, seed++);     // one pixel everywhere
  check_adaptive(6, 17, 4, 5, seed++);
}

}  // namespace
}  // namespace caption::kernels
