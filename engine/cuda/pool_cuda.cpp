// CUDA adapters and table registration of max_pool2d and adaptive_avg_pool2d: the same
// params, saved tensors and OpCall contract as engine/ops/pool.cpp (max pooling saves
// only its int64 indices; adaptive pooling saves nothing), arithmetic in
// kernels/cuda/pool.cu. float32 only.
#include "engine/cuda/adapter.h"
#include "engine/cuda/context.h"
#include "engine/op_table.h"
#include "engine/ops/pool.h"
#include "kernels/cuda/pool.h"

namespace caption {

namespace {

using cuda::require_f32;

namespace kcu = kernels::cuda;

// Forward: in = {x}, out = {y, indices (undefined when no gradient will be needed)}.
void max_pool2d_cuda_forward(const OpCall& c) {
  require_f32(c.in[0], "max_pool2d");
  const bool with_indices = c.out.size() > 1 && c.out[1].defined();
  kcu::max_pool2d_forward(c.get<MaxPool2dParams>(), c.in[0].data<float>(), c.out[0].data<float>(),
                          with_indices ? c.out[1].data<int64_t>() : nullptr,
                          cuda::stream(c.in[0].device()));
}

// Backward: in = {indices, grad_y}, out = {grad_x}.
void max_pool2d_cuda_backward(const OpCall& c) {
  require_f32(c.in[1], "max_pool2d backward");
  if (!c.out[0].defined()) return;
  kcu::max_pool2d_backward(c.get<MaxPool2dParams>(), c.in[0].data<int64_t>(),
                           c.in[1].data<float>(), c.out[0].data<float>(),
                           cuda::stream(c.in[1].device()));
}

void adaptive_avg_pool2d_cuda_forward(const OpCall& c) {
  require_f32(c.in[0], "adaptive_avg_pool2d");
  kcu::adaptive_avg_pool2d_forward(c.get<AdaptiveAvgPool2dParams>(), c.in[0].data<float>(),
                                   c.out[0].data<float>(), cuda::stream(c.in[0].device()));
}

// Backward: in = {grad_y}, out = {grad_x}.
void adaptive_avg_pool2d_cuda_backward(const OpCall& c) {
  require_f32(c.in[0], "adaptive_avg_pool2d backward");
  if (!c.out[0].defined()) return;
  kcu::adaptive_avg_pool2d_backward(c.get<AdaptiveAvgPool2dParams>(), c.in[0].data<float>(),
                                    c.out[0].data<float>(), cuda::stream(c.in[0].device()));
}

[[maybe_unused]] const bool registered = [] {
  register_kernels(OpId::MaxPool2d, DeviceType::CUDA, max_pool2d_cuda_forward,
                   max_pool2d_cuda_backward);
  register_kernels(OpId::AdaptiveAvgPool2d, DeviceType::CUDA, adaptive_avg_pool2d_cuda_forward,
                   adaptive_avg_pool2d_cuda_backward);
  return true;
}();

}  // namespace

}  // namespace caption
