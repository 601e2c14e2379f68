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

// enc_proj [B, P, A], dec_proj [B, A] (row b at dec_proj + b * dec_ld; dec_ld 0 means A),
// w [A], bias [1], features [B, P, D]. Writes context [B, D] and alpha [B, P].
template <typename T>
void additive_attention_forward(AttentionActivation act, const T* enc_proj, const T* dec_proj,
                                const T* w, const T* bias, const T* features, T* context, T* alpha,
                                int64_t B, int64_t P, int64_t A, int64_t D, int64_t dec_ld = 0);

// From the forward's inputs, its alpha [B, P] and the gradients grad_context [B, D] and
// grad_alpha [B, P], writes (=) each non-null input gradient: d_enc_proj [B, P, A],
// d_dec_proj [B, A], d_w [A], d_bias [1], d_features [B, P, D]. d_scores [B, P] is a
// caller-provided workspace (the gradient of e).
template <typename T>
void additive_attention_backward(AttentionActivation act, const T* enc_proj, const T* dec_proj,
                                 const T* w, const T* features, const T* alpha,
                                 const T* grad_context, const T* grad_alpha, T* d_enc_proj,
                                 T* d_dec_proj, T* d_w, T* d_bias, T* d_features, T* d_scores,
                                 int64_t B, int64_t P, int64_t A, int64_t D, int64_t dec_ld = 0);

// The decoder's whole attention step (MODEL_SPEC.md section 4): the attention above, then
// in the same pass the gate and the running sum of the doubly-stochastic term,
//   z[b, d]       = sigmoid(gate[b, d]) * context[b, d]
//   sum_out[b, p] = sum_in[b, p] + scale[b] * alpha[b, p]
// with sum_in null meaning zeros, scale null meaning ones (scale is the row's "still
// decoding" mask in training), sum_out null meaning no running sum. dec_proj and gate may
// be column blocks of a wider row (row strides dec_ld and gate_ld, 0 meaning A and D): the
// decoder's one product over h gives both.
struct AttentionStepShape {
  int64_t B = 0, P = 0, A = 0, D = 0;
  int64_t dec_ld = 0, gate_ld = 0;
};

template <typename T>
struct AttentionStepForward {
  const T *enc_proj = nullptr, *dec_proj = nullptr, *w = nullptr, *bias = nullptr,
          *features = nullptr, *gate = nullptr, *sum_in = nullptr, *scale = nullptr;
  T *z = nullptr, *context = nullptr, *alpha = nullptr, *sum_out = nullptr;  // context: kept for backward
};

// Saved forward tensors, incoming gradients (grad_sum null when there is no running sum)
// and the input gradients to write (=), each null when not wanted.
template <typename T>
struct AttentionStepBackward {
  const T *enc_proj = nullptr, *dec_proj = nullptr, *w = nullptr, *features = nullptr,
          *gate = nullptr, *alpha = nullptr, *context = nullptr, *scale = nullptr;
  const T *grad_z = nullptr, *grad_alpha = nullptr, *grad_sum = nullptr;
  T *d_enc_proj = nullptr, *d_dec_proj = nullptr, *d_w = nullptr, *d_bias = nullptr,
    *d_features = nullptr, *d_gate = nullptr, *d_sum_in = nullptr, *d_scale = nullptr;
};

template <typename T>
void attention_step_forward(AttentionActivation act, const AttentionStepForward<T>& f,
                            const AttentionStepShape& s);
template <typename T>
void attention_step_backward(AttentionActivation act, const AttentionStepBackward<T>& g,
                             const AttentionStepShape& s);

}  // namespace caption::kernels::cpu
