// CUDA adapters and table registration of softmax, log-softmax and cross-entropy: the
// same SoftmaxParams / CrossEntropyParams and OpCall contract as engine/ops/softmax.cpp,
// arithmetic in kernels/cuda/softmax.cu. float32 only; targets int32 or int64.
//
// Cross-entropy saves the same per-row log-sum-exp [N] the CPU does (its second forward
// output); the per-row loss terms summed into the scalar live in a temporary [N] buffer
// from the device's caching allocator. The upstream gradient of the loss stays on the
// device: the backward kernel reads it there (no host round trip).
#include "engine/cuda/adapter.h"
#include "engine/cuda/context.h"
#include "engine/dispatch.h"
#include "engine/op_table.h"
#include "engine/ops/softmax.h"
#include "kernels/cuda/softmax.h"

namespace caption {

namespace {

using cuda::require_f32;

namespace kcu = kernels::cuda;

kcu::SoftmaxKind kind_of(OpId op) {
  return op == OpId::Softmax ? kcu::SoftmaxKind::Softmax : kcu::SoftmaxKind::LogSoftmax;
}

// Forward: in = {x, mask (int32) or undefined}, out = {y}.
void softmax_cuda_forward(OpId op, const OpCall& c) {
  const auto& p = c.get<SoftmaxParams>();
  require_f32(c.in[0], op_name(op).data());
  const bool masked = c.in.size() > 1 && c.in[1].defined();
  kcu::softmax_forward(kind_of(op), c.in[0].data<float>(),
                       masked ? c.in[1].data<int32_t>() : nullptr, p.mask_numel,
                       c.out[0].data<float>(), p.outer, p.dim, p.inner,
                       cuda::stream(c.in[0].device()));
}

// Backward: in = {y, grad_y}, out = {grad_x, grad_mask (never defined)}.
void softmax_cuda_backward(OpId op, const OpCall& c) {
  const auto& p = c.get<SoftmaxParams>();
  if (!c.out[0].defined()) return;
  require_f32(c.in[0], op_name(op).data());
  kcu::softmax_backward(kind_of(op), c.in[0].data<float>(), c.in[1].data<float>(),
                        c.out[0].data<float>(), p.outer, p.dim, p.inner,
                        cuda::stream(c.in[0].device()));
}

// Forward: in = {logits [N, V], targets [N]}, out = {loss [], lse [N]}.
void cross_entropy_cuda_forward(const OpCall& c) {
  const auto& p = c.get<CrossEntropyParams>();
  require_f32(c.in[0], "cross_entropy");
  const Device dev = c.in[0].device();
  Tensor row_loss = Tensor::empty({p.rows}, DType::F32, dev);  // [N] scratch
  dispatch_index(c.in[1].dtype(), "cross_entropy", [&]<typename I>() {
    kcu::cross_entropy_forward<I>(c.in[0].data<float>(), c.in[1].data<I>(),
                                  c.out[0].data<float>(), c.out[1].data<float>(),
                                  p.rows > 0 ? row_loss.data<float>() : nullptr, p.rows,
                                  p.classes, p.ignore_index, static_cast<float>(p.scale),
                                  cuda::stream(dev));
  });
}

// Backward: in = {logits, targets, lse, grad_loss}, out = {grad_logits, grad_targets
// (never defined)}.
void cross_entropy_cuda_backward(const OpCall& c) {
  const auto& p = c.get<CrossEntropyParams>();
  if (!c.out[0].defined()) return;
  require_f32(c.in[0], "cross_entropy backward");
  dispatch_index(c.in[1].dtype(), "cross_entropy backward", [&]<typename I>() {
    kcu::cross_entropy_backward<I>(c.in[0].data<float>(), c.in[1].data<I>(),
                                   c.in[2].data<float>(), c.in[3].data<float>(),
                                   static_cast<float>(p.scale), c.out[0].data<float>(), p.rows,
                                   p.classes, p.ignore_index, cuda::stream(c.in[0].device()));
  });
}

[[maybe_unused]] const bool registered = [] {
  register_kernels(
      OpId::Softmax, DeviceType::CUDA,
      [](const OpCall& c) { softmax_cuda_forward(OpId::Softmax, c); },
      [](const OpCall& c) { softmax_cuda_backward(OpId::Softmax, c); });
  register_kernels(
      OpId::LogSoftmax, DeviceType::CUDA,
      [](const OpCall& c) { softmax_cuda_forward(OpId::LogSoftmax, c); },
      [](const OpCall& c) { softmax_cuda_backward(OpId::LogSoftmax, c); });
  register_kernels(OpId::CrossEntropy, DeviceType::CUDA, cross_entropy_cuda_forward,
                   cross_entropy_cuda_backward);
  return true;
}();

}  // namespace

}  // namespace caption
