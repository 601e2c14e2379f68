// Branch-free float exp and tanh that the compiler can vectorise (libm's expf and
// tanhf are calls it cannot), for the CPU kernels' hot loops: the attention scores
// (tanh over [B, P, A] every step, forward and backward), softmax, cross-entropy and
// the LSTM gates. Double keeps libm: the gradient checks run in double and want it.
//
// Accuracy, float32 (checked over every exponent by tests/kernels/fast_math_test.cpp):
// - fast_exp: Cody-Waite range reduction x = n ln2 + r (ln2 split in two parts), a
//   degree-6 polynomial for exp(r) on [-ln2/2, ln2/2] (Cephes' expf coefficients), 2^n
//   built in the exponent bits; within 2 ulp of exp on [-87.3, 88.7]. Below that it
//   returns 0 (exp underflows to subnormals there; softmax terms that small do not
//   count), above it +inf; NaN stays NaN.
// - fast_tanh: the odd rational minimax approximation p(x)/q(x) of degrees 13/6 on
//   [-9, 9] (Eigen's float tanh coefficients), clamped outside, where float tanh is
//   +-1 to within half an ulp; within 4e-7 absolute of tanh everywhere, never beyond
//   +-1, tanh(0) = 0, and odd exactly. NaN stays NaN.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

namespace caption::kernels::cpu {

[[gnu::always_inline]] inline float fast_exp(float x) {
  constexpr float kHi = 88.72283f, kLo = -87.33654f;
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;
  // Written so that NaN clamps to kLo too: converting a NaN n to int below would be
  // undefined (UBSan's finding); NaN's result is restored at the end.
  const float xc = x >= kLo ? (x <= kHi ? x : kHi) : kLo;
  // n = round(x / ln2); floor(v + 0.5) vectorises (roundps) where lround would not.
  const float n = std::floor(xc * kLog2e + 0.5f);
  const float r = (xc - n * kLn2Hi) - n * kLn2Lo;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.f;
  // 2^n through the exponent bits; n lies in [-126, 128], so split n = n1 + n2 to keep
  // each factor a normal float (2^128 alone would overflow the bits).
  const int32_t ni = static_cast<int32_t>(n);
  const int32_t n1 = ni / 2, n2 = ni - n1;
  const float s1 = std::bit_cast<float>((n1 + 127) << 23);
  const float s2 = std::bit_cast<float>((n2 + 127) << 23);
  float y = p * s1 * s2;
  y = x < kLo ? 0.f : y;
  y = x > kHi ? std::numeric_limits<float>::infinity() : y;
  y = x != x ? x : y;  // NaN
  return y;
}

[[gnu::always_inline]] inline float fast_tanh(float x) {
  constexpr float kClamp = 9.f;
  const float xc = x < -kClamp ? -kClamp : (x > kClamp ? kClamp : x);
  const float x2 = xc * xc;
  float p = -2.76076847742355e-16f;
  p = p * x2 + 2.00018790482477e-13f;
  p = p * x2 + -8.60467152213735e-11f;
  p = p * x2 + 5.12229709037114e-08f;
  p = p * x2 + 1.48572235717979e-05f;
  p = p * x2 + 6.37261928875436e-04f;
  p = p * x2 + 4.89352455891786e-03f;
  p = p * xc;
  float q = 1.19825839466702e-06f;
  q = q * x2 + 1.18534705686654e-04f;
  q = q * x2 + 2.26843463243900e-03f;
  q = q * x2 + 4.89352518554385e-03f;
  float y = p / q;
  y = y > 1.f ? 1.f : (y < -1.f ? -1.f : y);  // the rational overshoots 1 by an ulp near 8
  return x != x ? x : y;  // NaN (the clamp would have turned it into a number)
}

[[gnu::always_inline]] inline float fast_sigmoid(float x) { return 1.f / (1.f + fast_exp(-x)); }

// The kernels' element functions: the fast float versions, libm for double.
template <typename T>
T vexp(T x);
template <typename T>
T vtanh(T x);
template <>
inline float vexp<float>(float x) { return fast_exp(x); }
template <>
inline float vtanh<float>(float x) { return fast_tanh(x); }
template <>
inline double vexp<double>(double x) { return std::exp(x); }
template <>
inline double vtanh<double>(double x) { return std::tanh(x); }

}  // namespace caption::kernels::cpu
