// CUDA adapters and table registration of the fused additive attention and of the
// decoder's attention step: the same params, saved tensors and OpCall contracts as
// engine/ops/attention.{h,cpp}, arithmetic in kernels/cuda/attention.cu. float32 only.
// Workspaces (the step's scores [B, P]; the backward's d_scores [B, P], d_context [B, D],
// alpha's whole gradient [B, P], partial sums of d_dec_proj and d_w [chunks, B, A]) come
// from the device's caching allocator.
#include "engine/cuda/adapter.h"
#include "engine/cuda/context.h"
#include "engine/op_table.h"
#include "engine/ops/attention.h"
#include "kernels/cuda/attention.h"

namespace caption {

namespace {

using cuda::require_f32;

namespace kcu = kernels::cuda;

float* f32_or_null(const Tensor& t) { return t.defined() ? t.data<float>() : nullptr; }

// Forward: in = {enc_proj, dec_proj, w, bias, features}, out = {context, alpha}.
void attention_cuda_forward(const OpCall& c) {
  const auto& p = c.get<AttentionParams>();
  for (const Tensor& t : c.in) require_f32(t, "additive_attention");
  kcu::additive_attention_forward(
      p.activation, c.in[0].data<float>(), c.in[1].data<float>(), c.in[2].data<float>(),
      c.in[3].data<float>(), c.in[4].data<float>(), c.out[0].data<float>(), c.out[1].data<float>(),
      p.batch, p.positions, p.att_dim, p.feat_dim, cuda::stream(c.in[0].device()));
}

// Backward: in = {enc_proj, dec_proj, w, features, alpha, grad_context, grad_alpha},
// out = {d_enc_proj, d_dec_proj, d_w, d_bias, d_features}.
void attention_cuda_backward(const OpCall& c) {
  const auto& p = c.get<AttentionParams>();
  for (const Tensor& t : c.in) require_f32(t, "additive_attention backward");
  const Device dev = c.in[0].device();
  auto out = [&](size_t k) { return k < c.out.size() ? f32_or_null(c.out[k]) : nullptr; };
  float* d_dec = out(1);
  float* d_w = out(2);
  const int64_t chunks = kcu::attention_backward_chunks(p.batch, p.positions, p.att_dim);
  const Shape partial_shape{chunks, p.batch, p.att_dim};
  Tensor d_scores = Tensor::empty({p.batch, p.positions}, DType::F32, dev);
  Tensor dd_partial = d_dec ? Tensor::empty(partial_shape, DType::F32, dev) : Tensor();
  Tensor dw_partial = d_w ? Tensor::empty(partial_shape, DType::F32, dev) : Tensor();
  kcu::additive_attention_backward(
      p.activation, c.in[0].data<float>(), c.in[1].data<float>(), c.in[2].data<float>(),
      c.in[3].data<float>(), c.in[4].data<float>(), c.in[5].data<float>(), c.in[6].data<float>(),
      out(0), d_dec, d_w, out(3), out(4), d_scores.data<float>(), f32_or_null(dd_partial),
      f32_or_null(dw_partial), p.batch, p.positions, p.att_dim, p.feat_dim, cuda::stream(dev));
}

// Forward: in = {enc_proj, dec_proj, w, bias, features, gate[, sum][, scale]},
// out = {z, alpha[, sum_out], context}; the scores go to a workspace.
void attention_step_cuda_forward(const OpCall& c) {
  const auto& p = c.get<AttentionStepParams>();
  for (const Tensor& t : c.in) require_f32(t, "attention_step");
  const Device dev = c.in[0].device();
  Tensor scores = Tensor::empty({p.batch, p.positions}, DType::F32, dev);
  kcu::attention_step_forward(p.activation, attention_step_forward_args<float>(c),
                              attention_step_shape(p), scores.data<float>(), cuda::stream(dev));
}

// Backward: in = {enc_proj, dec_proj, w, features, gate, alpha, context[, scale], grad_z,
// grad_alpha[, grad_sum]}, out = the forward inputs' gradients.
void attention_step_cuda_backward(const OpCall& c) {
  const auto& p = c.get<AttentionStepParams>();
  for (const Tensor& t : c.in) require_f32(t, "attention_step backward");
  const Device dev = c.in[0].device();
  const kernels::cpu::AttentionStepBackward<float> g = attention_step_backward_args<float>(c);
  const int64_t chunks = kcu::attention_backward_chunks(p.batch, p.positions, p.att_dim);
  const Shape partial_shape{chunks, p.batch, p.att_dim};
  Tensor d_context = Tensor::empty({p.batch, p.feat_dim}, DType::F32, dev);
  Tensor d_scores = Tensor::empty({p.batch, p.positions}, DType::F32, dev);
  Tensor alpha_grad = p.running ? Tensor::empty({p.batch, p.positions}, DType::F32, dev) : Tensor();
  Tensor dd_partial = g.d_dec_proj ? Tensor::empty(partial_shape, DType::F32, dev) : Tensor();
  Tensor dw_partial = g.d_w ? Tensor::empty(partial_shape, DType::F32, dev) : Tensor();
  kcu::AttentionStepWorkspace ws;
  ws.d_context = d_context.data<float>();
  ws.d_scores = d_scores.data<float>();
  ws.alpha_grad = f32_or_null(alpha_grad);
  ws.dd_partial = f32_or_null(dd_partial);
  ws.dw_partial = f32_or_null(dw_partial);
  kcu::attention_step_backward(p.activation, g, attention_step_shape(p), ws, cuda::stream(dev));
}

[[maybe_unused]] const bool registered = [] {
  register_kernels(OpId::AdditiveAttention, DeviceType::CUDA, attention_cuda_forward,
                   attention_cuda_backward);
  register_kernels(OpId::AttentionStep, DeviceType::CUDA, attention_step_cuda_forward,
                   attention_step_cuda_backward);
  return true;
}();

}  // namespace

}  // namespace caption
