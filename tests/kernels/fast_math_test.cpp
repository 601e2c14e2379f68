// The vectorisable float exp and tanh of kernels/cpu/fast_math.h against libm in double,
// over every 61st float bit pattern (70 million values, all exponents and both signs):
// exp within 2 ulp on [-87.3, 88.7], 0 below, +inf above; tanh within 4e-7 absolute,
// odd, 0 at 0, never beyond +-1; NaN stays NaN in both.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "kernels/cpu/fast_math.h"

namespace caption::kernels::cpu {
namespace {

float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

TEST(FastMath, ExpAndTanhOverEveryExponent) {
  double worst_exp_ulp = 0, worst_tanh = 0;
  float worst_exp_x = 0, worst_tanh_x = 0;
  size_t checked = 0;
  for (uint64_t u = 0; u <= 0xFFFFFFFFull; u += 61) {
    const float x = from_bits(static_cast<uint32_t>(u));
    if (std::isnan(x)) {
      ASSERT_TRUE(std::isnan(fast_exp(x))) << std::hex << u;
      ASSERT_TRUE(std::isnan(fast_tanh(x))) << std::hex << u;
      continue;
    }
    ++checked;
    const float e = fast_exp(x);
    const double ref = std::exp(static_cast<double>(x));
    if (x < -87.33654f) {
      ASSERT_EQ(e, 0.f) << x;
    } else if (ref > std::numeric_limits<float>::max()) {
      ASSERT_TRUE(std::isinf(e) && e > 0) << x;
    } else {
      const float rf = static_cast<float>(ref);
      const double ulp = std::nextafter(rf, std::numeric_limits<float>::infinity()) - rf;
      const double err = std::abs(e - ref) / ulp;
      if (err > worst_exp_ulp) {
        worst_exp_ulp = err;
        worst_exp_x = x;
      }
    }
    const float t = fast_tanh(x);
    const double terr = std::abs(t - std::tanh(static_cast<double>(x)));
    if (terr > worst_tanh) {
      worst_tanh = terr;
      worst_tanh_x = x;
    }
    ASSERT_EQ(fast_tanh(-x), -t) << x;
    ASSERT_LE(std::abs(t), 1.f) << x;
  }
  EXPECT_GT(checked, 70'000'000u);
  EXPECT_LE(worst_exp_ulp, 2.0) << "at x = " << worst_exp_x;
  EXPECT_LE(worst_tanh, 4e-7) << "at x = " << worst_tanh_x;
  EXPECT_EQ(fast_tanh(0.f), 0.f);
  EXPECT_EQ(fast_exp(0.f), 1.f);
  std::cout << "fast_exp: worst " << worst_exp_ulp << " ulp at " << worst_exp_x
            << "; fast_tanh: worst " << worst_tanh << " absolute at " << worst_tanh_x << "\n";
}

TEST(FastMath, SigmoidSaturatesCleanly) {
  EXPECT_EQ(fast_sigmoid(0.f), 0.5f);
  EXPECT_EQ(fast_sigmoid(100.f), 1.f);
  EXPECT_EQ(fast_sigmoid(-100.f), 0.f);
  EXPECT_NEAR(fast_sigmoid(2.f), 1.0 / (1.0 + std::exp(-2.0)), 2e-7);
}

}  // namespace
}  // namespace caption::kernels
