// Philox4x32-10, the counter-based generator of Salmon et al. (SC'11), shared by CPU
// and CUDA code so that a (seed, offset) pair gives the same numbers on both. Each call
// maps a 128-bit counter and a 64-bit key to four independent 32-bit words; element i
// of a stream that starts at `offset` uses counter offset + i / 4, word i % 4.
#pragma once

#include <cstdint>

#include "kernels/host_device.h"

namespace caption::kernels {

struct Philox4 {
  uint32_t v[4];
};

CAPTION_HD_INLINE uint32_t mulhi32(uint32_t a, uint32_t b) {
  return static_cast<uint32_t>((static_cast<uint64_t>(a) * b) >> 32);
}

CAPTION_HD_INLINE Philox4 philox4x32_10(uint64_t counter, uint64_t seed) {
  uint32_t c0 = static_cast<uint32_t>(counter), c1 = static_cast<uint32_t>(counter >> 32);
  uint32_t c2 = 0, c3 = 0;
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  constexpr uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u, W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    const uint32_t hi0 = mulhi32(M0, c0), lo0 = M0 * c0;
    const uint32_t hi1 = mulhi32(M1, c2), lo1 = M1 * c2;
    const uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
    c0 = n0; c1 = n1; c2 = n2; c3 = n3;
    k0 += W0;
    k1 += W1;
  }
  return {{c0, c1, c2, c3}};
}

// The i-th 32-bit word of the stream (seed, offset).
CAPTION_HD_INLINE uint32_t philox_word(uint64_t seed, uint64_t offset, uint64_t i) {
  return philox4x32_10(offset + i / 4, seed).v[i % 4];
}

// A float in [0, 1) from the top 24 bits of a word (exactly representable).
CAPTION_HD_INLINE float word_to_unit_float(uint32_t w) { return static_cast<float>(w >> 8) * (1.0f / 16777216.0f); }

}  // namespace caption::kernels
