// The fused LSTM cell op (PyTorch LSTMCell; MODEL_SPEC.md section 4).
//
// Kernel convention (shared by the CPU and CUDA sides):
//   forward  in  = {x, h, c, w_ih, w_hh, b_ih, b_hh}
//            out = {h' [B, H], c' [B, H], gates [B, 4H]}: the activated gates are a
//                  third, internal output that backward reads (not returned to callers)
//   backward in  = {x, h, c, w_ih, w_hh, gates, c', grad_h', grad_c'}
//            out = {dx, dh, dc, dw_ih, dw_hh, db_ih, db_hh} (undefined where not needed)
// Saving the activated gates [B, 4H] and c' costs 6H floats per sample and spares
// backward both products and every exp/tanh except tanh(c').
#pragma once

#include <utility>
#include <vector>

#include "engine/tensor.h"
#include "kernels/cpu/lstm.h"

namespace caption {

struct LstmCellParams {
  int64_t batch = 0, input = 0, hidden = 0;
  bool bf16 = false;  // bfloat16 gate products (engine/autocast.h), forward and backward
};

struct LstmState {
  Tensor h;  // [B, H]
  Tensor c;  // [B, H]
};

// x [B, I], h [B, H], c [B, H], w_ih [4H, I], w_hh [4H, H], b_ih [4H], b_hh [4H]
// (biases required, as PyTorch's default bias=True). Returns {h' [B, H], c' [B, H]}.
LstmState lstm_cell(const Tensor& x, const Tensor& h, const Tensor& c, const Tensor& w_ih,
                    const Tensor& w_hh, const Tensor& b_ih, const Tensor& b_hh);

// The pointwise half of the cell (OpId::LstmGates), for callers that form the gate
// pre-activations themselves, biases included (the decoder batches its products over
// steps): pre [B, 4H] (chunks i, f, g, o), c [B, H] -> {h', c'}, exactly as lstm_cell.
// Kernel convention: forward in = {pre, c}, out = {h', c', gates (activated)};
// backward in = {c, gates, c', grad_h', grad_c'}, out = {dpre, dc}.
// With the pre-activations in parts (up to three [B, 4H] tensors summed left to right,
// each any 2-D view with contiguous columns: column blocks of wider products are read
// in place), forward in = {part_0, ..., part_k-1, c} and backward out = {dpart_0, ...,
// dpart_k-1, dc}: the same gradient for every part. On a GPU that is one kernel where the
// additions and copies took up to four.
struct LstmGatesParams {
  int64_t batch = 0, hidden = 0;
  int parts = 1;
  int64_t ld[3] = {0, 0, 0};  // row strides of the parts
};
LstmState lstm_gates(const Tensor& pre, const Tensor& c);
LstmState lstm_gates(const std::vector<Tensor>& pre_parts, const Tensor& c);

}  // namespace caption
