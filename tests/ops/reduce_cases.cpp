// Harness cases: sum and mean over single, several, non-adjacent and all axes.
#include <cmath>

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

// max_last: values and first indices; `ties` draws from a few integers, so rows hold
// repeated maxima. (NaN rows are tests/kernels/cuda_paths_test.cpp's: the harness's
// inputs are finite, and its guard test takes a NaN output for an unwritten one.)
OpCase max_last_case(std::string name, Shape s, bool ties) {
  OpCase c;
  c.name = std::move(name);
  c.op = OpId::MaxLast;
  c.gradcheck = false;
  c.inputs = [s, ties](Generator& g, DType t, Device d) {
    Tensor x = random_tensor(s, g, DType::F64, Device::cpu(), -3, 3);
    double* p = x.data<double>();
    for (int64_t i = 0; i < x.numel() && ties; ++i) p[i] = std::floor(p[i]);
    return std::vector<Tensor>{x.to(t).to(d)};
  };
  c.no_grad_inputs = {0};
  c.forward = [](const std::vector<Tensor>& x) {
    MaxResult r = max_last(x[0]);
    return std::vector<Tensor>{r.values, r.indices};
  };
  return c;
}

// top_extensions: log-probabilities [K, V] and the hypotheses' scores [K] (float64 in the
// op; the harness hands every input in the case's dtype). `ties` draws integers, so many
// extensions score the same and the order falls to the flat index.
OpCase top_extensions_case(std::string name, int64_t K, int64_t V, int64_t take, bool ties) {
  OpCase c;
  c.name = std::move(name);
  c.op = OpId::TopExtensions;
  c.gradcheck = false;
  c.inputs = [=](Generator& g, DType t, Device d) {
    Tensor lp = random_tensor({K, V}, g, DType::F64, Device::cpu(), -6, 0);
    Tensor base = random_tensor({K}, g, DType::F64, Device::cpu(), -4, 0);
    for (Tensor* x : {&lp, &base}) {
      double* p = x->data<double>();
      for (int64_t i = 0; i < x->numel() && ties; ++i) p[i] = std::floor(p[i]);
    }
    return std::vector<Tensor>{lp.to(t).to(d), base.to(t).to(d)};
  };
  c.no_grad_inputs = {0, 1};
  c.forward = [take](const std::vector<Tensor>& x) {
    TopExtensions r = top_extensions(x[0], x[1].to(DType::F64), take);
    return std::vector<Tensor>{r.log_probs, r.indices, r.scores};
  };
  return c;
}

CAPTION_OP_CASES {
  return std::vector<OpCase>{
      max_last_case("max_last/rows", {5, 37}, false),
      max_last_case("max_last/ties_first_index", {6, 300}, true),
      max_last_case("max_last/one_column_3d", {2, 3, 1}, false),
      max_last_case("max_last/long_rows", {3, 10007}, true),
      top_extensions_case("top_extensions/beam3", 3, 50, 3, false),
      top_extensions_case("top_extensions/ties_by_index", 4, 30, 7, true),
      top_extensions_case("top_extensions/take_clamped_to_all", 2, 5, 15, false),
      top_extensions_case("top_extensions/one_hypothesis_is_argmax", 1, 40, 1, true),
      top_extensions_case("top_extensions/vocabulary_rows", 3, 10007, 5, true),
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
