// engine/profile.h on a GPU: CUDA ops are timed by events on the device's stream, and a
// device graph's capture records nothing (its replay runs as one launch). Skipped without
// a GPU.
#include <gtest/gtest.h>

#include "engine/engine.h"
#include "engine/graph.h"
#include "engine/profile.h"
#include "tests/harness/gpu.h"
#include "tests/harness/harness.h"

namespace caption::testing {
namespace {

TEST(CudaOpProfile, TimesCudaOpsAndNothingInsideACapture) {
  CAPTION_REQUIRE_CUDA_OR_SKIP();
  const Device d = Device::cuda(0);
  OpProfile::reset();
  OpProfile::enable(true);
  Generator g(3);
  const Tensor a = random_tensor({256, 256}, g, DType::F32, d);
  Tensor c;
  for (int i = 0; i < 4; ++i) c = relu(matmul(a, a));
  EXPECT_EQ(OpProfile::calls(OpId::Matmul, false, DeviceType::CUDA), 4);
  EXPECT_EQ(OpProfile::calls(OpId::Relu, false, DeviceType::CUDA), 4);
  EXPECT_GE(OpProfile::total_ms(OpId::Matmul, false, DeviceType::CUDA), 0.0);
  const std::string r = OpProfile::report();
  EXPECT_NE(r.find("cuda"), std::string::npos) << r;
  if (DeviceGraph::enabled(d)) {
    DeviceGraph graph;
    Tensor out;
    ASSERT_TRUE(graph.capture(d, [&] { out = relu(matmul(a, a)); })) << graph.failure();
    graph.replay();
    EXPECT_EQ(OpProfile::calls(OpId::Matmul, false, DeviceType::CUDA), 4) << "recorded in a capture";
  }
  OpProfile::enable(false);
  OpProfile::reset();
}

}  // namespace
}  // namespace caption::testing
