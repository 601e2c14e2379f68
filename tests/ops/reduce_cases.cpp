// Harness cases: sum and mean over single, several, non-adjacent and all axes.
#include "tests/harness/harness.h"

namespace caption::testing {
namespace {

OpCase reduce_case(std::string name, OpId op, Shape s, std::vector<int64_t> axes, KeepDim keep) {
  OpCase c;
  c.name = std::move(name);
  c.op = op;
  c.inputs = [s](Generator& g, DType t, Device d) { return std::vector<Tensor>{random_tensor(s, g, t, d)}; };
  c.forward = [op, axes, keep](const std::vector<Tensor>& x) {
    return std::vector<Tensor>{op == OpId::Sum ? sum(x[0], axes, keep) : mean(x[0], axes, keep)};
  };
  return c;
}

CAPTION_OP_CASES {
  return std::vector<OpCase>{
      reduce_case("sum/all", OpId::Sum, {3, 5}, {}, KeepDim::No),
      reduce_case("sum/last_axis", OpId::Sum, {4, 7}, {-1}, KeepDim::No),
      reduce_case("sum/middle_keepdim", OpId::Sum, {2, 5, 3}, {1}, KeepDim::Yes),
      reduce_case("sum/non_adjacent_axes", OpId::Sum, {2, 3, 4, 5}, {0, 2}, KeepDim::No),
      reduce_case("mean/first_axis", OpId::Mean, {6, 4}, {0}, KeepDim::No),
      reduce_case("mean/two_trailing_axes", OpId::Mean, {3, 4, 5}, {1, 2}, KeepDim::Yes),
  };
}

}  // namespace
}  // namespace caption::testing
