// CUDA against the CPU reference for every op case: float32 on both, every output and
// every input gradient, with the case's tolerance. Skipped (never passed) without a GPU;
// CAPTION_REQUIRE_GPU=1 turns the skip into a failure.
#include "tests/harness/gpu.h"
#include "tests/harness/harness.h"

namespace caption::testing {
namespace {

class Consistency : public ::testing::TestWithParam<size_t> {};

TEST_P(Consistency, CudaMatchesCpu) {
  CAPTION_REQUIRE_CUDA_OR_SKIP();
  const OpCase& c = op_cases()[GetParam()];
  for (uint64_t seed : {11u, 12u}) {
    CaseRun cpu = run_case(c, seed, DType::F32, Device::cpu());
    CaseRun gpu = run_case(c, seed, DType::F32, Device::cuda(0));
    ASSERT_EQ(cpu.outputs.size(), gpu.outputs.size());
    for (size_t i = 0; i < cpu.outputs.size(); ++i)
      EXPECT_TRUE(allclose(gpu.outputs[i], cpu.outputs[i], c.consistency,
                           str(c.name, " output ", i, " seed ", seed)));
    for (size_t i = 0; i < cpu.grads.size(); ++i)
      EXPECT_TRUE(allclose(gpu.grads[i], cpu.grads[i], c.consistency,
                           str(c.name, " gradient of input ", i, " seed ", seed)));
  }
}

std::string case_name(const ::testing::TestParamInfo<size_t>& info) {
  std::string n = op_cases()[info.param].name;
  for (char& ch : n)
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return n;
}

INSTANTIATE_TEST_SUITE_P(AllOps, Consistency, ::testing::Range<size_t>(0, op_cases().size()), case_name);

}  // namespace
}  // namespace caption::testing
