// CPU kernels of the fused additive ("Bahdanau") attention of the decoder
// (MODEL_SPEC.md section 4):
//   e[b, p]    = sum_a w[a] * act(enc_proj[b, p, a] + dec_proj[b, a]) + bias
//   alpha[b]   = softmax_p(e[b])
//   context[b] = sum_p alpha[b, p] * features[b, p]
//
// Memory choice: backward recomputes act(enc_proj + dec_proj) instead of saving it.
// At the typical size (B 32, P 196, A 512) that tensor is 12.8 MB in float32 per decode
// step, 640 MB over 50 steps, while recomputing costs one extra pass of B*P*A
// activations, as cheap as the forward's own. Only alpha (an output) is saved.
#pragma once

#include <cstdint>

namespace caption::kernels::cpu {

enum class AttentionActivation { Tanh, Relu };

// enc_proj [B, P, A], dec_proj [B, A], w [A], bias [1], features [B, P, D].
// Writes context [B, D] and alpha [B, P].
template <typename T>
void additive_attention_forward(AttentionActivation act, const T* enc_proj, const T* dec_proj,
                                const T* w, const T* bias, const T* features, T* context, T* alpha,
                                int64_t B, int64_t P, int64_t A, int64_t D);

// From the forward's inputs, its alpha [B, P] and the gradients grad_context [B, D] and
// grad_alpha [B, P], writes (=) each non-null input gradient: d_enc_proj [B, P, A],
// d_dec_proj [B, A], d_w [A], d_bias [1], d_features [B, P, D]. d_scores [B, P] is a
// caller-provided workspace (the gradient of e).
template <typename T>
void additive_attention_backward(AttentionActivation act, const T* enc_proj, const T* dec_proj,
                                 const T* w, const T* features, const T* alpha,
                                 const T* grad_context, const T* grad_alpha, T* d_enc_proj,
                                 T* d_dec_proj, T* d_w, T* d_bias, T* d_features, T* d_scores,
                                 int64_t B, int64_t P, int64_t A, int64_t D);

}  // namespace caption::kernels::cpu
