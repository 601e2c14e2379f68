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

}  // namespace caption
