// The choice of OpenBLAS's kernel set when libcaption is loaded (kernels/cpu/blas.h).
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "kernels/cpu/blas.h"

namespace caption::kernels::cpu {
namespace {

CpuVectorUnits units(bool avx2_fma, bool avx512) {
  CpuVectorUnits u;
  u.avx2_fma = avx2_fma;
  u.avx512 = avx512;
  return u;
}

TEST(BlasCore, SseOnlyChoicesMoveUpToWhatTheProcessorHas) {
  // OpenBLAS 0.3.21 on Emerald Rapids (family 6, model 207) falls back to Prescott.
  EXPECT_EQ(better_blas_core("Prescott", nullptr, units(true, true)), "SkylakeX");
  EXPECT_EQ(better_blas_core("Prescott", nullptr, units(true, false)), "Haswell");
  EXPECT_EQ(better_blas_core("Core2", nullptr, units(true, true)), "SkylakeX");
  EXPECT_EQ(better_blas_core("Nehalem", nullptr, units(true, false)), "Haswell");
  EXPECT_EQ(better_blas_core("Sandybridge", nullptr, units(true, false)), "Haswell");
  EXPECT_EQ(better_blas_core("Unknown", nullptr, units(true, true)), "SkylakeX");
  EXPECT_EQ(better_blas_core("", nullptr, units(true, false)), "Haswell");
  // An empty variable is no choice.
  EXPECT_EQ(better_blas_core("Prescott", "", units(true, true)), "SkylakeX");
}

TEST(BlasCore, KeepsWhatTheProcessorCannotImproveOn) {
  EXPECT_EQ(better_blas_core("Prescott", nullptr, units(false, false)), "");
  EXPECT_EQ(better_blas_core("Sandybridge", nullptr, units(false, false)), "");
}

TEST(BlasCore, KeepsChoicesAtTheAvx2LevelAndAbove) {
  // OpenBLAS may choose Haswell or Zen kernels on an AVX-512 processor on purpose.
  for (const char* name : {"Haswell", "Zen", "SkylakeX", "Cooperlake", "SapphireRapids", "haswell", "SKYLAKEX"})
    EXPECT_EQ(better_blas_core(name, nullptr, units(true, true)), "") << name;
}

TEST(BlasCore, KeepsWhatOpenblasCoretypeSays) {
  EXPECT_EQ(better_blas_core("Prescott", "Prescott", units(true, true)), "");
  EXPECT_EQ(better_blas_core("Haswell", "Haswell", units(true, true)), "");
}

TEST(BlasCore, RunsWhatItReportsAndNoSseKernelsWhereAvxOnesExist) {
  const BlasCore& core = blas_core();
  EXPECT_EQ(core.running, blas_core_now());
  const char* forced = std::getenv("OPENBLAS_CORETYPE");
  const CpuVectorUnits cpu = cpu_vector_units();
  if (forced == nullptr || *forced == '\0') {
    // Whatever OpenBLAS chose at load, nothing below what this processor can run stays.
    EXPECT_EQ(better_blas_core(core.running, nullptr, cpu), "")
        << "OpenBLAS runs " << core.running << " (" << core.note << ")";
    if (core.running != core.detected) {
      EXPECT_EQ(core.running, better_blas_core(core.detected, nullptr, cpu));
      EXPECT_NE(core.note.find(core.detected), std::string::npos) << core.note;
    }
  } else {
    EXPECT_EQ(core.running, core.detected);
    EXPECT_NE(core.note.find("OPENBLAS_CORETYPE="), std::string::npos) << core.note;
  }
  EXPECT_NE(blas_core_summary().find("BLAS core " + core.running), std::string::npos) << blas_core_summary();
  // The environment is as it was: a child process chooses for itself.
  if (forced == nullptr) {
    EXPECT_EQ(std::getenv("OPENBLAS_CORETYPE"), nullptr);
  }
}

TEST(BlasCore, ProductsAfterTheChoiceAreRight) {
  // Odd sizes reach the kernels' edge handling; values are small integers, so every
  // product and sum is exact in float32 whatever the order.
  const int M = 67, N = 45, K = 131;
  std::vector<float> a(M * K), b(K * N), c(M * N, 7.0f), want(M * N);
  for (int i = 0; i < M * K; ++i) a[i] = static_cast<float>(i % 7 - 3);
  for (int i = 0; i < K * N; ++i) b[i] = static_cast<float>(i % 5 - 2);
  for (int m = 0; m < M; ++m)
    for (int n = 0; n < N; ++n) {
      double s = 0;
      for (int k = 0; k < K; ++k) s += static_cast<double>(a[m * K + k]) * b[n * K + k];
      want[m * N + n] = static_cast<float>(2 * s + 7.0 * 0.5);
    }
  gemm<float>(Trans::No, Trans::Yes, M, N, K, 2.0f, a.data(), K, b.data(), K, 0.5f, c.data(), N);
  EXPECT_EQ(c, want);
}

}  // namespace
}  // namespace caption::kernels::cpu
