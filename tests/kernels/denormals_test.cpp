// set_flush_denormals (kernels/cpu/blas.h): the calling thread and OpenBLAS's workers flush
// denormal numbers to zero, and stop doing so when asked.
#include <gtest/gtest.h>

#include <cstdlib>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cpu/blas.h"

namespace caption::kernels::cpu {
namespace {

// C = A * B for A [n, n] of one denormal value and B [n, n] of 1e30: each element is
// n * 1e-39 * 1e30 = n * 1e-9 with denormals kept, 0 when operands are read as zero. The
// product is large enough that OpenBLAS splits it over its threads, so a worker that did
// not flush would leave its share of C nonzero.
std::vector<float> denormal_product(int64_t n) {
  std::vector<float> a(n * n, 1e-39f), b(n * n, 1e30f), c(n * n, -1.f);
  gemm<float>(Trans::No, Trans::No, n, n, n, 1.f, a.data(), n, b.data(), n, 0.f, c.data(), n);
  return c;
}

struct RestoreFlush {
  bool before = flush_denormals();
  int threads = blas_threads();
  ~RestoreFlush() {
    set_flush_denormals(before);
    set_blas_threads(threads);
  }
};

TEST(FlushDenormals, EveryBlasThreadFlushesAndStopsFlushing) {
  ASSERT_GT(1e-39f, 0.f);  // the operand is a denormal float32, not zero
  ASSERT_LT(1e-39f, std::numeric_limits<float>::min());
  const RestoreFlush restore;
  set_blas_threads(2);
  const int64_t n = 384;
  set_flush_denormals(true);
  EXPECT_TRUE(flush_denormals());
  for (float v : denormal_product(n)) ASSERT_EQ(v, 0.f);
  volatile float tiny = 1e-39f;  // this thread's own arithmetic flushes too
  EXPECT_EQ(tiny * 1.f, 0.f);
  set_flush_denormals(false);
  EXPECT_FALSE(flush_denormals());
  for (float v : denormal_product(n)) ASSERT_NEAR(v, n * 1e-9, n * 1e-9 * 1e-3);
  EXPECT_GT(tiny * 1.f, 0.f);
}

TEST(FlushDenormals, DefaultComesFromTheEnvironment) {
  const char* saved = std::getenv("CAPTION_FLUSH_DENORMALS");
  const std::string keep = saved ? saved : "";
  unsetenv("CAPTION_FLUSH_DENORMALS");
  EXPECT_TRUE(default_flush_denormals());
  setenv("CAPTION_FLUSH_DENORMALS", "0", 1);
  EXPECT_FALSE(default_flush_denormals());
  setenv("CAPTION_FLUSH_DENORMALS", "1", 1);
  EXPECT_TRUE(default_flush_denormals());
  setenv("CAPTION_FLUSH_DENORMALS", "yes", 1);
  try {
    default_flush_denormals();
    ADD_FAILURE() << "CAPTION_FLUSH_DENORMALS=yes accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("CAPTION_FLUSH_DENORMALS='yes'"), std::string::npos)
        << e.what();
  }
  if (saved) setenv("CAPTION_FLUSH_DENORMALS", keep.c_str(), 1);
  else unsetenv("CAPTION_FLUSH_DENORMALS");
}

}  // namespace
}  // namespace caption::kernels::cpu
