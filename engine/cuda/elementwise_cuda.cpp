// CUDA adapters and table registration of the elementwise ops (add, sub, mul, div,
// relu, tanh, sigmoid, copy): the same params and OpCall contract as the CPU side
// (engine/ops/elementwise.cpp), arithmetic in kernels/cuda/elementwise.cu, every launch
// on the device's stream. Arithmetic is float32, and bfloat16 for add of equal shapes (the
// gradients of NHWC activations); Copy moves elements of any dtype, since
// Tensor::contiguous() and strided copy_ go through it.
#include <algorithm>

#include "engine/cuda/adapter.h"
#include "engine/cuda/context.h"
#include "engine/op_table.h"
#include "engine/ops/elementwise.h"
#include "kernels/broadcast.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/nhwc.h"

namespace caption {

namespace {

using cuda::require_f32;

namespace kcu = kernels::cuda;

float* f32_or_null(const Tensor& t) { return t.defined() ? t.data<float>() : nullptr; }

kernels::BroadcastLayout layout_of(const Shape& a, const Shape& b, const Shape& out) {
  CAPTION_CHECK(out.size() <= static_cast<size_t>(kernels::kMaxRank), "elementwise op: rank ",
                out.size(), " exceeds ", kernels::kMaxRank);
  return kernels::make_broadcast_layout(a.data(), static_cast<int>(a.size()), b.data(),
                                        static_cast<int>(b.size()), out.data(),
                                        static_cast<int>(out.size()));
}

void binary_cuda_forward(const OpCall& c) {
  const auto& p = c.get<BinaryParams>();
  if (c.in[0].dtype() == DType::BF16) {  // add of equal shapes only (binary() checks)
    kcu::add_bf16(c.in[0].data<uint16_t>(), c.in[1].data<uint16_t>(), c.out[0].data<uint16_t>(),
                  c.out[0].numel(), cuda::stream(c.out[0].device()));
    return;
  }
  require_f32(c.in[0], "binary op");
  require_f32(c.in[1], "binary op");
  const Tensor& out = c.out[0];
  kcu::binary_forward(p.op, c.in[0].data<float>(), c.in[1].data<float>(), out.data<float>(),
                      layout_of(p.a_shape, p.b_shape, out.shape()), cuda::stream(out.device()));
}

// Backward: in = {a, b, grad_out} (a and b undefined for add and sub), out = {grad_a,
// grad_b}.
void binary_cuda_backward(const OpCall& c) {
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
  require_f32(g, "binary op backward");
  kcu::binary_backward(p.op, f32_or_null(c.in[0]), f32_or_null(c.in[1]), g.data<float>(),
                       f32_or_null(c.out[0]), shape_numel(p.a_shape), f32_or_null(c.out[1]),
                       shape_numel(p.b_shape), layout_of(p.a_shape, p.b_shape, g.shape()),
                       cuda::stream(g.device()));
}

void unary_cuda_forward(const OpCall& c) {
  require_f32(c.in[0], "activation");
  kcu::unary_forward(c.get<UnaryParams>().op, c.in[0].data<float>(), c.out[0].data<float>(),
                     c.in[0].numel(), cuda::stream(c.in[0].device()));
}

// Backward: in = {y, grad_y}, out = {grad_x}.
void unary_cuda_backward(const OpCall& c) {
  require_f32(c.in[0], "activation backward");
  if (!c.out[0].defined()) return;
  kcu::unary_backward(c.get<UnaryParams>().op, c.in[0].data<float>(), c.in[1].data<float>(),
                      c.out[0].data<float>(), c.in[0].numel(), cuda::stream(c.in[0].device()));
}

// Copy honours the strides of both its input and its output.
void copy_cuda(const OpCall& c) {
  const Tensor& src = c.in[0];
  const Tensor& dst = c.out[0];
  if (!dst.defined() || dst.numel() == 0) return;
  CAPTION_CHECK(src.dim() <= kernels::kMaxRank, "copy: rank ", src.dim(), " exceeds ",
                kernels::kMaxRank);
  CAPTION_ASSERT(src.shape() == dst.shape() && src.dtype() == dst.dtype());
  kcu::strided_copy(dst.raw_data(), dst.strides().data(), src.raw_data(), src.strides().data(),
                    src.shape().data(), static_cast<int>(src.dim()),
                    static_cast<int>(dtype_size(src.dtype())), cuda::stream(dst.device()));
}

[[maybe_unused]] const bool registered = [] {
  for (OpId op : {OpId::Add, OpId::Sub, OpId::Mul, OpId::Div})
    register_kernels(op, DeviceType::CUDA, binary_cuda_forward, binary_cuda_backward);
  for (OpId op : {OpId::Relu, OpId::Tanh, OpId::Sigmoid})
    register_kernels(op, DeviceType::CUDA, unary_cuda_forward, unary_cuda_backward);
  register_kernels(OpId::Copy, DeviceType::CUDA, copy_cuda, copy_cuda);
  return true;
}();

}  // namespace

}  // namespace caption
