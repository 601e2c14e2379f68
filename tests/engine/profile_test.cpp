// engine/profile.h on the CPU: every kernel call through the op table is counted and
// timed by op, direction and device while profiling is on, and nothing while it is off.
#include <gtest/gtest.h>

#include "engine/engine.h"
#include "engine/profile.h"
#include "tests/harness/harness.h"

namespace caption::testing {
namespace {

struct ProfileOn {
  ProfileOn() {
    OpProfile::reset();
    OpProfile::enable(true);
  }
  ~ProfileOn() {
    OpProfile::enable(false);
    OpProfile::reset();
  }
};

TEST(OpProfile, CountsAndTimesEachKernelCallByOpAndDirection) {
  const ProfileOn on;
  Generator g(1);
  Tensor a = random_tensor({64, 96}, g, DType::F32, Device::cpu());
  Tensor b = random_tensor({96, 80}, g, DType::F32, Device::cpu());
  a.set_requires_grad(true);
  Tensor total;
  for (int i = 0; i < 3; ++i) total = sum(matmul(a, b));
  total.backward();
  EXPECT_EQ(OpProfile::calls(OpId::Matmul, false, DeviceType::CPU), 3);
  EXPECT_EQ(OpProfile::calls(OpId::Matmul, true, DeviceType::CPU), 1);
  EXPECT_EQ(OpProfile::calls(OpId::Sum, false, DeviceType::CPU), 3);
  EXPECT_GT(OpProfile::total_ms(OpId::Matmul, false, DeviceType::CPU), 0.0);
  const std::string r = OpProfile::report();
  EXPECT_NE(r.find("matmul "), std::string::npos) << r;
  EXPECT_NE(r.find("matmul backward"), std::string::npos) << r;
  EXPECT_NE(r.find("cpu"), std::string::npos) << r;
  OpProfile::reset();
  EXPECT_EQ(OpProfile::calls(OpId::Matmul, false, DeviceType::CPU), 0);
  EXPECT_EQ(OpProfile::report(), "");
}

TEST(OpProfile, RecordsNothingWhileOff) {
  OpProfile::reset();
  OpProfile::enable(false);
  Generator g(2);
  const Tensor a = random_tensor({8, 8}, g, DType::F32, Device::cpu());
  (void)matmul(a, a);
  EXPECT_EQ(OpProfile::calls(OpId::Matmul, false, DeviceType::CPU), 0);
  EXPECT_EQ(OpProfile::report(), "");
}

}  // namespace
}  // namespace caption::testing
