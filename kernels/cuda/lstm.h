// CUDA kernels of the fused LSTM cell, mirroring kernels/cpu/lstm.h (same buffers, same
// saved context): both products into one gates buffer [B, 4H] (chunks i, f, g, o) by
// cuBLAS, then one pointwise kernel adds the biases, activates the gates in place and
// forms c' and h'. Backward: one pointwise kernel turns (grad_h', grad_c') into the
// pre-activation gate gradients dgates [B, 4H] (and dc), then four products and one
// column sum give dx, dh, dW_ih, dW_hh and the bias gradient. float32; the handle
// carries the stream and the math mode (engine/cuda/blas_handle.h).
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cpu/lstm.h"

namespace caption::kernels::cuda {

// x [B, I], h [B, H], c [B, H], w_ih [4H, I], w_hh [4H, H], b_ih [4H], b_hh [4H] ->
// h_out [B, H], c_out [B, H], gates [B, 4H] (activated).
void lstm_cell_forward(cublasHandle_t handle, const float* x, const float* h, const float* c,
                       const float* w_ih, const float* w_hh, const float* b_ih, const float* b_hh,
                       float* h_out, float* c_out, float* gates, int64_t B, int64_t I, int64_t H);

// Writes (=) each non-null gradient: dx [B, I], dh [B, H], dc [B, H], dw_ih [4H, I],
// dw_hh [4H, H], db_ih [4H], db_hh [4H]. dgates [B, 4H] is a caller-provided workspace.
void lstm_cell_backward(cublasHandle_t handle, const float* x, const float* h, const float* c,
                        const float* w_ih, const float* w_hh, const float* gates,
                        const float* c_out, const float* grad_h, const float* grad_c, float* dx,
                        float* dh, float* dc, float* dw_ih, float* dw_hh, float* db_ih,
                        float* db_hh, float* dgates, int64_t B, int64_t I, int64_t H);

// The pointwise half alone (OpId::LstmGates): the pre-activations [B, 4H] (biases
// included; up to three parts summed left to right, kernels/cpu/lstm.h) -> h_out, c_out,
// gates (activated); and its backward dpre [B, 4H] (=), written also to dpre_more[0..1]
// where not null (each part's gradient is the sum's), dc [B, H] (may be null).
void lstm_gates_forward(const cpu::GateParts<float>& pre, const float* c, float* h_out,
                        float* c_out, float* gates, int64_t B, int64_t H, cudaStream_t stream);
void lstm_gates_backward(const float* c, const float* gates, const float* c_out,
                         const float* grad_h, const float* grad_c, float* dpre,
                         float* const dpre_more[2], float* dc, int64_t B, int64_t H,
                         cudaStream_t stream);

}  // namespace caption::kernels::cuda
