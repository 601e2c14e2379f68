// Gradient check of every op case: float64 on the CPU, central differences against
// autograd with a random upstream gradient (tests/harness/harness.h).
#include "tests/harness/harness.h"

namespace caption::testing {
namespace {

class Gradcheck : public ::testing::TestWithParam<size_t> {};

TEST_P(Gradcheck, AnalyticMatchesNumeric) {
  const OpCase& c = op_cases()[GetParam()];
  if (!c.gradcheck) GTEST_SKIP() << c.name << ": op has no backward";
  for (uint64_t seed : {1u, 2u}) EXPECT_TRUE(gradcheck(c, seed)) << "seed " << seed;
}

std::string case_name(const ::testing::TestParamInfo<size_t>& info) {
  std::string n = op_cases()[info.param].name;
  for (char& ch : n)
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return n;
}

INSTANTIATE_TEST_SUITE_P(AllOps, Gradcheck, ::testing::Range<size_t>(0, op_cases().size()), case_name);

}  // namespace
}  // namespace caption::testing
