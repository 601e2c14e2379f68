// Guard mode for every op case: new buffers are filled with NaN and followed by a guard
// region, so an output or gradient element the kernels leave unwritten shows as NaN, and
// a write past a buffer's end is counted when the buffer is freed. Inputs are finite, so
// every output must be finite. Runs on the CPU always and on CUDA when present.
#include <cmath>

#include "tests/harness/gpu.h"
#include "tests/harness/harness.h"

namespace caption::testing {
namespace {

struct GuardScope {
  GuardScope() { set_guard_mode(true); }
  ~GuardScope() { set_guard_mode(false); }
};

::testing::AssertionResult all_finite(const Tensor& t, const std::string& what) {
  if (!t.defined()) return ::testing::AssertionSuccess();
  if (!is_floating(t.dtype())) return ::testing::AssertionSuccess();
  const std::vector<double> v = t.to_vector<double>();
  for (size_t i = 0; i < v.size(); ++i)
    if (!std::isfinite(v[i]))
      return ::testing::AssertionFailure() << what << ": element " << i << " of " << v.size()
                                           << " is " << v[i] << " (never written?)";
  return ::testing::AssertionSuccess();
}

void check_case(const OpCase& c, Device device) {
  const uint64_t before = guard_violations();
  {
    GuardScope guard;
    CaseRun run = run_case(c, 21, DType::F32, device);
    for (size_t i = 0; i < run.outputs.size(); ++i)
      EXPECT_TRUE(all_finite(run.outputs[i], str(c.name, " output ", i)));
    for (size_t i = 0; i < run.grads.size(); ++i)
      EXPECT_TRUE(all_finite(run.grads[i], str(c.name, " gradient of input ", i)));
  }  // every buffer of the run is freed here, and its guard checked
  EXPECT_EQ(guard_violations(), before) << c.name << ": a kernel wrote past the end of a buffer";
}

class Guard : public ::testing::TestWithParam<size_t> {};

TEST_P(Guard, CpuWritesEveryElementAndNothingMore) { check_case(op_cases()[GetParam()], Device::cpu()); }

TEST_P(Guard, CudaWritesEveryElementAndNothingMore) {
  CAPTION_REQUIRE_CUDA_OR_SKIP();
  check_case(op_cases()[GetParam()], Device::cuda(0));
}

std::string case_name(const ::testing::TestParamInfo<size_t>& info) {
  std::string n = op_cases()[info.param].name;
  for (char& ch : n)
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return n;
}

INSTANTIATE_TEST_SUITE_P(AllOps, Guard, ::testing::Range<size_t>(0, op_cases().size()), case_name);

}  // namespace
}  // namespace caption::testing
