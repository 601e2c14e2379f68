// The fused additive attention op of the decoder (MODEL_SPEC.md section 4):
//   e[b, p] = w . act(enc_proj[b, p] + dec_proj[b]) + bias,  alpha = softmax_p(e),
//   context[b] = sum_p alpha[b, p] * features[b, p].
// enc_proj = encoder_att(a) and dec_proj = decoder_att(h) are computed by linear ops
// outside; w and bias are full_att's weight (flattened to [A]) and bias [1].
//
// Kernel convention (shared by the CPU and CUDA sides):
//   forward  in  = {enc_proj, dec_proj, w, bias, features}, out = {context, alpha}
//   backward in  = {enc_proj, dec_proj, w, features, alpha, grad_context, grad_alpha}
//            out = {d_enc_proj, d_dec_proj, d_w, d_bias, d_features}
// Backward recomputes act(enc_proj + dec_proj) rather than saving the [B, P, A] tensor
// (see kernels/cpu/attention.h for the memory arithmetic).
#pragma once

#include "engine/op_table.h"
#include "engine/tensor.h"
#include "kernels/cpu/attention.h"

namespace caption {

struct AttentionOptions {
  using Activation = kernels::cpu::AttentionActivation;
  Activation activation = Activation::Tanh;
};

struct AttentionParams {
  int64_t batch = 0, positions = 0, att_dim = 0, feat_dim = 0;
  AttentionOptions::Activation activation = AttentionOptions::Activation::Tanh;
};

struct AttentionResult {
  Tensor context;  // [B, D]
  Tensor alpha;    // [B, P]
};

// enc_proj [B, P, A], dec_proj [B, A], w [A], bias [1], features [B, P, D].
AttentionResult additive_attention(const Tensor& enc_proj, const Tensor& dec_proj, const Tensor& w,
                                   const Tensor& bias, const Tensor& features,
                                   AttentionOptions options = {});

// The decoder's whole attention step as one op (kernels/cpu/attention.h): the attention
// above, the gate z = sigmoid(gate) * context and, when asked, the running sum of the
// doubly-stochastic term, sum_out = sum + scale[b] * alpha. On a GPU it is two kernels
// forward (the scores; softmax, weighted sum, gate and sum) where the composition of ops
// takes seven. Kernel convention:
//   forward  in  = {enc_proj, dec_proj, w, bias, features, gate[, sum][, scale]}
//            out = {z, alpha[, sum_out], context}  (context: saved for backward only)
//   backward in  = {enc_proj, dec_proj, w, features, gate, alpha, context[, scale],
//                   grad_z, grad_alpha[, grad_sum]}
//            out = the gradients of the forward's inputs, in their order.
struct AttentionStepParams {
  int64_t batch = 0, positions = 0, att_dim = 0, feat_dim = 0;
  int64_t dec_ld = 0, gate_ld = 0;  // row strides of dec_proj and gate
  bool running = false, has_sum = false, has_scale = false;
  AttentionOptions::Activation activation = AttentionOptions::Activation::Tanh;
};

struct AttentionRunningSum {
  bool enabled = false;
  Tensor sum;    // [B, P], the sum so far; undefined: zeros (the first step)
  Tensor scale;  // B elements ([B] or [B, 1]), a row's weight; undefined: ones
};

struct AttentionStepResult {
  Tensor z;          // [B, D]: sigmoid(gate) * context
  Tensor alpha;      // [B, P]
  Tensor alpha_sum;  // [B, P] when the running sum is enabled
};

// The kernel arguments of an attention_step call, shared by the CPU and CUDA adapters.
inline kernels::cpu::AttentionStepShape attention_step_shape(const AttentionStepParams& p) {
  return {p.batch, p.positions, p.att_dim, p.feat_dim, p.dec_ld, p.gate_ld};
}
template <typename T>
kernels::cpu::AttentionStepForward<T> attention_step_forward_args(const OpCall& c) {
  const auto& p = c.get<AttentionStepParams>();
  kernels::cpu::AttentionStepForward<T> f;
  f.enc_proj = c.in[0].data<T>();
  f.dec_proj = c.in[1].data<T>();
  f.w = c.in[2].data<T>();
  f.bias = c.in[3].data<T>();
  f.features = c.in[4].data<T>();
  f.gate = c.in[5].data<T>();
  size_t k = 6;
  if (p.has_sum) f.sum_in = c.in[k++].data<T>();
  if (p.has_scale) f.scale = c.in[k++].data<T>();
  f.z = c.out[0].data<T>();
  f.alpha = c.out[1].data<T>();
  if (p.running) f.sum_out = c.out[2].data<T>();
  f.context = c.out.back().data<T>();
  return f;
}
template <typename T>
kernels::cpu::AttentionStepBackward<T> attention_step_backward_args(const OpCall& c) {
  const auto& p = c.get<AttentionStepParams>();
  kernels::cpu::AttentionStepBackward<T> g;
  g.enc_proj = c.in[0].data<T>();
  g.dec_proj = c.in[1].data<T>();
  g.w = c.in[2].data<T>();
  g.features = c.in[3].data<T>();
  g.gate = c.in[4].data<T>();
  g.alpha = c.in[5].data<T>();
  g.context = c.in[6].data<T>();
  size_t k = 7;
  if (p.has_scale) g.scale = c.in[k++].data<T>();
  g.grad_z = c.in[k++].data<T>();
  g.grad_alpha = c.in[k++].data<T>();
  if (p.running) g.grad_sum = c.in[k++].data<T>();
  auto out = [&](size_t i) -> T* {
    return i < c.out.size() && c.out[i].defined() ? c.out[i].template data<T>() : nullptr;
  };
  g.d_enc_proj = out(0);
  g.d_dec_proj = out(1);
  g.d_w = out(2);
  g.d_bias = out(3);
  g.d_features = out(4);
  g.d_gate = out(5);
  size_t o = 6;
  if (p.has_sum) g.d_sum_in = out(o++);
  if (p.has_scale) g.d_scale = out(o++);
  return g;
}

// dec_proj [B, A] and gate [B, D] may be column blocks of wider rows (any 2-D view whose
// columns are contiguous): they are read in place.
AttentionStepResult attention_step(const Tensor& enc_proj, const Tensor& dec_proj, const Tensor& w,
                                   const Tensor& bias, const Tensor& features, const Tensor& gate,
                                   const AttentionRunningSum& running = {},
                                   AttentionOptions options = {});

}  // namespace caption
