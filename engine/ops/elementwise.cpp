// Elementwise ops: tensor-level functions, their CPU adapters and table registration.
#include "engine/ops/elementwise.h"

#include "engine/dispatch.h"
#include "engine/op_node.h"
#include "engine/op_table.h"
#include "kernels/cpu/nhwc.h"

namespace caption {

namespace kc = kernels::cpu;

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* what) {
  const size_t rank = std::max(a.size(), b.size());
  Shape out(rank);
  for (size_t i = 0; i < rank; ++i) {
    const int64_t da = i < rank - a.size() ? 1 : a[i - (rank - a.size())];
    const int64_t db = i < rank - b.size() ? 1 : b[i - (rank - b.size())];
    CAPTION_CHECK(da == db || da == 1 || db == 1, what, ": shapes ", shape_string(a), " and ",
                  shape_string(b), " do not broadcast");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

namespace {

kc::BroadcastLayout make_layout(const Shape& a, const Shape& b, const Shape& out) {
  CAPTION_CHECK(out.size() <= static_cast<size_t>(kc::kMaxRank), "elementwise op: rank ",
                out.size(), " exceeds ", kc::kMaxRank);
  kc::BroadcastLayout l;
  l.rank = static_cast<int>(out.size());
  const Shape sa = contiguous_strides(a), sb = contiguous_strides(b);
  for (int i = 0; i < l.rank; ++i) {
    l.shape[i] = out[i];
    const int ia = i - (l.rank - static_cast<int>(a.size()));
    const int ib = i - (l.rank - static_cast<int>(b.size()));
    l.a_stride[i] = ia >= 0 && a[ia] != 1 ? sa[ia] : 0;
    l.b_stride[i] = ib >= 0 && b[ib] != 1 ? sb[ib] : 0;
  }
  return l;
}

void binary_cpu_forward(const OpCall& c) {
  const auto& p = c.get<BinaryParams>();
  if (c.in[0].dtype() == DType::BF16) {  // add of equal shapes only (binary() checks)
    kc::add_bf16(c.in[0].data<uint16_t>(), c.in[1].data<uint16_t>(), c.out[0].data<uint16_t>(),
                 c.out[0].numel());
    return;
  }
  const kc::BroadcastLayout l = make_layout(p.a_shape, p.b_shape, c.out[0].shape());
  dispatch_floating(c.in[0].dtype(), "binary op", [&]<typename T>() {
    kc::binary_forward<T>(p.op, c.in[0].data<T>(), c.in[1].data<T>(), c.out[0].data<T>(), l);
  });
}

// Backward: in = {a, b, grad_out}, out = {grad_a, grad_b}.
void binary_cpu_backward(const OpCall& c) {
  const auto& p = c.get<BinaryParams>();
  const Tensor& g = c.in[2];
  if (g.dtype() == DType::BF16) {  // add of equal shapes: both gradients are g
    for (const Tensor& out : c.out)
      if (out.defined()) {
        Tensor dst = out;
        strided_copy(dst, g);
      }
    return;
  }
  const kc::BroadcastLayout l = make_layout(p.a_shape, p.b_shape, g.shape());
  dispatch_floating(g.dtype(), "binary op backward", [&]<typename T>() {
    kc::binary_backward<T>(p.op, data_or_null<T>(c.in[0]), data_or_null<T>(c.in[1]),
                           g.data<T>(), data_or_null<T>(c.out[0]), shape_numel(p.a_shape),
                           data_or_null<T>(c.out[1]), shape_numel(p.b_shape), l);
  });
}

void unary_cpu_forward(const OpCall& c) {
  dispatch_floating(c.in[0].dtype(), "activation", [&]<typename T>() {
    kc::unary_forward<T>(c.get<UnaryParams>().op, c.in[0].data<T>(), c.out[0].data<T>(),
                         c.in[0].numel());
  });
}

// Backward: in = {y, grad_y}, out = {grad_x}.
void unary_cpu_backward(const OpCall& c) {
  dispatch_floating(c.in[0].dtype(), "activation backward", [&]<typename T>() {
    kc::unary_backward<T>(c.get<UnaryParams>().op, c.in[0].data<T>(), c.in[1].data<T>(),
                          c.out[0].data<T>(), c.in[0].numel());
  });
}

// Copy honours the strides of both its input and its output (the one kernel that does).
void copy_cpu(const OpCall& c) {
  const Tensor& src = c.in[0];
  const Tensor& dst = c.out[0];
  if (dst.numel() == 0) return;
  CAPTION_CHECK(src.dim() <= kc::kMaxRank, "copy: rank ", src.dim(), " exceeds ", kc::kMaxRank);
  kc::strided_copy(dst.raw_data(), dst.strides().data(), src.raw_data(), src.strides().data(),
                   src.shape().data(), static_cast<int>(src.dim()),
                   static_cast<int>(dtype_size(src.dtype())));
}

[[maybe_unused]] const bool registered = [] {
  for (OpId op : {OpId::Add, OpId::Sub, OpId::Mul, OpId::Div})
    register_kernels(op, DeviceType::CPU, binary_cpu_forward, binary_cpu_backward);
  for (OpId op : {OpId::Relu, OpId::Tanh, OpId::Sigmoid})
    register_kernels(op, DeviceType::CPU, unary_cpu_forward, unary_cpu_backward);
  register_kernels(OpId::Copy, DeviceType::CPU, copy_cpu, copy_cpu);
  return true;
}();

OpId binary_op_id(kc::BinaryOp op) {
  switch (op) {
    case kc::BinaryOp::Add: return OpId::Add;
    case kc::BinaryOp::Sub: return OpId::Sub;
    case kc::BinaryOp::Mul: return OpId::Mul;
    case kc::BinaryOp::Div: return OpId::Div;
  }
  return OpId::Add;
}

void check_same_device_dtype(const Tensor& a, const Tensor& b, std::string_view what) {
  CAPTION_CHECK(a.device() == b.device(), what, ": operands on different devices (",
                a.describe(), ", ", b.describe(), ")");
  CAPTION_CHECK(a.dtype() == b.dtype(), what, ": operands of different dtypes (", a.describe(),
                ", ", b.describe(), ")");
}

Tensor binary(kc::BinaryOp op, const Tensor& a_in, const Tensor& b_in) {
  const OpId id = binary_op_id(op);
  check_same_device_dtype(a_in, b_in, op_name(id));
  // bfloat16 (NHWC activations and their gradients, which autograd sums where an
  // activation feeds two layers): addition of equal shapes, float32 sum, one rounding.
  CAPTION_CHECK(a_in.dtype() != DType::BF16 || (op == kc::BinaryOp::Add && a_in.shape() == b_in.shape()),
                op_name(id), ": bfloat16 operands support only add of equal shapes, got ",
                a_in.describe(), " and ", b_in.describe());
  const Tensor a = a_in.contiguous(), b = b_in.contiguous();
  BinaryParams p{op, a.shape(), b.shape()};
  Tensor out = Tensor::empty(broadcast_shapes(a.shape(), b.shape(), op_name(id).data()),
                             a.dtype(), a.device());
  std::vector<Tensor> in{a, b}, outs{out};
  run_forward(id, a.device(), OpCall{in, outs, &p});
  // Add and Sub need no operand values in backward; save them only for Mul and Div.
  const bool needs_values = op == kc::BinaryOp::Mul || op == kc::BinaryOp::Div;
  record_op(id, p, in, needs_values ? in : std::vector<Tensor>{Tensor(), Tensor()}, outs);
  return out;
}

Tensor unary(kc::UnaryOp op, OpId id, const Tensor& x_in) {
  const Tensor x = x_in.contiguous();
  UnaryParams p{op};
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  std::vector<Tensor> in{x}, outs{y};
  run_forward(id, x.device(), OpCall{in, outs, &p});
  record_op(id, p, in, outs, outs);
  return y;
}

Tensor constant_like(const Tensor& a, double s) { return Tensor::full({}, s, a.dtype(), a.device()); }

}  // namespace

Tensor add(const Tensor& a, const Tensor& b) { return binary(kc::BinaryOp::Add, a, b); }
Tensor sub(const Tensor& a, const Tensor& b) { return binary(kc::BinaryOp::Sub, a, b); }
Tensor mul(const Tensor& a, const Tensor& b) { return binary(kc::BinaryOp::Mul, a, b); }
Tensor div(const Tensor& a, const Tensor& b) { return binary(kc::BinaryOp::Div, a, b); }
Tensor mul(const Tensor& a, double s) { return mul(a, constant_like(a, s)); }
Tensor add(const Tensor& a, double s) { return add(a, constant_like(a, s)); }
Tensor relu(const Tensor& x) { return unary(kc::UnaryOp::Relu, OpId::Relu, x); }
Tensor tanh(const Tensor& x) { return unary(kc::UnaryOp::Tanh, OpId::Tanh, x); }
Tensor sigmoid(const Tensor& x) { return unary(kc::UnaryOp::Sigmoid, OpId::Sigmoid, x); }

void add_into(Tensor& dst, const Tensor& src_in) {
  CAPTION_CHECK(dst.shape() == src_in.shape(), "add_into: ", src_in.describe(),
                " does not match ", dst.describe());
  CAPTION_ASSERT(dst.is_contiguous());
  const Tensor src = src_in.contiguous();
  // dst = dst + src through the Add kernel (it allows the output to alias an input).
  BinaryParams p{kc::BinaryOp::Add, dst.shape(), dst.shape()};
  std::vector<Tensor> in{dst.detach(), src.detach()}, outs{dst.detach()};
  run_forward(OpId::Add, dst.device(), OpCall{in, outs, &p});
}

void scale_(Tensor& x, double s) {
  CAPTION_ASSERT(x.is_contiguous());
  BinaryParams p{kc::BinaryOp::Mul, x.shape(), {}};
  Tensor k = Tensor::full({}, s, x.dtype(), x.device());
  std::vector<Tensor> in{x.detach(), k}, outs{x.detach()};
  run_forward(OpId::Mul, x.device(), OpCall{in, outs, &p});
}

void strided_copy(Tensor& dst, const Tensor& src) {
  CAPTION_ASSERT(dst.device() == src.device() && dst.shape() == src.shape() &&
                 dst.dtype() == src.dtype());
  std::vector<Tensor> in{src.detach()}, outs{dst.detach()};
  run_forward(OpId::Copy, dst.device(), OpCall{in, outs, nullptr});
}

}  // namespace caption
