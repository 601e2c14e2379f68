// Harness cases: embedding (repeated ids, padding ids, int32 ids, negative padding_idx,
// rank-3 ids), dropout (two rates, an odd size that ends mid Philox block, a generator
// offset that is not zero, eval and p = 0 identities), concat (first, middle and last
// axes, an empty piece, one tensor), slice (negative start, step, empty range),
// index_select (repeats, int32, last and middle axes) and gather (every axis, repeats,
// an index longer than the axis, an index smaller than x on other axes).
//
// Dropout's forward builds a fresh generator on every call, so that the gradient check's
// repeated forwards all draw the same mask.
#include "tests/harness/harness.h"

namespace caption::testing {
namespace {

Tensor ids_tensor(const std::vector<int64_t>& v, const Shape& s, DType t, Device d) {
  return Tensor::from_vector<int64_t>(v, s).to(t).to(d);
}

// With a padding_idx the padding row gets no gradient by definition, although the output
// reads it; the finite differences would see that dependence. So the case zeroes the
// padding row of the weight first (weight * keep_row, keep_row not differentiated): then
// the true gradient of that row is 0 too, and the other rows are checked as usual. That
// the padding row's gradient is exactly zero is checked in indexing_values_test.cpp.
OpCase embedding_case(std::string name, int64_t vocab, int64_t dim, std::vector<int64_t> ids,
                      Shape ids_shape, DType ids_dtype, std::optional<int64_t> padding_idx) {
  OpCase c;
  c.name = std::move(name);
  c.op = OpId::Embedding;
  c.inputs = [=](Generator& g, DType t, Device d) {
    std::vector<Tensor> v{random_tensor({vocab, dim}, g, t, d), ids_tensor(ids, ids_shape, ids_dtype, d)};
    if (padding_idx) {
      // 1 per row, 0 on the padding row (see embedding_case).
      std::vector<double> keep(static_cast<size_t>(vocab), 1.0);
      keep[static_cast<size_t>(*padding_idx < 0 ? *padding_idx + vocab : *padding_idx)] = 0.0;
      v.push_back(Tensor::from_vector<double>(keep, {vocab, 1}).to(t).to(d));
    }
    return v;
  };
  c.forward = [padding_idx](const std::vector<Tensor>& x) {
    const Tensor w = padding_idx ? mul(x[0], x[2]) : x[0];
    return std::vector<Tensor>{embedding(w, x[1], padding_idx)};
  };
  if (padding_idx) c.no_grad_inputs = {2};
  return c;
}

OpCase dropout_case(std::string name, Shape s, double p, DropoutMode mode, uint64_t skip) {
  OpCase c;
  c.name = std::move(name);
  c.op = OpId::Dropout;
  c.inputs = [s](Generator& g, DType t, Device d) { return std::vector<Tensor>{random_tensor(s, g, t, d)}; };
  c.forward = [p, mode, skip](const std::vector<Tensor>& x) {
    Generator gen(1234);
    gen.reserve(skip);  // start the stream at a nonzero counter
    return std::vector<Tensor>{dropout(x[0], p, gen, mode)};
  };
  return c;
}

// Dropout drawing from a device counter (engine/random.h): the generator at `skip`
// attaches a counter holding `counter` on x's device, so the stream starts at counter.
OpCase dropout_counter_case(std::string name, Shape s, double p, uint64_t skip, int64_t counter) {
  OpCase c;
  c.name = std::move(name);
  c.op = OpId::Dropout;
  c.inputs = [s](Generator& g, DType t, Device d) { return std::vector<Tensor>{random_tensor(s, g, t, d)}; };
  c.forward = [p, skip, counter](const std::vector<Tensor>& x) {
    Generator gen(1234);
    gen.reserve(skip);
    gen.attach_device_counter(Tensor::from_vector<int64_t>({counter}, {1}).to(x[0].device()));
    gen.reserve(5);  // a draw after the attachment: the op's base is relative to the origin
    return std::vector<Tensor>{dropout(x[0], p, gen, DropoutMode::Train)};
  };
  return c;
}

OpCase concat_case(std::string name, std::vector<Shape> shapes, int64_t axis,
                   std::vector<int> no_grad = {}) {
  OpCase c;
  c.no_grad_inputs = std::move(no_grad);
  c.name = std::move(name);
  c.op = OpId::Concat;
  c.inputs = [shapes](Generator& g, DType t, Device d) {
    std::vector<Tensor> v;
    for (const Shape& s : shapes) v.push_back(random_tensor(s, g, t, d));
    return v;
  };
  c.forward = [axis](const std::vector<Tensor>& x) { return std::vector<Tensor>{concat(x, axis)}; };
  return c;
}

OpCase slice_case(std::string name, Shape s, int64_t axis, int64_t start, int64_t end, int64_t step) {
  OpCase c;
  c.name = std::move(name);
  c.op = OpId::Slice;
  c.inputs = [s](Generator& g, DType t, Device d) { return std::vector<Tensor>{random_tensor(s, g, t, d)}; };
  c.forward = [=](const std::vector<Tensor>& x) {
    return std::vector<Tensor>{slice(x[0], axis, start, end, step)};
  };
  return c;
}

OpCase index_select_case(std::string name, Shape s, int64_t axis, std::vector<int64_t> index,
                         DType index_dtype) {
  OpCase c;
  c.name = std::move(name);
  c.op = OpId::IndexSelect;
  c.inputs = [=](Generator& g, DType t, Device d) {
    const int64_t k = static_cast<int64_t>(index.size());
    return std::vector<Tensor>{random_tensor(s, g, t, d), ids_tensor(index, {k}, index_dtype, d)};
  };
  c.forward = [axis](const std::vector<Tensor>& x) {
    return std::vector<Tensor>{index_select(x[0], axis, x[1])};
  };
  return c;
}

// The index is drawn at random (repeats are then certain for these sizes).
OpCase gather_case(std::string name, Shape s, int64_t axis, Shape index_shape, DType index_dtype) {
  OpCase c;
  c.name = std::move(name);
  c.op = OpId::Gather;
  c.inputs = [=](Generator& g, DType t, Device d) {
    const int64_t len = s[static_cast<size_t>(axis < 0 ? axis + static_cast<int64_t>(s.size()) : axis)];
    Tensor x = random_tensor(s, g, t, d);
    return std::vector<Tensor>{x, random_ids(index_shape, g, len, index_dtype, d)};
  };
  c.forward = [axis](const std::vector<Tensor>& x) {
    return std::vector<Tensor>{gather(x[0], axis, x[1])};
  };
  return c;
}

CAPTION_OP_CASES {
  const std::optional<int64_t> none;
  return std::vector<OpCase>{
      embedding_case("embedding/repeated_ids", 7, 5, {1, 3, 1, 6, 0, 3}, {2, 3}, DType::I64, none),
      embedding_case("embedding/padding_ids_present", 6, 4, {0, 2, 0, 5, 2, 0, 1}, {7}, DType::I64, 0),
      embedding_case("embedding/int32_ids_negative_padding", 5, 3, {4, 1, 4, 4, 2}, {5}, DType::I32, -1),
      embedding_case("embedding/single_id", 9, 17, {8}, {1}, DType::I64, none),
      embedding_case("embedding/rank3_ids", 4, 2, {0, 1, 2, 3, 3, 2, 1, 0, 0, 0, 3, 1}, {2, 2, 3},
                     DType::I64, 2),
      dropout_case("dropout/half", {5, 7}, 0.5, DropoutMode::Train, 0),
      dropout_counter_case("dropout/device_counter", {3, 11}, 0.3, 17, 1001),
      dropout_case("dropout/odd_size_nonzero_offset", {3, 37}, 0.1, DropoutMode::Train, 5),
      dropout_case("dropout/eval_identity", {4, 3}, 0.5, DropoutMode::Eval, 0),
      dropout_case("dropout/p0_identity", {4, 3}, 0.0, DropoutMode::Train, 0),
      concat_case("concat/first_axis_three", {{2, 3}, {1, 3}, {4, 3}}, 0),
      concat_case("concat/last_axis", {{2, 3, 1}, {2, 3, 4}}, -1),
      concat_case("concat/middle_axis_empty_piece", {{2, 2, 3}, {2, 0, 3}, {2, 5, 3}}, 1),
      concat_case("concat/single_tensor", {{3, 4}}, 1),
      // More parts than one kernel takes (16), of different lengths, one of them empty.
      concat_case("concat/twenty_parts", {{3, 2}, {1, 2}, {4, 2}, {2, 2}, {1, 2}, {3, 2}, {2, 2},
                                          {1, 2}, {0, 2}, {2, 2}, {5, 2}, {1, 2}, {2, 2}, {3, 2},
                                          {1, 2}, {2, 2}, {4, 2}, {1, 2}, {2, 2}, {3, 2}}, 0,
                  {1, 5, 16, 17}),  // gradients not wanted for some parts, in both batches
      concat_case("concat/eighteen_parts_last_axis",
                  {{2, 3, 1}, {2, 3, 2}, {2, 3, 1}, {2, 3, 3}, {2, 3, 1}, {2, 3, 2}, {2, 3, 1},
                   {2, 3, 1}, {2, 3, 2}, {2, 3, 1}, {2, 3, 1}, {2, 3, 4}, {2, 3, 1}, {2, 3, 1},
                   {2, 3, 2}, {2, 3, 1}, {2, 3, 1}, {2, 3, 2}}, -1),
      slice_case("slice/middle_axis", {4, 9, 3}, 1, 2, 7, 1),
      slice_case("slice/negative_start_to_end", {5, 6}, 0, -3, kSliceToEnd, 1),
      slice_case("slice/step3", {3, 10}, 1, 1, 10, 3),
      slice_case("slice/empty_range", {3, 4}, 1, 3, 1, 1),
      index_select_case("index_select/repeats_first_axis", {5, 4}, 0, {4, 0, 4, 2, 4}, DType::I64),
      index_select_case("index_select/last_axis_int32", {3, 2, 7}, -1, {6, 1, 1}, DType::I32),
      index_select_case("index_select/middle_axis_one", {2, 5, 3}, 1, {3}, DType::I64),
      gather_case("gather/axis1", {3, 5}, 1, {3, 4}, DType::I64),
      gather_case("gather/axis0_longer_index", {4, 3}, 0, {6, 3}, DType::I64),
      gather_case("gather/index_smaller_on_other_axes", {4, 5, 3}, 1, {2, 6, 2}, DType::I64),
      gather_case("gather/last_axis_int32", {2, 3, 4}, 2, {2, 3, 5}, DType::I32),
  };
}

}  // namespace
}  // namespace caption::testing
