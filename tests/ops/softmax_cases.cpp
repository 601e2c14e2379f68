// Harness cases: softmax and log_softmax (last, middle and first axes, a single row,
// widths just above a power of two, masks of x's shape and broadcast ones, a fully masked
// row) and cross_entropy (mean and sum, int32 and int64 targets, ignored rows, every row
// ignored, a single row).
//
// Masked log_softmax has -inf outputs, which neither the gradient check (inf - inf) nor
// the guard test (every output finite) can take, so its case gathers the kept entries of
// each row and checks those; the fully masked row of log_softmax is covered by
// softmax_values_test.cpp.
#include "tests/harness/harness.h"

namespace caption::testing {
namespace {

enum class Kind { Softmax, LogSoftmax };

Tensor run_kind(Kind k, const Tensor& x, int64_t axis, const Tensor& mask) {
  return k == Kind::Softmax ? softmax(x, axis, mask) : log_softmax(x, axis, mask);
}

OpCase softmax_case(std::string name, Kind k, Shape s, int64_t axis) {
  OpCase c;
  c.name = std::move(name);
  c.op = k == Kind::Softmax ? OpId::Softmax : OpId::LogSoftmax;
  // Spread of [-3, 3]: rows are far from uniform, yet no probability underflows.
  c.inputs = [s](Generator& g, DType t, Device d) {
    return std::vector<Tensor>{random_tensor(s, g, t, d, -3.0, 3.0)};
  };
  c.forward = [k, axis](const std::vector<Tensor>& x) {
    return std::vector<Tensor>{run_kind(k, x[0], axis, Tensor())};
  };
  return c;
}

Tensor int32_tensor(const std::vector<int32_t>& v, const Shape& s, Device d) {
  return Tensor::from_vector<int32_t>(v, s).to(d);
}

OpCase masked_softmax_case(std::string name, Shape s, int64_t axis, Shape mask_shape,
                           std::vector<int32_t> mask) {
  OpCase c;
  c.name = std::move(name);
  c.op = OpId::Softmax;
  c.inputs = [=](Generator& g, DType t, Device d) {
    return std::vector<Tensor>{random_tensor(s, g, t, d, -3.0, 3.0), int32_tensor(mask, mask_shape, d)};
  };
  c.forward = [axis](const std::vector<Tensor>& x) {
    return std::vector<Tensor>{softmax(x[0], axis, x[1])};
  };
  return c;
}

OpCase cross_entropy_case(std::string name, int64_t n, int64_t v, std::vector<int64_t> targets,
                          DType target_dtype, CrossEntropyOptions o) {
  OpCase c;
  c.name = std::move(name);
  c.op = OpId::CrossEntropy;
  // Logits of O(1), so that float64 central differences stay accurate.
  c.inputs = [=](Generator& g, DType t, Device d) {
    return std::vector<Tensor>{random_tensor({n, v}, g, t, d, -2.0, 2.0),
                               Tensor::from_vector<int64_t>(targets, {n}).to(target_dtype).to(d)};
  };
  c.forward = [o](const std::vector<Tensor>& x) {
    return std::vector<Tensor>{cross_entropy(x[0], x[1], o)};
  };
  return c;
}

CAPTION_OP_CASES {
  const CrossEntropyOptions mean{};
  const CrossEntropyOptions sum{-100, Reduction::Sum};
  const CrossEntropyOptions pad0{0, Reduction::Mean};

  OpCase masked_log_softmax;
  masked_log_softmax.name = "log_softmax/masked_rows_gathered";
  masked_log_softmax.op = OpId::LogSoftmax;
  masked_log_softmax.inputs = [](Generator& g, DType t, Device d) {
    // Each row keeps four of six entries; the index lists them.
    return std::vector<Tensor>{
        random_tensor({3, 6}, g, t, d, -3.0, 3.0),
        int32_tensor({1, 1, 0, 1, 0, 1, 0, 1, 1, 0, 1, 1, 1, 0, 1, 1, 1, 0}, {3, 6}, d),
        Tensor::from_vector<int64_t>({0, 1, 3, 5, 1, 2, 4, 5, 0, 2, 3, 4}, {3, 4}).to(d)};
  };
  masked_log_softmax.forward = [](const std::vector<Tensor>& x) {
    return std::vector<Tensor>{gather(log_softmax(x[0], -1, x[1]), 1, x[2])};
  };

  return std::vector<OpCase>{
      softmax_case("softmax/last_axis_odd", Kind::Softmax, {5, 7}, -1),
      softmax_case("softmax/single_row", Kind::Softmax, {1, 13}, 1),
      softmax_case("softmax/single_element_rows", Kind::Softmax, {4, 1}, -1),
      softmax_case("softmax/middle_axis", Kind::Softmax, {3, 4, 5}, 1),
      softmax_case("softmax/first_axis", Kind::Softmax, {6, 3}, 0),
      softmax_case("softmax/width_above_pow2", Kind::Softmax, {2, 129}, -1),
      masked_softmax_case("softmax/masked_with_fully_masked_row", {4, 5}, -1, {4, 5},
                          {1, 0, 1, 1, 0,  //
                           0, 0, 0, 0, 0,  // nothing kept: zeros, zero gradient
                           1, 1, 1, 1, 1,  //
                           0, 0, 0, 1, 0}),
      masked_softmax_case("softmax/mask_broadcast_over_batch", {3, 2, 5}, -1, {2, 5},
                          {1, 1, 0, 1, 0, 0, 1, 1, 1, 1}),
      masked_softmax_case("softmax/masked_middle_axis", {2, 4, 3}, 1, {2, 4, 3},
                          {1, 0, 1, 0, 0, 1, 1, 0, 0, 1, 0, 1,  //
                           0, 1, 1, 1, 0, 1, 1, 0, 0, 0, 0, 1}),
      softmax_case("log_softmax/last_axis_odd", Kind::LogSoftmax, {5, 7}, -1),
      softmax_case("log_softmax/single_row", Kind::LogSoftmax, {1, 11}, -1),
      softmax_case("log_softmax/middle_axis", Kind::LogSoftmax, {2, 5, 3}, -2),
      softmax_case("log_softmax/width_above_pow2", Kind::LogSoftmax, {2, 65}, -1),
      masked_log_softmax,
      cross_entropy_case("cross_entropy/mean_odd", 5, 7, {3, 0, 6, 6, 2}, DType::I64, mean),
      cross_entropy_case("cross_entropy/sum_int32_targets", 4, 11, {10, 0, 5, 5}, DType::I32, sum),
      cross_entropy_case("cross_entropy/ignored_rows", 6, 9, {-100, 4, -100, 8, 0, -100},
                         DType::I64, mean),
      cross_entropy_case("cross_entropy/padding_id_ignored", 5, 6, {0, 3, 0, 5, 1}, DType::I32,
                         pad0),
      cross_entropy_case("cross_entropy/every_row_ignored", 3, 5, {-100, -100, -100}, DType::I64,
                         mean),
      cross_entropy_case("cross_entropy/single_row", 1, 17, {16}, DType::I64, mean),
      cross_entropy_case("cross_entropy/vocab_above_pow2", 3, 129, {128, 0, 64}, DType::I64, mean),
  };
}

}  // namespace
}  // namespace caption::testing
