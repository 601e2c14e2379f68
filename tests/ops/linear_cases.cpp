// Harness cases: matmul (transposes, batches, shared operands) and linear layers.
#include "tests/harness/harness.h"

namespace caption::testing {
namespace {

OpCase matmul_case(std::string name, Shape a, Shape b, MatmulOptions o) {
  OpCase c;
  c.name = std::move(name);
  c.op = OpId::Matmul;
  c.inputs = [a, b](Generator& g, DType t, Device d) {
    return std::vector<Tensor>{random_tensor(a, g, t, d), random_tensor(b, g, t, d)};
  };
  c.forward = [o](const std::vector<Tensor>& x) { return std::vector<Tensor>{matmul(x[0], x[1], o)}; };
  return c;
}

OpCase linear_case(std::string name, Shape x, int64_t in, int64_t out, bool bias) {
  OpCase c;
  c.name = std::move(name);
  c.op = OpId::Linear;
  c.inputs = [=](Generator& g, DType t, Device d) {
    std::vector<Tensor> v{random_tensor(x, g, t, d), random_tensor({out, in}, g, t, d)};
    v.push_back(bias ? random_tensor({out}, g, t, d) : Tensor());
    return v;
  };
  c.forward = [](const std::vector<Tensor>& v) { return std::vector<Tensor>{linear(v[0], v[1], v[2])}; };
  return c;
}

CAPTION_OP_CASES {
  return std::vector<OpCase>{
      matmul_case("matmul/plain_odd", {3, 5}, {5, 7}, {}),
      matmul_case("matmul/transpose_a", {5, 3}, {5, 2}, {Trans::Yes, Trans::No}),
      matmul_case("matmul/transpose_b", {4, 6}, {3, 6}, {Trans::No, Trans::Yes}),
      matmul_case("matmul/transpose_both", {6, 1}, {5, 6}, {Trans::Yes, Trans::Yes}),
      matmul_case("matmul/batched", {2, 3, 4}, {2, 4, 5}, {}),
      matmul_case("matmul/batched_shared_b", {3, 2, 4}, {4, 3}, {}),
      matmul_case("matmul/shared_a_transposed", {4, 3}, {2, 5, 4}, {Trans::Yes, Trans::Yes}),
      linear_case("linear/bias_rank3", {2, 3, 5}, 5, 7, true),
      linear_case("linear/no_bias", {4, 6}, 6, 1, false),
      linear_case("linear/one_row", {1, 17}, 17, 3, true),
  };
}

}  // namespace
}  // namespace caption::testing
