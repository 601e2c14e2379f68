// GPU availability for tests. A test that needs a GPU calls CAPTION_REQUIRE_CUDA_OR_SKIP()
// first: without a usable device it is reported skipped (GTEST_SKIP, which CTest shows as
// skipped), unless CAPTION_REQUIRE_GPU=1 is set, in which case it fails: the GPU check
// script sets it so that a GPU run can never pass by skipping.
#pragma once

#include <gtest/gtest.h>

#include <string>

namespace caption::testing {

bool gpu_required();  // CAPTION_REQUIRE_GPU=1
bool gpu_available();
std::string gpu_unavailable_reason();

}  // namespace caption::testing

#define CAPTION_REQUIRE_CUDA_OR_SKIP()                                                      \
  do {                                                                                    \
    if (!::caption::testing::gpu_available()) {                                           \
      if (::caption::testing::gpu_required())                                             \
        FAIL() << "CAPTION_REQUIRE_GPU=1 but no GPU: "                                    \
               << ::caption::testing::gpu_unavailable_reason();                           \
      GTEST_SKIP() << "no GPU: " << ::caption::testing::gpu_unavailable_reason();         \
    }                                                                                     \
  } while (0)
