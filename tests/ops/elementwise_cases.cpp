// Harness cases: binary ops with broadcasting, activations, strided copies.
#include "tests/harness/harness.h"

namespace caption::testing {
namespace {

OpCase binary_case(std::string name, OpId op, Shape a, Shape b,
                   Tensor (*fn)(const Tensor&, const Tensor&), double b_min_abs = 0.0) {
  OpCase c;
  c.name = std::move(name);
  c.op = op;
  c.inputs = [a, b, b_min_abs](Generator& g, DType t, Device d) {
    return std::vector<Tensor>{random_tensor(a, g, t, d),
                               random_tensor(b, g, t, d, -1.0, 1.0, b_min_abs)};
  };
  c.forward = [fn](const std::vector<Tensor>& x) { return std::vector<Tensor>{fn(x[0], x[1])}; };
  return c;
}

OpCase unary_case(std::string name, OpId op, Shape s, Tensor (*fn)(const Tensor&), double min_abs) {
  OpCase c;
  c.name = std::move(name);
  c.op = op;
  c.inputs = [s, min_abs](Generator& g, DType t, Device d) {
    return std::vector<Tensor>{random_tensor(s, g, t, d, -3.0, 3.0, min_abs)};
  };
  c.forward = [fn](const std::vector<Tensor>& x) { return std::vector<Tensor>{fn(x[0])}; };
  return c;
}

Tensor add_fn(const Tensor& a, const Tensor& b) { return add(a, b); }
Tensor sub_fn(const Tensor& a, const Tensor& b) { return sub(a, b); }
Tensor mul_fn(const Tensor& a, const Tensor& b) { return mul(a, b); }
Tensor div_fn(const Tensor& a, const Tensor& b) { return div(a, b); }
Tensor relu_fn(const Tensor& x) { return relu(x); }
Tensor tanh_fn(const Tensor& x) { return tanh(x); }
Tensor sigmoid_fn(const Tensor& x) { return sigmoid(x); }

CAPTION_OP_CASES {
  std::vector<OpCase> cases{
      binary_case("add/same_shape_odd", OpId::Add, {3, 7}, {3, 7}, add_fn),
      binary_case("add/row_broadcast", OpId::Add, {5, 1, 13}, {13}, add_fn),
      binary_case("add/both_broadcast", OpId::Add, {4, 1, 3}, {1, 5, 1}, add_fn),
      binary_case("add/scalar", OpId::Add, {1}, {}, add_fn),
      binary_case("sub/broadcast_lhs", OpId::Sub, {1, 6}, {7, 6}, sub_fn),
      binary_case("sub/same_shape_prime", OpId::Sub, {17}, {17}, sub_fn),
      binary_case("mul/column_broadcast", OpId::Mul, {6, 5}, {6, 1}, mul_fn),
      binary_case("mul/rank4_broadcast", OpId::Mul, {2, 3, 1, 5}, {3, 4, 1}, mul_fn),
      binary_case("div/same_shape", OpId::Div, {9, 4}, {9, 4}, div_fn, 0.5),
      binary_case("div/broadcast", OpId::Div, {3, 1, 4}, {5, 1}, div_fn, 0.5),
      unary_case("relu/odd", OpId::Relu, {7, 9}, relu_fn, 0.05),
      unary_case("tanh/prime", OpId::Tanh, {3, 131}, tanh_fn, 0.0),
      unary_case("sigmoid/just_above_block", OpId::Sigmoid, {257}, sigmoid_fn, 0.0),
  };
  // Copy: materialising a permuted (non-contiguous) view.
  OpCase copy;
  copy.name = "copy/permuted_view";
  copy.op = OpId::Copy;
  copy.inputs = [](Generator& g, DType t, Device d) {
    return std::vector<Tensor>{random_tensor({3, 5, 4}, g, t, d)};
  };
  copy.forward = [](const std::vector<Tensor>& x) {
    return std::vector<Tensor>{x[0].permute({2, 0, 1}).contiguous()};
  };
  cases.push_back(copy);
  OpCase narrow_copy;
  narrow_copy.name = "copy/narrowed_transposed";
  narrow_copy.op = OpId::Copy;
  narrow_copy.inputs = [](Generator& g, DType t, Device d) {
    return std::vector<Tensor>{random_tensor({6, 7}, g, t, d)};
  };
  narrow_copy.forward = [](const std::vector<Tensor>& x) {
    return std::vector<Tensor>{x[0].narrow(1, 2, 3).transpose(0, 1).contiguous()};
  };
  cases.push_back(narrow_copy);
  return cases;
}

}  // namespace
}  // namespace caption::testing
