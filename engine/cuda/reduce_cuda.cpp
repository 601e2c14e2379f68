// CUDA adapters and table registration of sum and mean: the same ReduceParams
// ([outer, reduce, inner] with a scale) as the CPU side (engine/ops/reduce.cpp),
// arithmetic in kernels/cuda/reduce.cu. float32 only.
#include "engine/cuda/adapter.h"
#include "engine/cuda/context.h"
#include "engine/op_table.h"
#include "engine/ops/reduce.h"
#include "kernels/cuda/reduce.h"

namespace caption {

namespace {

using cuda::require_f32;

void reduce_cuda_forward(const OpCall& c) {
  const auto& p = c.get<ReduceParams>();
  require_f32(c.in[0], "sum");
  kernels::cuda::reduce_sum(c.in[0].data<float>(), c.out[0].data<float>(), p.outer, p.reduce,
                            p.inner, static_cast<float>(p.scale), cuda::stream(c.in[0].device()));
}

// Backward: in = {grad_out}, out = {grad_x}.
void reduce_cuda_backward(const OpCall& c) {
  const auto& p = c.get<ReduceParams>();
  require_f32(c.in[0], "sum backward");
  if (!c.out[0].defined()) return;
  kernels::cuda::reduce_sum_backward(c.in[0].data<float>(), c.out[0].data<float>(), p.outer,
                                     p.reduce, p.inner, static_cast<float>(p.scale),
                                     cuda::stream(c.in[0].device()));
}

// in = {log_probs, base}, out = {indices, log_probs, scores}.
void top_extensions_cuda_forward(const OpCall& c) {
  const auto& p = c.get<TopExtensionsParams>();
  require_f32(c.in[0], "top_extensions");
  kernels::cuda::top_extensions(c.in[0].data<float>(), c.in[1].data<double>(), p.hyps, p.vocab,
                                p.take, c.out[0].data<int64_t>(), c.out[1].data<float>(),
                                c.out[2].data<double>(), cuda::stream(c.in[0].device()));
}

void max_last_cuda_forward(const OpCall& c) {
  const auto& p = c.get<MaxLastParams>();
  require_f32(c.in[0], "max_last");
  kernels::cuda::max_last(c.in[0].data<float>(), c.out[0].data<float>(), c.out[1].data<int64_t>(),
                          p.rows, p.cols, cuda::stream(c.in[0].device()));
}

[[maybe_unused]] const bool registered = [] {
  register_kernels(OpId::MaxLast, DeviceType::CUDA, max_last_cuda_forward, nullptr);
  register_kernels(OpId::TopExtensions, DeviceType::CUDA, top_extensions_cuda_forward, nullptr);
  register_kernels(OpId::Sum, DeviceType::CUDA, reduce_cuda_forward, reduce_cuda_backward);
  register_kernels(OpId::Mean, DeviceType::CUDA, reduce_cuda_forward, reduce_cuda_backward);
  return true;
}();

}  // namespace

}  // namespace caption
