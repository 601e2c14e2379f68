// Indexing and shaping ops: validation and shapes here, element moves in
// kernels/cpu/indexing.cpp.
//
// Saved for backward: embedding, index_select and gather keep only their index tensor
// (the sizes are in the params); concat, slice and dropout keep nothing (dropout
// regenerates its mask from the (seed, base) in its params). Gather with an index smaller
// than x on a non-gathered axis first narrows x to the index's extent (a view, then a
// contiguous copy), so that the kernels only see [outer, axis, inner] blocks of equal
// outer and inner sizes.
#include "engine/ops/indexing.h"

#include <algorithm>

#include "engine/dispatch.h"
#include "engine/op_node.h"
#include "engine/op_table.h"
#include "kernels/cpu/indexing.h"

namespace caption {

namespace kc = kernels::cpu;

namespace {

// Calls f.template operator()<T>() for any element type (ops that only move elements).
template <typename F>
decltype(auto) dispatch_any(DType dtype, const char* op, F&& f) {
  switch (dtype) {
    case DType::F32: return f.template operator()<float>();
    case DType::F64: return f.template operator()<double>();
    case DType::I32: return f.template operator()<int32_t>();
    case DType::I64: return f.template operator()<int64_t>();
    case DType::BF16: break;  // a storage type of the NHWC ops only
  }
  throw Error(str(op, ": unsupported dtype ", dtype_name(dtype)));
}

std::string position_string(int64_t flat, const Shape& shape) {
  Shape idx(shape.size());
  for (size_t d = shape.size(); d-- > 0;) {
    idx[d] = flat % shape[d];
    flat /= shape[d];
  }
  return shape_string(idx);
}

void check_index_tensor(const Tensor& index, const Tensor& x, const char* op, const char* what) {
  CAPTION_CHECK(index.defined(), op, ": ", what, " is undefined");
  CAPTION_CHECK(index.dtype() == DType::I64 || index.dtype() == DType::I32, op, ": ", what,
                " must be int64 or int32, got ", index.describe());
  CAPTION_CHECK(index.device() == x.device(), op, ": ", what, " ", index.describe(), " and input ",
                x.describe(), " are on different devices");
}

thread_local bool t_device_index_checks = true;

// Refuses the first value of `index` outside [0, size), naming it and its position.
void check_range(const Tensor& index, int64_t size, const char* op, const char* what,
                 const std::string& range_of) {
  if (!t_device_index_checks && !index.device().is_cpu()) return;
  const std::vector<int64_t> v = index.to_vector<int64_t>();
  for (size_t i = 0; i < v.size(); ++i)
    CAPTION_CHECK(v[i] >= 0 && v[i] < size, op, ": ", what, " ", v[i], " at position ",
                  position_string(static_cast<int64_t>(i), index.shape()),
                  " is out of range for ", range_of, " (valid range [0, ", size, "))");
}

// ---- CPU adapters ---------------------------------------------------------------------------

// Forward: in = {weight, ids}, out = {out}.
void embedding_cpu_forward(const OpCall& c) {
  const auto& p = c.get<EmbeddingParams>();
  dispatch_floating(c.in[0].dtype(), "embedding", [&]<typename T>() {
    dispatch_index(c.in[1].dtype(), "embedding", [&]<typename I>() {
      kc::embedding_forward<T, I>(c.in[0].data<T>(), c.in[1].data<I>(), c.out[0].data<T>(),
                                  p.count, p.dim);
    });
  });
}

// Backward: in = {ids, grad_out}, out = {grad_weight, grad_ids (never defined)}.
void embedding_cpu_backward(const OpCall& c) {
  const auto& p = c.get<EmbeddingParams>();
  if (!c.out[0].defined()) return;
  dispatch_floating(c.in[1].dtype(), "embedding backward", [&]<typename T>() {
    dispatch_index(c.in[0].dtype(), "embedding backward", [&]<typename I>() {
      kc::embedding_backward<T, I>(c.in[0].data<I>(), c.in[1].data<T>(), c.out[0].data<T>(),
                                   p.count, p.vocab, p.dim, p.padding_idx);
    });
  });
}

// The first counter of a dropout call's stream: base, plus the device counter if any.
uint64_t dropout_start(const DropoutParams& p, const Tensor* counter) {
  return p.counter ? p.base + static_cast<uint64_t>(counter->data<int64_t>()[0]) : p.base;
}

// Forward: in = {x} or {x, counter}, out = {y}.
void dropout_cpu_forward(const OpCall& c) {
  const auto& p = c.get<DropoutParams>();
  const uint64_t start = dropout_start(p, p.counter ? &c.in[1] : nullptr);
  dispatch_floating(c.in[0].dtype(), "dropout", [&]<typename T>() {
    kc::dropout_forward<T>(c.in[0].data<T>(), c.out[0].data<T>(), p.numel, p.p,
                           static_cast<T>(p.scale), p.seed, start);
  });
}

// Backward: in = {grad_y} or {counter, grad_y}, out = {grad_x} (and nothing for the counter).
void dropout_cpu_backward(const OpCall& c) {
  const auto& p = c.get<DropoutParams>();
  if (!c.out[0].defined()) return;
  const uint64_t start = dropout_start(p, p.counter ? &c.in[0] : nullptr);
  const Tensor& gy = c.in[p.counter ? 1 : 0];
  dispatch_floating(gy.dtype(), "dropout backward", [&]<typename T>() {
    kc::dropout_backward<T>(gy.data<T>(), c.out[0].data<T>(), p.numel, p.p,
                            static_cast<T>(p.scale), p.seed, start);
  });
}

// Forward: in = the tensors, out = {out}.
void concat_cpu_forward(const OpCall& c) {
  const auto& p = c.get<ConcatParams>();
  dispatch_any(c.out[0].dtype(), "concat", [&]<typename T>() {
    std::vector<const T*> inputs;
    for (const Tensor& t : c.in) inputs.push_back(t.data<T>());
    kc::concat_forward<T>(inputs.data(), p.sizes.data(), static_cast<int64_t>(p.sizes.size()),
                          c.out[0].data<T>(), p.outer, p.inner);
  });
}

// Backward: in = {grad_out}, out = one gradient per input.
void concat_cpu_backward(const OpCall& c) {
  const auto& p = c.get<ConcatParams>();
  dispatch_floating(c.in[0].dtype(), "concat backward", [&]<typename T>() {
    std::vector<T*> grads;
    for (const Tensor& t : c.out) grads.push_back(data_or_null<T>(t));
    kc::concat_backward<T>(c.in[0].data<T>(), grads.data(), p.sizes.data(),
                           static_cast<int64_t>(p.sizes.size()), p.outer, p.inner);
  });
}

void slice_cpu_forward(const OpCall& c) {
  const auto& p = c.get<SliceParams>();
  dispatch_any(c.in[0].dtype(), "slice", [&]<typename T>() {
    kc::slice_forward<T>(c.in[0].data<T>(), c.out[0].data<T>(), p.outer, p.in_len, p.out_len,
                         p.inner, p.start, p.step);
  });
}

// Backward: in = {grad_y}, out = {grad_x}.
void slice_cpu_backward(const OpCall& c) {
  const auto& p = c.get<SliceParams>();
  if (!c.out[0].defined()) return;
  dispatch_floating(c.in[0].dtype(), "slice backward", [&]<typename T>() {
    kc::slice_backward<T>(c.in[0].data<T>(), c.out[0].data<T>(), p.outer, p.in_len, p.out_len,
                          p.inner, p.start, p.step);
  });
}

// Forward: in = {x, index}, out = {y}.
void index_select_cpu_forward(const OpCall& c) {
  const auto& p = c.get<IndexParams>();
  dispatch_any(c.in[0].dtype(), "index_select", [&]<typename T>() {
    dispatch_index(c.in[1].dtype(), "index_select", [&]<typename I>() {
      kc::index_select_forward<T, I>(c.in[0].data<T>(), c.in[1].data<I>(), c.out[0].data<T>(),
                                     p.outer, p.in_len, p.count, p.inner);
    });
  });
}

// Backward: in = {index, grad_y}, out = {grad_x, grad_index (never defined)}.
void index_select_cpu_backward(const OpCall& c) {
  const auto& p = c.get<IndexParams>();
  if (!c.out[0].defined()) return;
  dispatch_floating(c.in[1].dtype(), "index_select backward", [&]<typename T>() {
    dispatch_index(c.in[0].dtype(), "index_select backward", [&]<typename I>() {
      kc::index_select_backward<T, I>(c.in[0].data<I>(), c.in[1].data<T>(), c.out[0].data<T>(),
                                      p.outer, p.in_len, p.count, p.inner);
    });
  });
}

// Forward: in = {x, index}, out = {y}.
void gather_cpu_forward(const OpCall& c) {
  const auto& p = c.get<IndexParams>();
  dispatch_any(c.in[0].dtype(), "gather", [&]<typename T>() {
    dispatch_index(c.in[1].dtype(), "gather", [&]<typename I>() {
      kc::gather_forward<T, I>(c.in[0].data<T>(), c.in[1].data<I>(), c.out[0].data<T>(), p.outer,
                               p.in_len, p.count, p.inner);
    });
  });
}

// Backward: in = {index, grad_y}, out = {grad_x, grad_index (never defined)}.
void gather_cpu_backward(const OpCall& c) {
  const auto& p = c.get<IndexParams>();
  if (!c.out[0].defined()) return;
  dispatch_floating(c.in[1].dtype(), "gather backward", [&]<typename T>() {
    dispatch_index(c.in[0].dtype(), "gather backward", [&]<typename I>() {
      kc::gather_backward<T, I>(c.in[0].data<I>(), c.in[1].data<T>(), c.out[0].data<T>(), p.outer,
                                p.in_len, p.count, p.inner);
    });
  });
}

[[maybe_unused]] const bool registered = [] {
  register_kernels(OpId::Embedding, DeviceType::CPU, embedding_cpu_forward, embedding_cpu_backward);
  register_kernels(OpId::Dropout, DeviceType::CPU, dropout_cpu_forward, dropout_cpu_backward);
  register_kernels(OpId::Concat, DeviceType::CPU, concat_cpu_forward, concat_cpu_backward);
  register_kernels(OpId::Slice, DeviceType::CPU, slice_cpu_forward, slice_cpu_backward);
  register_kernels(OpId::IndexSelect, DeviceType::CPU, index_select_cpu_forward,
                   index_select_cpu_backward);
  register_kernels(OpId::Gather, DeviceType::CPU, gather_cpu_forward, gather_cpu_backward);
  return true;
}();

// Products of the sizes before and after `axis`.
int64_t outer_size(const Shape& s, int64_t axis) {
  int64_t n = 1;
  for (int64_t i = 0; i < axis; ++i) n *= s[i];
  return n;
}
int64_t inner_size(const Shape& s, int64_t axis) {
  int64_t n = 1;
  for (size_t i = static_cast<size_t>(axis) + 1; i < s.size(); ++i) n *= s[i];
  return n;
}

}  // namespace

// ---- tensor-level functions ---------------------------------------------------------------

Tensor embedding(const Tensor& weight_in, const Tensor& ids_in, std::optional<int64_t> padding_idx) {
  CAPTION_CHECK(weight_in.dim() == 2 && is_floating(weight_in.dtype()),
                "embedding: weight must be float [V, E], got ", weight_in.describe());
  check_index_tensor(ids_in, weight_in, "embedding", "ids");
  EmbeddingParams p;
  p.vocab = weight_in.shape()[0];
  p.dim = weight_in.shape()[1];
  p.count = ids_in.numel();
  if (padding_idx) {
    const int64_t pi = *padding_idx < 0 ? *padding_idx + p.vocab : *padding_idx;
    CAPTION_CHECK(pi >= 0 && pi < p.vocab, "embedding: padding_idx ", *padding_idx,
                  " is out of range for a weight of ", p.vocab, " rows");
    p.padding_idx = pi;
  }
  const Tensor weight = weight_in.contiguous(), ids = ids_in.contiguous();
  check_range(ids, p.vocab, "embedding", "id",
              str("a vocabulary of ", p.vocab, " rows (weight ", weight.describe(), ")"));
  Shape out_shape = ids.shape();
  out_shape.push_back(p.dim);
  Tensor out = Tensor::empty(out_shape, weight.dtype(), weight.device());
  std::vector<Tensor> in{weight, ids}, outs{out};
  run_forward(OpId::Embedding, weight.device(), OpCall{in, outs, &p});
  record_op(OpId::Embedding, p, in, {ids}, outs);
  return out;
}

Tensor dropout(const Tensor& x_in, double p_drop, Generator& gen, DropoutMode mode) {
  // Written so that NaN fails too; a p just below 1 that rounds to 1.0f is refused as well,
  // since the float comparison would then drop everything.
  CAPTION_CHECK(p_drop >= 0.0 && p_drop < 1.0 && static_cast<float>(p_drop) < 1.0f,
                "dropout: p must be in [0, 1), got ", p_drop);
  if (mode == DropoutMode::Eval || p_drop == 0.0) return x_in;
  CAPTION_CHECK(is_floating(x_in.dtype()), "dropout: input must be float32 or float64, got ",
                x_in.describe());
  const Tensor x = x_in.contiguous();
  DropoutParams p;
  p.numel = x.numel();
  p.p = static_cast<float>(p_drop);
  p.scale = 1.0 / (1.0 - p_drop);
  p.seed = gen.seed();
  p.base = gen.reserve(static_cast<uint64_t>(p.numel));
  std::vector<Tensor> in{x}, saved;
  if (const Tensor& counter = gen.device_counter(); counter.defined() && counter.device() == x.device()) {
    p.counter = true;
    p.base -= gen.counter_origin();
    in.push_back(counter);
    saved.push_back(counter);
  }
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  std::vector<Tensor> outs{y};
  run_forward(OpId::Dropout, x.device(), OpCall{in, outs, &p});
  record_op(OpId::Dropout, p, in, saved, outs);
  return y;
}

Tensor concat(const std::vector<Tensor>& xs_in, int64_t axis) {
  CAPTION_CHECK(!xs_in.empty(), "concat: no tensors given");
  const Tensor& first = xs_in[0];
  CAPTION_CHECK(first.defined() && first.dim() >= 1,
                "concat: tensors must have at least one axis, tensor 0 is ", first.describe());
  const int64_t rank = first.dim();
  const int64_t ax = normalize_axis(axis, rank, "concat");
  ConcatParams p;
  p.outer = outer_size(first.shape(), ax);
  p.inner = inner_size(first.shape(), ax);
  std::vector<Tensor> xs;
  xs.reserve(xs_in.size());
  Shape out_shape = first.shape();
  out_shape[ax] = 0;
  for (size_t k = 0; k < xs_in.size(); ++k) {
    const Tensor& t = xs_in[k];
    CAPTION_CHECK(t.defined(), "concat: tensor ", k, " is undefined");
    CAPTION_CHECK(t.dtype() == first.dtype() && t.device() == first.device(), "concat: tensor ",
                  k, " (", t.describe(), ") differs from tensor 0 (", first.describe(),
                  ") in dtype or device");
    bool same = t.dim() == rank;
    for (int64_t d = 0; same && d < rank; ++d) same = d == ax || t.shape()[d] == first.shape()[d];
    CAPTION_CHECK(same, "concat: tensor ", k, " has shape ", shape_string(t.shape()),
                  " but tensor 0 has ", shape_string(first.shape()), " (only axis ", ax,
                  " may differ)");
    xs.push_back(t.contiguous());
    p.sizes.push_back(t.shape()[ax]);
    out_shape[ax] += t.shape()[ax];
  }
  Tensor out = Tensor::empty(out_shape, first.dtype(), first.device());
  std::vector<Tensor> outs{out};
  run_forward(OpId::Concat, first.device(), OpCall{xs, outs, &p});
  record_op(OpId::Concat, p, xs, {}, outs);
  return out;
}

Tensor slice(const Tensor& x_in, int64_t axis, int64_t start, int64_t end, int64_t step) {
  CAPTION_CHECK(x_in.dim() >= 1, "slice: input must have at least one axis, got ", x_in.describe());
  CAPTION_CHECK(step >= 1, "slice: step must be positive, got ", step);
  const int64_t ax = normalize_axis(axis, x_in.dim(), "slice");
  const int64_t n = x_in.shape()[ax];
  auto clamp = [n](int64_t i) { return std::clamp<int64_t>(i < 0 ? i + n : i, 0, n); };
  SliceParams p;
  p.outer = outer_size(x_in.shape(), ax);
  p.inner = inner_size(x_in.shape(), ax);
  p.in_len = n;
  p.start = clamp(start);
  const int64_t stop = std::max(clamp(end), p.start);
  p.step = step;
  p.out_len = (stop - p.start + step - 1) / step;
  const Tensor x = x_in.contiguous();
  Shape out_shape = x.shape();
  out_shape[ax] = p.out_len;
  Tensor y = Tensor::empty(out_shape, x.dtype(), x.device());
  std::vector<Tensor> in{x}, outs{y};
  run_forward(OpId::Slice, x.device(), OpCall{in, outs, &p});
  record_op(OpId::Slice, p, in, {}, outs);
  return y;
}

Tensor index_select(const Tensor& x_in, int64_t axis, const Tensor& index_in) {
  CAPTION_CHECK(x_in.dim() >= 1, "index_select: input must have at least one axis, got ",
                x_in.describe());
  check_index_tensor(index_in, x_in, "index_select", "index");
  CAPTION_CHECK(index_in.dim() == 1, "index_select: index must be 1-D, got ", index_in.describe());
  const int64_t ax = normalize_axis(axis, x_in.dim(), "index_select");
  const Tensor x = x_in.contiguous(), index = index_in.contiguous();
  IndexParams p;
  p.outer = outer_size(x.shape(), ax);
  p.inner = inner_size(x.shape(), ax);
  p.in_len = x.shape()[ax];
  p.count = index.numel();
  check_range(index, p.in_len, "index_select", "index",
              str("axis ", ax, " of ", x.describe()));
  Shape out_shape = x.shape();
  out_shape[ax] = p.count;
  Tensor y = Tensor::empty(out_shape, x.dtype(), x.device());
  std::vector<Tensor> in{x, index}, outs{y};
  run_forward(OpId::IndexSelect, x.device(), OpCall{in, outs, &p});
  record_op(OpId::IndexSelect, p, in, {index}, outs);
  return y;
}

Tensor gather(const Tensor& x_in, int64_t axis, const Tensor& index_in) {
  CAPTION_CHECK(x_in.dim() >= 1, "gather: input must have at least one axis, got ",
                x_in.describe());
  check_index_tensor(index_in, x_in, "gather", "index");
  CAPTION_CHECK(index_in.dim() == x_in.dim(), "gather: index ", index_in.describe(),
                " must have the rank of the input ", x_in.describe());
  const int64_t ax = normalize_axis(axis, x_in.dim(), "gather");
  Tensor x_view = x_in;
  for (int64_t d = 0; d < x_in.dim(); ++d) {
    if (d == ax) continue;
    CAPTION_CHECK(index_in.shape()[d] <= x_in.shape()[d], "gather: index ", index_in.describe(),
                  " is larger than the input ", x_in.describe(), " along axis ", d);
    if (index_in.shape()[d] < x_in.shape()[d]) x_view = x_view.narrow(d, 0, index_in.shape()[d]);
  }
  const Tensor x = x_view.contiguous(), index = index_in.contiguous();
  IndexParams p;
  p.outer = outer_size(index.shape(), ax);
  p.inner = inner_size(index.shape(), ax);
  p.in_len = x.shape()[ax];
  p.count = index.shape()[ax];
  check_range(index, p.in_len, "gather", "index", str("axis ", ax, " of ", x_in.describe()));
  Tensor y = Tensor::empty(index.shape(), x.dtype(), x.device());
  std::vector<Tensor> in{x, index}, outs{y};
  run_forward(OpId::Gather, x.device(), OpCall{in, outs, &p});
  record_op(OpId::Gather, p, in, {index}, outs);
  return y;
}

bool device_index_checks() { return t_device_index_checks; }

DeviceIndexChecksOff::DeviceIndexChecksOff() : previous_(t_device_index_checks) {
  t_device_index_checks = false;
}
DeviceIndexChecksOff::~DeviceIndexChecksOff() { t_device_index_checks = previous_; }

}  // namespace caption
