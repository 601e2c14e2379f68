// Gradient check of every op case: float64 on the CPU, central differences against
// autograd with a random upstream gradient (tests/harness/harness.h). Only the cases of
// ops with a backward are instantiated (optimiser steps and max_last have none), so a
// suite run shows no skipped tests.
#include <vector>

#include "tests/harness/harness.h"

namespace caption::testing {
namespace {

class Gradcheck : public ::testing::TestWithParam<size_t> {};

TEST_P(Gradcheck, AnalyticMatchesNumeric) {
  const OpCase& c = op_cases()[GetParam()];
  for (uint64_t seed : {1u, 2u}) EXPECT_TRUE(gradcheck(c, seed)) << "seed " << seed;
}

std::string case_name(const ::testing::TestParamInfo<size_t>& info) {
  std::string n = op_cases()[info.param].name;
  for (char& ch : n)
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return n;
}

std::vector<size_t> differentiable_cases() {
  std::vector<size_t> ids;
  for (size_t i = 0; i < op_cases().size(); ++i)
    if (op_cases()[i].gradcheck && op_cases()[i].float64) ids.push_back(i);
  return ids;
}

INSTANTIATE_TEST_SUITE_P(AllOps, Gradcheck, ::testing::ValuesIn(differentiable_cases()), case_name);

}  // namespace
}  // namespace caption::testing
