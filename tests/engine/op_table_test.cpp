// The op table is complete on the CPU: every op has a forward kernel, a backward kernel
// where it has one, and at least one harness case. The CUDA gaps are listed (and are
// the CUDA backend's work list).
#include <iostream>
#include <set>

#include "tests/harness/harness.h"

namespace caption::testing {
namespace {

TEST(OpTable, EveryOpHasCpuForwardAndBackward) {
  const std::vector<std::string> missing = missing_kernels(DeviceType::CPU);
  EXPECT_TRUE(missing.empty()) << "CPU kernels missing: " << ::testing::PrintToString(missing);
}

TEST(OpTable, EveryOpHasAHarnessCase) {
  std::set<OpId> covered;
  for (const OpCase& c : op_cases()) covered.insert(c.op);
  for (int i = 0; i < kOpCount; ++i)
    EXPECT_TRUE(covered.count(static_cast<OpId>(i))) << "op '" << op_name(static_cast<OpId>(i))
                                                     << "' has no case in tests/ops/";
}

TEST(OpTable, NamesAreUniqueAndSet) {
  std::set<std::string_view> names;
  for (int i = 0; i < kOpCount; ++i) {
    const auto name = op_name(static_cast<OpId>(i));
    EXPECT_FALSE(name.empty()) << "op " << i << " has no name";
    EXPECT_TRUE(names.insert(name).second) << "duplicate op name " << name;
  }
}

TEST(OpTable, PrintsCudaStatus) {
  const std::vector<std::string> missing = missing_kernels(DeviceType::CUDA);
  std::cout << "op table: " << kOpCount << " ops; CUDA backend "
            << (cuda_compiled() ? "compiled" : "not compiled") << "; " << missing.size()
            << " CUDA kernels missing:\n";
  for (const auto& m : missing) std::cout << "  - " << m << "\n";
  // Where the backend is compiled, the foundation's set must be there.
  if (cuda_compiled()) {
    for (OpId op : {OpId::Matmul, OpId::Linear, OpId::Add, OpId::Sub, OpId::Mul, OpId::Div,
                    OpId::Relu, OpId::Tanh, OpId::Sigmoid, OpId::Copy, OpId::Softmax,
                    OpId::LogSoftmax, OpId::CrossEntropy}) {
      const OpKernels& k = op_info(op).kernels[static_cast<int>(DeviceType::CUDA)];
      EXPECT_TRUE(k.forward && k.backward) << "CUDA kernels of " << op_name(op) << " missing";
    }
  }
}

}  // namespace
}  // namespace caption::testing
