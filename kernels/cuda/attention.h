// CUDA kernels of the fused additive attention step, mirroring kernels/cpu/attention.h:
//   e[b, p] = sum_a w[a] act(enc_proj[b, p, a] + dec_proj[b, a]) + bias,
//   alpha[b] = softmax_p(e[b]),  context[b] = sum_p alpha[b, p] features[b, p].
// Backward recomputes act(enc_proj + dec_proj) as the CPU does (nothing of size
// [B, P, A] is saved). float32; work is queued on `stream`.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cpu/attention.h"

namespace caption::kernels::cuda {

using cpu::AttentionActivation;

// enc_proj [B, P, A], dec_proj [B, A], w [A], bias [1], features [B, P, D] ->
// context [B, D], alpha [B, P]. P >= 1.
void additive_attention_forward(AttentionActivation act, const float* enc_proj,
                                const float* dec_proj, const float* w, const float* bias,
                                const float* features, float* context, float* alpha, int64_t B,
                                int64_t P, int64_t A, int64_t D, cudaStream_t stream,
                                int64_t dec_ld = 0);

// The number of position chunks the backward splits P into (a function of the shapes
// alone, so results are reproducible); sizes its partial-sum workspaces.
int64_t attention_backward_chunks(int64_t B, int64_t P, int64_t A);

// Writes (=) each non-null gradient: d_enc_proj [B, P, A], d_dec_proj [B, A], d_w [A],
// d_bias [1], d_features [B, P, D]. Caller-provided workspaces: d_scores [B, P] (the
// gradient of e, always), dd_partial [chunks, B, A] (when d_dec_proj is set) and
// dw_partial [chunks, B, A] (when d_w is set), chunks = attention_backward_chunks(B, P, A).
void additive_attention_backward(AttentionActivation act, const float* enc_proj,
                                 const float* dec_proj, const float* w, const float* features,
                                 const float* alpha, const float* grad_context,
                                 const float* grad_alpha, float* d_enc_proj, float* d_dec_proj,
                                 float* d_w, float* d_bias, float* d_features, float* d_scores,
                                 float* dd_partial, float* dw_partial, int64_t B, int64_t P,
                                 int64_t A, int64_t D, cudaStream_t stream, int64_t dec_ld = 0);

// The decoder's attention step (kernels/cpu/attention.h): two kernels, the scores into
// the caller's workspace `scores` [B, P], then one pass that forms the softmax, the
// weighted sum, the gate and the running sum (grid: chunks of D x rows).
void attention_step_forward(AttentionActivation act, const cpu::AttentionStepForward<float>& f,
                            const cpu::AttentionStepShape& s, float* scores, cudaStream_t stream);

// Caller-provided workspaces of the step's backward: d_context [B, D] and d_scores
// [B, P] always, alpha_grad [B, P] when there is a running sum, dd_partial and dw_partial
// as additive_attention_backward's.
struct AttentionStepWorkspace {
  float *d_context = nullptr, *alpha_grad = nullptr, *d_scores = nullptr,
        *dd_partial = nullptr, *dw_partial = nullptr;
};

void attention_step_backward(AttentionActivation act, const cpu::AttentionStepBackward<float>& g,
                             const cpu::AttentionStepShape& s, const AttentionStepWorkspace& ws,
                             cudaStream_t stream);

}  // namespace caption::kernels::cuda
