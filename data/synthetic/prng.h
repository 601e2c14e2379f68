// The synthetic data set's random numbers: xoshiro256** seeded through splitmix64. Our
// own generator and our own integer-to-range mapping, never std:: distributions, whose
// outputs differ between standard libraries: the same seed must give the same bytes on
// every platform and compiler.
#pragma once

#include <cstdint>

namespace caption::data {

// splitmix64's output function: a good 64-bit mixer, used to seed and to derive
// independent per-image streams from (seed, index, purpose).
constexpr std::uint64_t splitmix64(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

class Prng {
 public:
  explicit constexpr Prng(std::uint64_t seed) {
    std::uint64_t sm = seed;
    for (auto& word : s_) word = splitmix64(sm);
  }

  // A stream for one (seed, index, purpose) triple, independent of any other, so that
  // images can be made in any order or on any thread.
  static constexpr Prng for_item(std::uint64_t seed, std::uint64_t index, std::uint64_t purpose) {
    std::uint64_t sm = seed;
    std::uint64_t mixed = splitmix64(sm) ^ (index * 0xD1B54A32D192ED03ull);
    mixed = splitmix64(mixed) ^ (purpose * 0x8CB92BA72F3D8DD7ull);
    return Prng(splitmix64(mixed));
  }

  constexpr std::uint64_t next() {
    const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const std::uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }

  // Uniform in [0, n), n > 0: multiply-shift on the top 32 bits (bias < 2^-32 * n).
  constexpr std::uint32_t below(std::uint32_t n) {
    return static_cast<std::uint32_t>(((next() >> 32) * n) >> 32);
  }

  // Uniform in [lo, hi], lo <= hi.
  constexpr int between(int lo, int hi) {
    return lo + static_cast<int>(below(static_cast<std::uint32_t>(hi - lo + 1)));
  }

 private:
  static constexpr std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  std::uint64_t s_[4]{};
};

}  // namespace caption::data
