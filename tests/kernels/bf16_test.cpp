// bfloat16 rounding (kernels/bf16.h), which the CPU and the CUDA products share, against
// PyTorch's float32 -> bfloat16 conversion bit for bit, and the CPU product path of
// kernels::cpu::Bf16Products: the same result as a float32 product of rounded operands,
// for every transpose combination and strided operands; scopes nest and restore.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <sys/wait.h>
#include <vector>

#include "kernels/bf16.h"
#include "kernels/cpu/blas.h"

namespace caption::kernels {
namespace {

namespace fs = std::filesystem;

float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

TEST(Bf16, RoundsToNearestEven) {
  EXPECT_EQ(round_to_bf16(1.0f), 1.0f);
  EXPECT_EQ(bf16_bits(from_bits(0x3F808000u)), 0x3F80u);  // 1 + 2^-8: a tie, lsb 0 -> down
  EXPECT_EQ(bf16_bits(from_bits(0x3F818000u)), 0x3F82u);  // a tie, lsb 1 -> up
  EXPECT_EQ(bf16_bits(from_bits(0x3F808001u)), 0x3F81u);  // just above a tie -> up
  EXPECT_EQ(bf16_bits(from_bits(0x3F807FFFu)), 0x3F80u);  // just below -> down
  EXPECT_EQ(bf16_bits(std::numeric_limits<float>::max()), 0x7F80u);  // overflows to inf
  EXPECT_EQ(bf16_bits(-0.0f), 0x8000u);
  EXPECT_EQ(bf16_bits(-std::numeric_limits<float>::infinity()), 0xFF80u);
  EXPECT_TRUE(std::isnan(round_to_bf16(std::numeric_limits<float>::quiet_NaN())));
  EXPECT_TRUE(std::isnan(round_to_bf16(from_bits(0x7F800001u))));  // signalling NaN stays NaN
  EXPECT_EQ(round_to_bf16(3.14159265f), 3.140625f);
}

TEST(Bf16, MatchesPyTorchBitForBit) {
  const char* python = CAPTION_REFERENCE_PYTHON;
  if (!fs::exists(python)) GTEST_SKIP() << python << " not found";
  const fs::path script = fs::path(CAPTION_SOURCE_DIR) / "tests/kernels/bf16_reference.py";
  const std::string cmd = std::string(python) + " '" + script.string() + "'";
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[1 << 16];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int status = pclose(p);
  const int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  if (code == 3) GTEST_SKIP() << out;
  ASSERT_EQ(code, 0) << out.substr(0, 2000);
  std::istringstream in(out);
  size_t values = 0, nans = 0;
  std::string fs_, bs_;
  while (in >> fs_ >> bs_) {
    const uint32_t f = static_cast<uint32_t>(std::stoul(fs_, nullptr, 16));
    const uint32_t b = static_cast<uint32_t>(std::stoul(bs_, nullptr, 16));
    const float x = from_bits(f);
    ++values;
    if (std::isnan(x)) {
      ++nans;
      EXPECT_TRUE(std::isnan(bf16_to_float(bf16_bits(x)))) << std::hex << f;
      continue;
    }
    ASSERT_EQ(bf16_bits(x), b) << "float bits " << std::hex << f;
  }
  EXPECT_GT(values, 22000u);  // 2 signs x 256 exponents x 44 mantissas, and extremes
  EXPECT_GT(nans, 80u);
}

std::vector<float> random_matrix(int64_t n, std::mt19937& rng) {
  std::uniform_real_distribution<float> d(-2.f, 2.f);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = d(rng);
  return v;
}

TEST(Bf16, CpuProductsAreFloatProductsOfRoundedOperands) {
  std::mt19937 rng(5);
  const int64_t M = 7, N = 5, K = 33, pad = 3;
  for (cpu::Trans ta : {cpu::Trans::No, cpu::Trans::Yes})
    for (cpu::Trans tb : {cpu::Trans::No, cpu::Trans::Yes}) {
      const int64_t a_rows = ta == cpu::Trans::No ? M : K, a_cols = ta == cpu::Trans::No ? K : M;
      const int64_t b_rows = tb == cpu::Trans::No ? K : N, b_cols = tb == cpu::Trans::No ? N : K;
      const int64_t lda = a_cols + pad, ldb = b_cols + pad;  // strided operands
      std::vector<float> A = random_matrix(a_rows * lda, rng), B = random_matrix(b_rows * ldb, rng);
      std::vector<float> A16 = A, B16 = B;
      for (float& x : A16) x = round_to_bf16(x);
      for (float& x : B16) x = round_to_bf16(x);
      std::vector<float> c_ref(M * N, 1.f), c_bf16(M * N, 1.f), c_f32(M * N, 1.f);
      cpu::gemm<float>(ta, tb, M, N, K, 0.5f, A16.data(), lda, B16.data(), ldb, 0.25f, c_ref.data(), N);
      cpu::gemm<float>(ta, tb, M, N, K, 0.5f, A.data(), lda, B.data(), ldb, 0.25f, c_f32.data(), N);
      {
        cpu::Bf16Products scope(true);
        EXPECT_TRUE(cpu::bf16_products());
        cpu::gemm<float>(ta, tb, M, N, K, 0.5f, A.data(), lda, B.data(), ldb, 0.25f, c_bf16.data(), N);
      }
      EXPECT_FALSE(cpu::bf16_products());
      double diff32 = 0;
      for (int64_t i = 0; i < M * N; ++i) {
        ASSERT_EQ(c_bf16[i], c_ref[i]) << "element " << i;
        diff32 = std::max(diff32, double{std::abs(c_bf16[i] - c_f32[i])});
      }
      EXPECT_GT(diff32, 0.0);  // the rounding did happen
    }
}

TEST(Bf16, ScopesNestAndRestore) {
  EXPECT_FALSE(cpu::bf16_products());
  {
    cpu::Bf16Products on(true);
    {
      cpu::Bf16Products off(false);
      EXPECT_FALSE(cpu::bf16_products());
    }
    EXPECT_TRUE(cpu::bf16_products());
  }
  EXPECT_FALSE(cpu::bf16_products());
}

}  // namespace
}  // namespace caption::kernels
