// Additive attention on the CPU. Per sample, the activations u[p, a] = act(enc_proj[p, a]
// + dec_proj[a]) are one vectorisable pass over [P, A] into a scratch block (tanh is
// vtanh: kernels/cpu/fast_math.h for float, libm for double), and the scores are one
// product u w through OpenBLAS; the weighted sums over positions are per-sample products
// too. Softmax subtracts the row maximum first. The backward recomputes u (see the
// header) in the same vectorised form.
#include "kernels/cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/blas.h"
#include "kernels/cpu/fast_math.h"

namespace caption::kernels::cpu {

namespace {

// u[p, a] = act(enc[p, a] + dec[a]) for one sample's [P, A].
template <typename T>
void activations(AttentionActivation act, const T* enc, const T* dec, T* u, int64_t P, int64_t A) {
  if (act == AttentionActivation::Tanh) {
    for (int64_t p = 0; p < P; ++p)
      for (int64_t a = 0; a < A; ++a) u[p * A + a] = vtanh(enc[p * A + a] + dec[a]);
  } else {
    for (int64_t p = 0; p < P; ++p)
      for (int64_t a = 0; a < A; ++a) {
        const T s = enc[p * A + a] + dec[a];
        u[p * A + a] = s > T(0) ? s : T(0);
      }
  }
}

// Scratch of n elements per thread, reused across calls.
template <typename T>
T* scratch(size_t n) {
  thread_local std::vector<T> buffer;
  if (buffer.size() < n) buffer.resize(n);
  return buffer.data();
}

}  // namespace

template <typename T>
void additive_attention_forward(AttentionActivation act, const T* enc_proj, const T* dec_proj,
                                const T* w, const T* bias, const T* features, T* context, T* alpha,
                                int64_t B, int64_t P, int64_t A, int64_t D, int64_t dec_ld) {
  if (dec_ld == 0) dec_ld = A;
  T* u = scratch<T>(static_cast<size_t>(P * A));
  for (int64_t b = 0; b < B; ++b) {
    T* al = alpha + b * P;
    activations(act, enc_proj + b * P * A, dec_proj + b * dec_ld, u, P, A);
    // scores [P, 1] = u [P, A] x w [A, 1]
    gemm<T>(Trans::No, Trans::No, P, 1, A, T(1), u, A, w, 1, T(0), al, 1);
    T max_e = -INFINITY;
    for (int64_t p = 0; p < P; ++p) {
      al[p] += bias[0];
      max_e = std::max(max_e, al[p]);
    }
    for (int64_t p = 0; p < P; ++p) al[p] = vexp(al[p] - max_e);
    T total = 0;
    for (int64_t p = 0; p < P; ++p) total += al[p];
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
                                 int64_t B, int64_t P, int64_t A, int64_t D, int64_t dec_ld) {
  if (dec_ld == 0) dec_ld = A;
  if (d_w) std::fill_n(d_w, A, T(0));
  if (d_dec_proj) std::fill_n(d_dec_proj, B * A, T(0));
  T* u = scratch<T>(static_cast<size_t>(P * A));
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
    activations(act, enc_proj + b * P * A, dec_proj + b * dec_ld, u, P, A);  // recomputed
    // d_w [A] += u^T [A, P] x ds [P]
    if (d_w) gemm<T>(Trans::Yes, Trans::No, A, 1, P, T(1), u, A, ds, 1, T(1), d_w, 1);
    // g[p, a] = ds[p] * w[a] * act'(u[p, a]), in place over u; it is d_enc_proj[b], and
    // its column sums are d_dec_proj[b].
    const bool tanh_act = act == AttentionActivation::Tanh;
    for (int64_t p = 0; p < P; ++p) {
      T* up = u + p * A;
      const T dsp = ds[p];
      if (tanh_act) {
        for (int64_t a = 0; a < A; ++a) up[a] = dsp * w[a] * (T(1) - up[a] * up[a]);
      } else {
        for (int64_t a = 0; a < A; ++a) up[a] = up[a] > T(0) ? dsp * w[a] : T(0);
      }
    }
    if (d_enc_proj) std::copy_n(u, P * A, d_enc_proj + b * P * A);
    if (d_dec_proj) {
      T* dd = d_dec_proj + b * A;
      for (int64_t p = 0; p < P; ++p)
        for (int64_t a = 0; a < A; ++a) dd[a] += u[p * A + a];
    }
  }
  // Mathematically zero (softmax is shift invariant); computed honestly all the same.
  if (d_bias) d_bias[0] = bias_grad;
}

namespace {
template <typename T>
T gate_sigmoid(T v) {
  return T(1) / (T(1) + vexp(-v));  // as the sigmoid op (kernels/cpu/elementwise.cpp)
}
}  // namespace

template <typename T>
void attention_step_forward(AttentionActivation act, const AttentionStepForward<T>& f,
                            const AttentionStepShape& s) {
  const int64_t B = s.B, P = s.P, D = s.D;
  const int64_t gate_ld = s.gate_ld == 0 ? D : s.gate_ld;
  additive_attention_forward<T>(act, f.enc_proj, f.dec_proj, f.w, f.bias, f.features, f.context,
                                f.alpha, B, P, s.A, D, s.dec_ld);
  for (int64_t b = 0; b < B; ++b) {
    const T* g = f.gate + b * gate_ld;
    const T* ctx = f.context + b * D;
    T* z = f.z + b * D;
    for (int64_t d = 0; d < D; ++d) z[d] = gate_sigmoid(g[d]) * ctx[d];
  }
  if (!f.sum_out) return;
  for (int64_t b = 0; b < B; ++b) {
    const T k = f.scale ? f.scale[b] : T(1);
    for (int64_t p = 0; p < P; ++p) {
      const T add = k * f.alpha[b * P + p];
      f.sum_out[b * P + p] = f.sum_in ? f.sum_in[b * P + p] + add : add;
    }
  }
}

template <typename T>
void attention_step_backward(AttentionActivation act, const AttentionStepBackward<T>& g,
                             const AttentionStepShape& s) {
  const int64_t B = s.B, P = s.P, D = s.D;
  const int64_t gate_ld = s.gate_ld == 0 ? D : s.gate_ld;
  // The gate: z = sg * context, sg = sigmoid(gate), so d_context = grad_z sg and
  // d_gate = grad_z context sg (1 - sg).
  std::vector<T> d_context(static_cast<size_t>(B * D));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t d = 0; d < D; ++d) {
      const T sg = gate_sigmoid(g.gate[b * gate_ld + d]);
      const T gz = g.grad_z[b * D + d];
      d_context[b * D + d] = gz * sg;
      if (g.d_gate) g.d_gate[b * D + d] = gz * g.context[b * D + d] * sg * (T(1) - sg);
    }
  // The running sum: alpha receives scale[b] grad_sum besides its own gradient.
  std::vector<T> grad_alpha(g.grad_alpha, g.grad_alpha + B * P);
  if (g.grad_sum) {
    for (int64_t b = 0; b < B; ++b) {
      const T k = g.scale ? g.scale[b] : T(1);
      T dk = 0;
      for (int64_t p = 0; p < P; ++p) {
        const T gs = g.grad_sum[b * P + p];
        grad_alpha[b * P + p] += k * gs;
        dk += g.alpha[b * P + p] * gs;
        if (g.d_sum_in) g.d_sum_in[b * P + p] = gs;
      }
      if (g.d_scale) g.d_scale[b] = dk;
    }
  }
  std::vector<T> d_scores(static_cast<size_t>(B * P));
  additive_attention_backward<T>(act, g.enc_proj, g.dec_proj, g.w, g.features, g.alpha,
                                 d_context.data(), grad_alpha.data(), g.d_enc_proj, g.d_dec_proj,
                                 g.d_w, g.d_bias, g.d_features, d_scores.data(), B, P, s.A, D,
                                 s.dec_ld);
}

template void attention_step_forward<float>(AttentionActivation, const AttentionStepForward<float>&,
                                            const AttentionStepShape&);
template void attention_step_forward<double>(AttentionActivation,
                                             const AttentionStepForward<double>&,
                                             const AttentionStepShape&);
template void attention_step_backward<float>(AttentionActivation,
                                             const AttentionStepBackward<float>&,
                                             const AttentionStepShape&);
template void attention_step_backward<double>(AttentionActivation,
                                              const AttentionStepBackward<double>&,
                                              const AttentionStepShape&);

template void additive_attention_forward<float>(AttentionActivation, const float*, const float*,
                                                const float*, const float*, const float*, float*,
                                                float*, int64_t, int64_t, int64_t, int64_t,
                                                int64_t);
template void additive_attention_forward<double>(AttentionActivation, const double*, const double*,
                                                 const double*, const double*, const double*,
                                                 double*, double*, int64_t, int64_t, int64_t,
                                                 int64_t, int64_t);
template void additive_attention_backward<float>(AttentionActivation, const float*, const float*,
                                                 const float*, const float*, const float*,
                                                 const float*, const float*, float*, float*, float*,
                                                 float*, float*, float*, int64_t, int64_t, int64_t,
                                                 int64_t, int64_t);
template void additive_attention_backward<double>(AttentionActivation, const double*, const double*,
                                                  const double*, const double*, const double*,
                                                  const double*, const double*, double*, double*,
                                                  double*, double*, double*, double*, int64_t,
                                                  int64_t, int64_t, int64_t, int64_t);

}  // namespace caption::kernels::cpu
