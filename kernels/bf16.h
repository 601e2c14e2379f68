// bfloat16 rounding shared by host and device code: the value a float32 becomes when
// stored as bfloat16 (8-bit exponent, 7-bit mantissa), rounded to nearest, ties to even,
// as PyTorch's float -> bfloat16 conversion and the CUDA intrinsic __float2bfloat16_rn.
// NaN stays NaN (quiet); values beyond the largest bfloat16 round to infinity.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define CAPTION_BF16_HD __host__ __device__ __forceinline__
#else
#define CAPTION_BF16_HD inline
#endif

namespace caption::kernels {

// The upper 16 bits of a float32, rounded: what a bfloat16 stores.
CAPTION_BF16_HD uint16_t bf16_bits(float x) {
  uint32_t u;
#if defined(__CUDA_ARCH__)
  u = __float_as_uint(x);
#else
  std::memcpy(&u, &x, sizeof u);
#endif
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);  // NaN
  const uint32_t lsb = (u >> 16) & 1u;
  u += 0x7fffu + lsb;  // ties to even; carries into the exponent (up to infinity) as it should
  return static_cast<uint16_t>(u >> 16);
}

CAPTION_BF16_HD float bf16_to_float(uint16_t bits) {
  const uint32_t u = static_cast<uint32_t>(bits) << 16;
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
#endif
}

// x rounded to the nearest bfloat16 value, as a float32.
CAPTION_BF16_HD float round_to_bf16(float x) { return bf16_to_float(bf16_bits(x)); }

}  // namespace caption::kernels
