// CPU kernels of the fused LSTM cell (PyTorch LSTMCell semantics; MODEL_SPEC.md section 4).
//
// Forward: both products go into one gates buffer ([B, 4H], chunks i, f, g, o), then a
// single pointwise pass adds the biases, activates the gates in place and forms c' and
// h'. The activated gates are what backward needs (every derivative of sigmoid and tanh
// is a function of the activated value), so the buffer doubles as the saved context.
// Backward turns the output gradients into pre-activation gate gradients in a workspace
// of the same size, then four products give the gradients of x, h, W_ih and W_hh.
#pragma once

#include <cstdint>

namespace caption::kernels::cpu {

// x [B, I], h [B, H], c [B, H], w_ih [4H, I], w_hh [4H, H], b_ih [4H], b_hh [4H].
// Writes h_out [B, H], c_out [B, H] and gates [B, 4H] (activated: sigmoid(i),
// sigmoid(f), tanh(g), sigmoid(o)).
template <typename T>
void lstm_cell_forward(const T* x, const T* h, const T* c, const T* w_ih, const T* w_hh,
                       const T* b_ih, const T* b_hh, T* h_out, T* c_out, T* gates, int64_t B,
                       int64_t I, int64_t H);

// From the forward's inputs, its activated gates [B, 4H] and c_out [B, H], and the
// gradients grad_h [B, H] and grad_c [B, H] of h_out and c_out, writes (=) each
// non-null input gradient: dx [B, I], dh [B, H], dc [B, H], dw_ih [4H, I],
// dw_hh [4H, H], db_ih [4H], db_hh [4H]. dgates [B, 4H] is a caller-provided workspace
// (the gradients of the pre-activation gates).
template <typename T>
void lstm_cell_backward(const T* x, const T* h, const T* c, const T* w_ih, const T* w_hh,
                        const T* gates, const T* c_out, const T* grad_h, const T* grad_c, T* dx,
                        T* dh, T* dc, T* dw_ih, T* dw_hh, T* db_ih, T* db_hh, T* dgates, int64_t B,
                        int64_t I, int64_t H);

// The pointwise half of the cell alone, for callers that form the gate pre-activations
// [B, 4H] themselves (the decoder, whose products are batched over steps; biases
// included): h_out, c_out and the activated gates, exactly as lstm_cell_forward.
// The pre-activations may come as up to three parts [B, 4H] summed left to right (row b
// of part k at part[k] + b * ld[k]: column blocks of wider products are read in place),
// so that the decoder's word, context and recurrent halves need no additions of their own.
template <typename T>
struct GateParts {
  const T* part[3] = {nullptr, nullptr, nullptr};
  int64_t ld[3] = {0, 0, 0};
  int count = 0;
};
template <typename T>
void lstm_gates_forward(const GateParts<T>& pre, const T* c, T* h_out, T* c_out, T* gates,
                        int64_t B, int64_t H);

// Its backward: the pre-activation gradients dpre [B, 4H] (=) and dc [B, H] (may be null),
// from the saved c, activated gates and c_out.
template <typename T>
void lstm_gates_backward(const T* c, const T* gates, const T* c_out, const T* grad_h,
                         const T* grad_c, T* dpre, T* dc, int64_t B, int64_t H);

}  // namespace caption::kernels::cpu
