// CUDA adapters and table registration of batch_norm2d: the same BatchNorm2dParams,
// kernel call contract and saved tensors as engine/ops/norm.cpp (forward in = {x, weight,
// bias, running_mean, running_var}, out = {y, save_mean, save_invstd}; backward in =
// {x, weight, save_mean, save_invstd, grad_y}, out = {grad_x, grad_weight, grad_bias}),
// arithmetic in kernels/cuda/norm.cu. float32 only; the per-channel coefficient
// workspace comes from the device's caching allocator.
#include "engine/cuda/adapter.h"
#include "engine/cuda/context.h"
#include "engine/op_table.h"
#include "engine/ops/norm.h"
#include "kernels/cuda/norm.h"

namespace caption {

namespace {

using cuda::require_f32;

namespace kcu = kernels::cuda;

float* f32_or_null(const Tensor& t) { return t.defined() ? t.data<float>() : nullptr; }

void require_f32_if_defined(const Tensor& t, const char* op) {
  if (t.defined()) require_f32(t, op);
}

void batch_norm2d_cuda_forward(const OpCall& c) {
  const auto& p = c.get<BatchNorm2dParams>();
  for (const Tensor& t : c.in) require_f32_if_defined(t, "batch_norm2d");
  const Device dev = c.in[0].device();
  Tensor ws = Tensor::empty({kcu::batch_norm2d_workspace_elems(p)}, DType::F32, dev);
  kcu::batch_norm2d_forward(p, c.in[0].data<float>(), f32_or_null(c.in[1]), f32_or_null(c.in[2]),
                            f32_or_null(c.in[3]), f32_or_null(c.in[4]), c.out[0].data<float>(),
                            c.out[1].data<float>(), c.out[2].data<float>(), ws.data<float>(),
                            cuda::stream(dev));
}

void batch_norm2d_cuda_backward(const OpCall& c) {
  const auto& p = c.get<BatchNorm2dParams>();
  for (const Tensor& t : c.in) require_f32_if_defined(t, "batch_norm2d backward");
  const Device dev = c.in[0].device();
  Tensor ws = Tensor::empty({kcu::batch_norm2d_workspace_elems(p)}, DType::F32, dev);
  auto out = [&](size_t k) { return k < c.out.size() ? f32_or_null(c.out[k]) : nullptr; };
  kcu::batch_norm2d_backward(p, c.in[0].data<float>(), f32_or_null(c.in[1]),
                             c.in[2].data<float>(), c.in[3].data<float>(), c.in[4].data<float>(),
                             out(0), out(1), out(2), ws.data<float>(), cuda::stream(dev));
}

[[maybe_unused]] const bool registered = [] {
  register_kernels(OpId::BatchNorm2d, DeviceType::CUDA, batch_norm2d_cuda_forward,
                   batch_norm2d_cuda_backward);
  return true;
}();

}  // namespace

}  // namespace caption
