// Fused LSTM cell on the CPU: products through OpenBLAS, pointwise math in plain loops.
// Sigmoid is written as 1 / (1 + exp(-x)), which saturates cleanly at both ends in float.
#include "kernels/cpu/lstm.h"

#include <algorithm>
#include <cmath>

#include "kernels/cpu/blas.h"
#include "kernels/cpu/fast_math.h"

namespace caption::kernels::cpu {

namespace {
// vexp/vtanh: vectorisable for float (kernels/cpu/fast_math.h), libm for double.
template <typename T>
T sigmoid(T v) {
  return T(1) / (T(1) + vexp(-v));
}
}  // namespace

namespace {

// Activates gates [B, 4H] in place (pre-activations in, biases already added) and forms
// c' and h'.
template <typename T>
void activate_gates(T* gates, const T* c, T* h_out, T* c_out, int64_t B, int64_t H) {
  const int64_t G = 4 * H;
  for (int64_t b = 0; b < B; ++b) {
    T* gi = gates + b * G;
    T* gf = gi + H;
    T* gg = gi + 2 * H;
    T* go = gi + 3 * H;
    for (int64_t j = 0; j < H; ++j) {
      gi[j] = sigmoid(gi[j]);
      gf[j] = sigmoid(gf[j]);
      gg[j] = vtanh(gg[j]);
      go[j] = sigmoid(go[j]);
      const T cn = gf[j] * c[b * H + j] + gi[j] * gg[j];
      c_out[b * H + j] = cn;
      h_out[b * H + j] = go[j] * vtanh(cn);
    }
  }
}

// dgates [B, 4H] (=) and dc (may be null) from the activated gates.
template <typename T>
void gates_backward(const T* gates, const T* c, const T* c_out, const T* grad_h,
                    const T* grad_c, T* dgates, T* dc, int64_t B, int64_t H) {
  const int64_t G = 4 * H;
  for (int64_t b = 0; b < B; ++b) {
    const T* gr = gates + b * G;
    T* dg = dgates + b * G;
    for (int64_t j = 0; j < H; ++j) {
      const int64_t k = b * H + j;
      const T i = gr[j], f = gr[H + j], g = gr[2 * H + j], o = gr[3 * H + j];
      const T tc = vtanh(c_out[k]);
      // c' feeds h' and is an output itself: its total gradient is the sum of both.
      const T dcn = grad_c[k] + grad_h[k] * o * (T(1) - tc * tc);
      dg[j] = dcn * g * i * (T(1) - i);
      dg[H + j] = dcn * c[k] * f * (T(1) - f);
      dg[2 * H + j] = dcn * i * (T(1) - g * g);
      dg[3 * H + j] = grad_h[k] * tc * o * (T(1) - o);
      if (dc) dc[k] = dcn * f;
    }
  }
}

}  // namespace

template <typename T>
void lstm_cell_forward(const T* x, const T* h, const T* c, const T* w_ih, const T* w_hh,
                       const T* b_ih, const T* b_hh, T* h_out, T* c_out, T* gates, int64_t B,
                       int64_t I, int64_t H) {
  const int64_t G = 4 * H;
  // gates = x W_ih^T + h W_hh^T (gemm honours beta even when I or H is 0).
  gemm<T>(Trans::No, Trans::Yes, B, G, I, T(1), x, I, w_ih, I, T(0), gates, G);
  gemm<T>(Trans::No, Trans::Yes, B, G, H, T(1), h, H, w_hh, H, T(1), gates, G);
  for (int64_t b = 0; b < B; ++b) {
    T* gr = gates + b * G;
    for (int64_t k = 0; k < G; ++k) gr[k] += b_ih[k] + b_hh[k];
  }
  activate_gates(gates, c, h_out, c_out, B, H);
}

template <typename T>
void lstm_gates_forward(const GateParts<T>& pre, const T* c, T* h_out, T* c_out, T* gates,
                        int64_t B, int64_t H) {
  const int64_t G = 4 * H;
  for (int64_t b = 0; b < B; ++b) {
    T* gr = gates + b * G;
    std::copy_n(pre.part[0] + b * pre.ld[0], G, gr);
    for (int k = 1; k < pre.count; ++k) {
      const T* src = pre.part[k] + b * pre.ld[k];
      for (int64_t q = 0; q < G; ++q) gr[q] += src[q];
    }
  }
  activate_gates(gates, c, h_out, c_out, B, H);
}

template <typename T>
void lstm_gates_backward(const T* c, const T* gates, const T* c_out, const T* grad_h,
                         const T* grad_c, T* dpre, T* dc, int64_t B, int64_t H) {
  gates_backward(gates, c, c_out, grad_h, grad_c, dpre, dc, B, H);
}

template <typename T>
void lstm_cell_backward(const T* x, const T* h, const T* c, const T* w_ih, const T* w_hh,
                        const T* gates, const T* c_out, const T* grad_h, const T* grad_c, T* dx,
                        T* dh, T* dc, T* dw_ih, T* dw_hh, T* db_ih, T* db_hh, T* dgates, int64_t B,
                        int64_t I, int64_t H) {
  const int64_t G = 4 * H;
  gates_backward(gates, c, c_out, grad_h, grad_c, dgates, dc, B, H);
  if (dx) gemm<T>(Trans::No, Trans::No, B, I, G, T(1), dgates, G, w_ih, I, T(0), dx, I);
  if (dh) gemm<T>(Trans::No, Trans::No, B, H, G, T(1), dgates, G, w_hh, H, T(0), dh, H);
  if (dw_ih) gemm<T>(Trans::Yes, Trans::No, G, I, B, T(1), dgates, G, x, I, T(0), dw_ih, I);
  if (dw_hh) gemm<T>(Trans::Yes, Trans::No, G, H, B, T(1), dgates, G, h, H, T(0), dw_hh, H);
  // Both biases enter the gates the same way, so they share one gradient.
  if (db_ih || db_hh) {
    T* db = db_ih ? db_ih : db_hh;
    std::fill_n(db, G, T(0));
    for (int64_t b = 0; b < B; ++b)
      for (int64_t k = 0; k < G; ++k) db[k] += dgates[b * G + k];
    if (db_ih && db_hh) std::copy_n(db_ih, G, db_hh);
  }
}

template void lstm_cell_forward<float>(const float*, const float*, const float*, const float*,
                                       const float*, const float*, const float*, float*, float*,
                                       float*, int64_t, int64_t, int64_t);
template void lstm_cell_forward<double>(const double*, const double*, const double*, const double*,
                                        const double*, const double*, const double*, double*,
                                        double*, double*, int64_t, int64_t, int64_t);
template void lstm_cell_backward<float>(const float*, const float*, const float*, const float*,
                                        const float*, const float*, const float*, const float*,
                                        const float*, float*, float*, float*, float*, float*,
                                        float*, float*, float*, int64_t, int64_t, int64_t);
template void lstm_gates_forward<float>(const GateParts<float>&, const float*, float*, float*,
                                        float*, int64_t, int64_t);
template void lstm_gates_forward<double>(const GateParts<double>&, const double*, double*, double*,
                                         double*, int64_t, int64_t);
template void lstm_gates_backward<float>(const float*, const float*, const float*, const float*,
                                         const float*, float*, float*, int64_t, int64_t);
template void lstm_gates_backward<double>(const double*, const double*, const double*,
                                          const double*, const double*, double*, double*,
                                          int64_t, int64_t);
template void lstm_cell_backward<double>(const double*, const double*, const double*, const double*,
                                         const double*, const double*, const double*, const double*,
                                         const double*, double*, double*, double*, double*, double*,
                                         double*, double*, double*, int64_t, int64_t, int64_t);

}  // namespace caption::kernels::cpu
