// Additive attention on the CPU. Scores and their gradients are plain loops over
// [P, A] (one fused pass: add, activate, dot with w); the weighted sums over positions
// are per-sample products through OpenBLAS. Softmax subtracts the row maximum first.
#include "kernels/cpu/attention.h"

#include <algorithm>
#include <cmath>

#include "kernels/cpu/blas.h"

namespace caption::kernels::cpu {

namespace {
template <typename T>
T activate(AttentionActivation act, T s) {
  return act == AttentionActivation::Tanh ? std::tanh(s) : (s > T(0) ? s : T(0));
}
// Derivative from the activated value u = act(s).
template <typename T>
T activate_grad(AttentionActivation act, T u) {
  return act == AttentionActivation::Tanh ? T(1) - u * u : (u > T(0) ? T(1) : T(0));
}
}  // namespace

template <typename T>
void additive_attention_forward(AttentionActivation act, const T* enc_proj, const T* dec_proj,
                                const T* w, const T* bias, const T* features, T* context, T* alpha,
                                int64_t B, int64_t P, int64_t A, int64_t D) {
  for (int64_t b = 0; b < B; ++b) {
    const T* dec = dec_proj + b * A;
    T* al = alpha + b * P;
    T max_e = -INFINITY;
    for (int64_t p = 0; p < P; ++p) {
      const T* enc = enc_proj + (b * P + p) * A;
      T e = bias[0];
      for (int64_t a = 0; a < A; ++a) e += w[a] * activate(act, enc[a] + dec[a]);
      al[p] = e;
      max_e = std::max(max_e, e);
    }
    T total = 0;
    for (int64_t p = 0; p < P; ++p) {
      al[p] = std::exp(al[p] - max_e);
      total += al[p];
    }
    for (int64_t p = 0; p < P; ++p) al[p] /= total;
    // context[b] [1, D] = alpha[b] [1, P] x features[b] [P, D]
    gemm<T>(Trans::No, Trans::No, 1, D, P, T(1), al, P, features + b * P * D, D, T(0),
            context + b * D, D);
  }
}

template <typename T>
void additive_attention_backward(AttentionActivation act, const T* enc_proj, const T* dec_proj,
                                 const T* w, const T* features, const T* alpha,
                                 const T* grad_context, const T* grad_alpha, T* d_enc_proj,
                                 T* d_dec_proj, T* d_w, T* d_bias, T* d_features, T* d_scores,
                                 int64_t B, int64_t P, int64_t A, int64_t D) {
  if (d_w) std::fill_n(d_w, A, T(0));
  if (d_dec_proj) std::fill_n(d_dec_proj, B * A, T(0));
  T bias_grad = 0;
  for (int64_t b = 0; b < B; ++b) {
    const T* al = alpha + b * P;
    const T* gc = grad_context + b * D;
    const T* feat = features + b * P * D;
    T* ds = d_scores + b * P;
    // Gradient reaching alpha: its own plus context's, ds[p] = <features[b, p], gc>.
    gemm<T>(Trans::No, Trans::No, P, 1, D, T(1), feat, D, gc, 1, T(0), ds, 1);
    T dot = 0;
    for (int64_t p = 0; p < P; ++p) {
      ds[p] += grad_alpha[b * P + p];
      dot += al[p] * ds[p];
    }
    // Softmax backward: de[p] = alpha[p] * (dalpha[p] - sum_q alpha[q] dalpha[q]).
    for (int64_t p = 0; p < P; ++p) {
      ds[p] = al[p] * (ds[p] - dot);
      bias_grad += ds[p];
    }
    // d_features[b] [P, D] = alpha[b]^T [P, 1] x gc [1, D]
    if (d_features)
      gemm<T>(Trans::No, Trans::No, P, D, 1, T(1), al, 1, gc, D, T(0), d_features + b * P * D, D);
    if (!d_enc_proj && !d_dec_proj && !d_w) continue;
    const T* dec = dec_proj + b * A;
    for (int64_t p = 0; p < P; ++p) {
      const T* enc = enc_proj + (b * P + p) * A;
      T* de = d_enc_proj ? d_enc_proj + (b * P + p) * A : nullptr;
      for (int64_t a = 0; a < A; ++a) {
        const T u = activate(act, enc[a] + dec[a]);  // recomputed, see the header
        if (d_w) d_w[a] += ds[p] * u;
        const T g = ds[p] * w[a] * activate_grad(act, u);
        if (de) de[a] = g;
        if (d_dec_proj) d_dec_proj[b * A + a] += g;
      }
    }
  }
  // Mathematically zero (softmax is shift invariant); computed honestly all the same.
  if (d_bias) d_bias[0] = bias_grad;
}

template void additive_attention_forward<float>(AttentionActivation, const float*, const float*,
                                                const float*, const float*, const float*, float*,
                                                float*, int64_t, int64_t, int64_t, int64_t);
template void additive_attention_forward<double>(AttentionActivation, const double*, const double*,
                                                 const double*, const double*, const double*,
                                                 double*, double*, int64_t, int64_t, int64_t,
                                                 int64_t);
template void additive_attention_backward<float>(AttentionActivation, const float*, const float*,
                                                 const float*, const float*, const float*,
                                                 const float*, const float*, float*, float*, float*,
                                                 float*, float*, float*, int64_t, int64_t, int64_t,
                                                 int64_t);
template void additive_attention_backward<double>(AttentionActivation, const double*, const double*,
                                                  const double*, const double*, const double*,
                                                  const double*, const double*, double*, double*,
                                                  double*, double*, double*, double*, int64_t,
                                                  int64_t, int64_t, int64_t);

}  // namespace caption::kernels::cpu
