// CUDA adapters and table registration of the fused LSTM cell: the same LstmCellParams,
// saved tensors ({x, h, c, w_ih, w_hh, gates, c'}) and OpCall contract as
// engine/ops/lstm.cpp, arithmetic in kernels/cuda/lstm.cu. float32 only. The backward's
// dgates workspace [B, 4H] comes from the device's caching allocator.
#include "engine/cuda/adapter.h"
#include "engine/cuda/blas_handle.h"
#include "engine/cuda/context.h"
#include "engine/cuda/precision.h"
#include "engine/op_table.h"
#include "engine/ops/lstm.h"
#include "kernels/cuda/lstm.h"

namespace caption {

namespace {

using cuda::require_f32;

namespace kcu = kernels::cuda;

float* f32_or_null(const Tensor& t) { return t.defined() ? t.data<float>() : nullptr; }

// Forward: in = {x, h, c, w_ih, w_hh, b_ih, b_hh}, out = {h', c', gates}.
void lstm_cell_cuda_forward(const OpCall& c) {
  const auto& p = c.get<LstmCellParams>();
  for (const Tensor& t : c.in) require_f32(t, "lstm_cell");
  cuda::Bf16ProductScope bf16_scope(p.bf16, c.in[0].device());
  kcu::lstm_cell_forward(cuda::cublas_handle(c.in[0].device()), c.in[0].data<float>(),
                         c.in[1].data<float>(), c.in[2].data<float>(), c.in[3].data<float>(),
                         c.in[4].data<float>(), c.in[5].data<float>(), c.in[6].data<float>(),
                         c.out[0].data<float>(), c.out[1].data<float>(), c.out[2].data<float>(),
                         p.batch, p.input, p.hidden);
}

// Backward: in = {x, h, c, w_ih, w_hh, gates, c', grad_h', grad_c'},
// out = {dx, dh, dc, dw_ih, dw_hh, db_ih, db_hh}.
void lstm_cell_cuda_backward(const OpCall& c) {
  const auto& p = c.get<LstmCellParams>();
  for (const Tensor& t : c.in) require_f32(t, "lstm_cell backward");
  const Device dev = c.in[0].device();
  cuda::Bf16ProductScope bf16_scope(p.bf16, dev);
  Tensor dgates = Tensor::empty({p.batch, 4 * p.hidden}, DType::F32, dev);  // workspace
  auto out = [&](size_t k) { return k < c.out.size() ? f32_or_null(c.out[k]) : nullptr; };
  kcu::lstm_cell_backward(cuda::cublas_handle(dev), c.in[0].data<float>(), c.in[1].data<float>(),
                          c.in[2].data<float>(), c.in[3].data<float>(), c.in[4].data<float>(),
                          c.in[5].data<float>(), c.in[6].data<float>(), c.in[7].data<float>(),
                          c.in[8].data<float>(), out(0), out(1), out(2), out(3), out(4), out(5),
                          out(6), dgates.data<float>(), p.batch, p.input, p.hidden);
}

// LstmGates: in = {part_0, ..., part_k-1, c}, out = {h', c', gates}.
void lstm_gates_cuda_forward(const OpCall& c) {
  const auto& p = c.get<LstmGatesParams>();
  for (const Tensor& t : c.in) require_f32(t, "lstm_gates");
  kernels::cpu::GateParts<float> pre;
  pre.count = p.parts;
  for (int k = 0; k < p.parts; ++k) {
    pre.part[k] = c.in[k].data<float>();
    pre.ld[k] = p.ld[k];
  }
  kcu::lstm_gates_forward(pre, c.in[p.parts].data<float>(), c.out[0].data<float>(),
                          c.out[1].data<float>(), c.out[2].data<float>(), p.batch, p.hidden,
                          cuda::stream(c.in[0].device()));
}

// Backward: in = {c, gates, c', grad_h', grad_c'}, out = {dpart_0, ..., dpart_k-1, dc}.
void lstm_gates_cuda_backward(const OpCall& c) {
  const auto& p = c.get<LstmGatesParams>();
  for (const Tensor& t : c.in) require_f32(t, "lstm_gates backward");
  const Device dev = c.in[0].device();
  auto out = [&](int i) {
    return i < static_cast<int>(c.out.size()) ? f32_or_null(c.out[i]) : nullptr;
  };
  // The kernel writes the first wanted part's gradient (or a scratch) and copies it to
  // the others.
  std::vector<float*> wanted;
  for (int k = 0; k < p.parts; ++k)
    if (float* d = out(k)) wanted.push_back(d);
  Tensor scratch;
  if (wanted.empty()) {
    scratch = Tensor::empty({p.batch, 4 * p.hidden}, DType::F32, dev);
    wanted.push_back(scratch.data<float>());
  }
  float* const more[2] = {wanted.size() > 1 ? wanted[1] : nullptr,
                          wanted.size() > 2 ? wanted[2] : nullptr};
  kcu::lstm_gates_backward(c.in[0].data<float>(), c.in[1].data<float>(), c.in[2].data<float>(),
                           c.in[3].data<float>(), c.in[4].data<float>(), wanted[0], more,
                           out(p.parts), p.batch, p.hidden, cuda::stream(dev));
}

[[maybe_unused]] const bool registered = [] {
  register_kernels(OpId::LstmCell, DeviceType::CUDA, lstm_cell_cuda_forward,
                   lstm_cell_cuda_backward);
  register_kernels(OpId::LstmGates, DeviceType::CUDA, lstm_gates_cuda_forward,
                   lstm_gates_cuda_backward);
  return true;
}();

}  // namespace

}  // namespace caption
