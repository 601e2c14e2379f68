// Determinism on CUDA (ENGINEERING.md, "Correctness" 6): every harness case whose op has
// CUDA kernels, run twice on the GPU with the same seed, gives the same outputs and
// gradients bit for bit. Our reductions use no atomics; this catches any that slip in
// (or a library call that is not reproducible). Skipped without a GPU.
#include "tests/harness/gpu.h"
#include "tests/harness/harness.h"

namespace caption::testing {
namespace {

bool has_cuda_kernels(OpId op) {
  const OpKernels& k = op_info(op).kernels[static_cast<int>(DeviceType::CUDA)];
  return k.forward != nullptr && (k.backward != nullptr || !op_info(op).has_backward);
}

TEST(CudaDeterminism, SameSeedSameBits) {
  CAPTION_REQUIRE_CUDA_OR_SKIP();
  int checked = 0;
  for (const OpCase& c : op_cases()) {
    if (!has_cuda_kernels(c.op)) continue;
    CaseRun first = run_case(c, 31, DType::F32, Device::cuda(0));
    CaseRun second = run_case(c, 31, DType::F32, Device::cuda(0));
    ASSERT_EQ(first.outputs.size(), second.outputs.size()) << c.name;
    for (size_t i = 0; i < first.outputs.size(); ++i)
      EXPECT_TRUE(equal(second.outputs[i], first.outputs[i], str(c.name, " output ", i)));
    for (size_t i = 0; i < first.grads.size(); ++i) {
      if (!first.grads[i].defined()) continue;
      EXPECT_TRUE(equal(second.grads[i], first.grads[i], str(c.name, " gradient of input ", i)));
    }
    ++checked;
  }
  EXPECT_GT(checked, 0) << "no op case has CUDA kernels";
}

}  // namespace
}  // namespace caption::testing
