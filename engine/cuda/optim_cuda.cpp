// CUDA adapters and table registration of the optimiser ops (sgd_step, adam_step,
// sum_of_squares, scale, clip_coefficient): the same scalar structs and OpCall contract as
// engine/ops/optim.cpp (in-place tensors are outputs), arithmetic in
// kernels/cuda/optim.cu. float32 buffers only; sum_of_squares writes its float64 total
// on the device (no host round trip) from partial sums in a temporary buffer of the
// device's caching allocator. None of these ops has a backward.
#include "engine/cuda/adapter.h"
#include "engine/cuda/context.h"
#include "engine/op_table.h"
#include "engine/ops/optim.h"
#include "kernels/cuda/optim.h"

namespace caption {

namespace {

using cuda::require_f32;

namespace kcu = kernels::cuda;

// The per-step scalars on the device (engine/ops/optim.h), or null.
const double* dynamic_of(const OpCall& c, size_t at) {
  return c.in.size() > at ? c.in[at].data<double>() : nullptr;
}

// in = {grad} or {grad, dynamic}, out = {param, momentum_buf (undefined if momentum 0)}.
void sgd_cuda(const OpCall& c) {
  const auto& p = c.get<SgdStepParams>();
  const Tensor& param = c.out[0];
  require_f32(param, "sgd_step");
  require_f32(c.in[0], "sgd_step");
  const bool has_buf = c.out.size() > 1 && c.out[1].defined();
  if (has_buf) require_f32(c.out[1], "sgd_step");
  kcu::sgd_step(param.data<float>(), c.in[0].data<float>(),
                has_buf ? c.out[1].data<float>() : nullptr, param.numel(), p, dynamic_of(c, 1),
                cuda::stream(param.device()));
}

// in = {grad} or {grad, dynamic}, out = {param, exp_avg, exp_avg_sq}.
void adam_cuda(const OpCall& c) {
  const auto& p = c.get<AdamStepParams>();
  const Tensor& param = c.out[0];
  for (const Tensor& t : c.out) require_f32(t, "adam_step");
  require_f32(c.in[0], "adam_step");
  kcu::adam_step(param.data<float>(), c.in[0].data<float>(), c.out[1].data<float>(),
                 c.out[2].data<float>(), param.numel(), p, dynamic_of(c, 1),
                 cuda::stream(param.device()));
}

// in = {x}, out = {total: float64 []}.
void sum_of_squares_cuda(const OpCall& c) {
  const Tensor& x = c.in[0];
  require_f32(x, "sum_of_squares");
  const Device dev = x.device();
  const int64_t n = x.numel();
  Tensor partials = Tensor::empty({kcu::sum_of_squares_partials(n)}, DType::F64, dev);
  kcu::sum_of_squares(x.data<float>(), n, n > 0 ? partials.data<double>() : nullptr,
                      c.out[0].data<double>(), cuda::stream(dev));
}

// in = {} or {factor}, out = {x}.
void scale_cuda(const OpCall& c) {
  const Tensor& x = c.out[0];
  require_f32(x, "scale");
  kcu::scale(x.data<float>(), x.numel(), c.get<ScaleParams>().factor, dynamic_of(c, 0),
             cuda::stream(x.device()));
}

// in = {totals [K] float64}, out = {[2] float64}; params.factor is max_norm.
void clip_coefficient_cuda(const OpCall& c) {
  kcu::clip_coefficient(c.in[0].data<double>(), c.in[0].numel(), c.get<ScaleParams>().factor,
                        c.out[0].data<double>(), cuda::stream(c.out[0].device()));
}

[[maybe_unused]] const bool registered = [] {
  register_kernels(OpId::SgdStep, DeviceType::CUDA, sgd_cuda, nullptr);
  register_kernels(OpId::AdamStep, DeviceType::CUDA, adam_cuda, nullptr);
  register_kernels(OpId::SumOfSquares, DeviceType::CUDA, sum_of_squares_cuda, nullptr);
  register_kernels(OpId::Scale, DeviceType::CUDA, scale_cuda, nullptr);
  register_kernels(OpId::ClipCoefficient, DeviceType::CUDA, clip_coefficient_cuda, nullptr);
  return true;
}();

}  // namespace

}  // namespace caption
