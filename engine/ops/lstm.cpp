// The LSTM cell op: input checks, the CPU adapters and table registration.
#include "engine/ops/lstm.h"

#include "engine/autocast.h"
#include "engine/dispatch.h"
#include "engine/op_node.h"
#include "engine/op_table.h"
#include "kernels/cpu/blas.h"

namespace caption {

namespace kc = kernels::cpu;

namespace {

void lstm_cell_cpu_forward(const OpCall& c) {
  const auto& p = c.get<LstmCellParams>();
  kc::Bf16Products bf16_scope(p.bf16);
  dispatch_floating(c.in[0].dtype(), "lstm_cell", [&]<typename T>() {
    kc::lstm_cell_forward<T>(c.in[0].data<T>(), c.in[1].data<T>(), c.in[2].data<T>(),
                             c.in[3].data<T>(), c.in[4].data<T>(), c.in[5].data<T>(),
                             c.in[6].data<T>(), c.out[0].data<T>(), c.out[1].data<T>(),
                             c.out[2].data<T>(), p.batch, p.input, p.hidden);
  });
}

// Backward: in = {x, h, c, w_ih, w_hh, gates, c', grad_h', grad_c'},
// out = {dx, dh, dc, dw_ih, dw_hh, db_ih, db_hh}.
void lstm_cell_cpu_backward(const OpCall& c) {
  const auto& p = c.get<LstmCellParams>();
  kc::Bf16Products bf16_scope(p.bf16);
  dispatch_floating(c.in[0].dtype(), "lstm_cell backward", [&]<typename T>() {
    Tensor dgates = Tensor::empty({p.batch, 4 * p.hidden}, c.in[0].dtype());  // workspace
    kc::lstm_cell_backward<T>(
        c.in[0].data<T>(), c.in[1].data<T>(), c.in[2].data<T>(), c.in[3].data<T>(),
        c.in[4].data<T>(), c.in[5].data<T>(), c.in[6].data<T>(), c.in[7].data<T>(),
        c.in[8].data<T>(), data_or_null<T>(c.out[0]), data_or_null<T>(c.out[1]),
        data_or_null<T>(c.out[2]), data_or_null<T>(c.out[3]), data_or_null<T>(c.out[4]),
        data_or_null<T>(c.out[5]), data_or_null<T>(c.out[6]), dgates.data<T>(), p.batch, p.input,
        p.hidden);
  });
}

void lstm_gates_cpu_forward(const OpCall& c) {
  const auto& p = c.get<LstmGatesParams>();
  dispatch_floating(c.in[0].dtype(), "lstm_gates", [&]<typename T>() {
    kc::GateParts<T> pre;
    pre.count = p.parts;
    for (int k = 0; k < p.parts; ++k) {
      pre.part[k] = c.in[k].data<T>();
      pre.ld[k] = p.ld[k];
    }
    kc::lstm_gates_forward<T>(pre, c.in[p.parts].data<T>(), c.out[0].data<T>(),
                              c.out[1].data<T>(), c.out[2].data<T>(), p.batch, p.hidden);
  });
}

// Backward: in = {c, gates, c', grad_h', grad_c'}, out = {dpart_0, ..., dc}.
void lstm_gates_cpu_backward(const OpCall& c) {
  const auto& p = c.get<LstmGatesParams>();
  dispatch_floating(c.in[0].dtype(), "lstm_gates backward", [&]<typename T>() {
    auto out = [&](size_t i) { return i < c.out.size() ? data_or_null<T>(c.out[i]) : nullptr; };
    // dpre is the pre-activation gradient the kernel always forms, into the first part's
    // gradient that is wanted, or a scratch; the other parts get copies.
    Tensor scratch;
    int first = 0;
    while (first < p.parts && !out(first)) ++first;
    T* dpre = first < p.parts ? out(first) : nullptr;
    if (!dpre) {
      scratch = Tensor::empty({p.batch, 4 * p.hidden}, c.in[0].dtype());
      dpre = scratch.data<T>();
    }
    kc::lstm_gates_backward<T>(c.in[0].data<T>(), c.in[1].data<T>(), c.in[2].data<T>(),
                               c.in[3].data<T>(), c.in[4].data<T>(), dpre,
                               out(static_cast<size_t>(p.parts)), p.batch, p.hidden);
    for (int k = first + 1; k < p.parts; ++k)
      if (T* d = out(k)) std::copy_n(dpre, p.batch * 4 * p.hidden, d);
  });
}

[[maybe_unused]] const bool registered = [] {
  register_kernels(OpId::LstmCell, DeviceType::CPU, lstm_cell_cpu_forward, lstm_cell_cpu_backward);
  register_kernels(OpId::LstmGates, DeviceType::CPU, lstm_gates_cpu_forward,
                   lstm_gates_cpu_backward);
  return true;
}();

void check_shape(const Tensor& t, const Shape& expected, const char* what, const Tensor& x,
                 const Tensor& w_ih, const Tensor& w_hh) {
  CAPTION_CHECK(t.defined(), "lstm_cell: ", what, " is undefined (expected ",
                shape_string(expected), ")");
  CAPTION_CHECK(t.shape() == expected, "lstm_cell: ", what, " is ", t.describe(), ", expected ",
                shape_string(expected), " (x ", x.describe(), ", w_ih ", w_ih.describe(), ", w_hh ",
                w_hh.describe(), ")");
  CAPTION_CHECK(t.device() == x.device() && t.dtype() == x.dtype(), "lstm_cell: ", what, " ",
                t.describe(), " differs from x ", x.describe(), " in device or dtype");
}

}  // namespace

LstmState lstm_cell(const Tensor& x_in, const Tensor& h_in, const Tensor& c_in,
                    const Tensor& w_ih_in, const Tensor& w_hh_in, const Tensor& b_ih_in,
                    const Tensor& b_hh_in) {
  CAPTION_CHECK(x_in.defined() && x_in.dim() == 2, "lstm_cell: x must be [B, I], got ",
                x_in.describe());
  CAPTION_CHECK(w_hh_in.defined() && w_hh_in.dim() == 2 && w_hh_in.size(0) == 4 * w_hh_in.size(1),
                "lstm_cell: w_hh must be [4H, H], got ", w_hh_in.describe());
  LstmCellParams p;
  p.bf16 = autocast_enabled() && x_in.dtype() == DType::F32;
  p.batch = x_in.size(0);
  p.input = x_in.size(1);
  p.hidden = w_hh_in.size(1);
  const int64_t B = p.batch, I = p.input, H = p.hidden;
  check_shape(w_ih_in, {4 * H, I}, "w_ih", x_in, w_ih_in, w_hh_in);
  check_shape(w_hh_in, {4 * H, H}, "w_hh", x_in, w_ih_in, w_hh_in);
  check_shape(h_in, {B, H}, "h", x_in, w_ih_in, w_hh_in);
  check_shape(c_in, {B, H}, "c", x_in, w_ih_in, w_hh_in);
  check_shape(b_ih_in, {4 * H}, "b_ih", x_in, w_ih_in, w_hh_in);
  check_shape(b_hh_in, {4 * H}, "b_hh", x_in, w_ih_in, w_hh_in);

  std::vector<Tensor> in{x_in.contiguous(),    h_in.contiguous(),    c_in.contiguous(),
                         w_ih_in.contiguous(), w_hh_in.contiguous(), b_ih_in.contiguous(),
                         b_hh_in.contiguous()};
  const Device dev = x_in.device();
  const DType dt = x_in.dtype();
  Tensor h_out = Tensor::empty({B, H}, dt, dev);
  Tensor c_out = Tensor::empty({B, H}, dt, dev);
  Tensor gates = Tensor::empty({B, 4 * H}, dt, dev);
  std::vector<Tensor> outs{h_out, c_out, gates};
  run_forward(OpId::LstmCell, dev, OpCall{in, outs, &p});
  record_op(OpId::LstmCell, p, in, {in[0], in[1], in[2], in[3], in[4], gates, c_out},
            {h_out, c_out});
  return {h_out, c_out};
}

LstmState lstm_gates(const Tensor& pre, const Tensor& c) {
  return lstm_gates(std::vector<Tensor>{pre}, c);
}

LstmState lstm_gates(const std::vector<Tensor>& parts, const Tensor& c_in) {
  CAPTION_CHECK(!parts.empty() && parts.size() <= 3, "lstm_gates: 1 to 3 pre-activation parts, got ",
                parts.size());
  const Tensor& pre_in = parts[0];
  CAPTION_CHECK(pre_in.defined() && pre_in.dim() == 2 && pre_in.size(1) % 4 == 0,
                "lstm_gates: pre-activations must be [B, 4H], got ",
                pre_in.defined() ? pre_in.describe() : "an undefined tensor");
  LstmGatesParams p;
  p.batch = pre_in.size(0);
  p.hidden = pre_in.size(1) / 4;
  p.parts = static_cast<int>(parts.size());
  std::vector<Tensor> in;
  for (size_t k = 0; k < parts.size(); ++k) {
    const Tensor& t = parts[k];
    CAPTION_CHECK(t.defined() && t.shape() == pre_in.shape(), "lstm_gates: pre-activation part ",
                  k, " is ", t.defined() ? t.describe() : std::string("undefined"), ", expected ",
                  shape_string(pre_in.shape()));
    CAPTION_CHECK(t.device() == pre_in.device() && t.dtype() == pre_in.dtype(),
                  "lstm_gates: pre-activation part ", k, " ", t.describe(), " differs from ",
                  pre_in.describe(), " in device or dtype");
    // Read in place when its columns are contiguous (a column block of a wider row).
    const bool in_place = p.batch > 0 && (t.strides()[1] == 1 || t.size(1) == 1) &&
                          t.strides()[0] >= t.size(1);
    in.push_back(in_place ? t : t.contiguous());
    p.ld[k] = in_place && p.batch > 1 ? t.strides()[0] : t.size(1);
  }
  CAPTION_CHECK(c_in.defined() && c_in.shape() == Shape({p.batch, p.hidden}),
                "lstm_gates: c must be [", p.batch, ", ", p.hidden, "] for pre-activations ",
                pre_in.describe(), ", got ", c_in.defined() ? c_in.describe() : "an undefined tensor");
  CAPTION_CHECK(c_in.device() == pre_in.device() && c_in.dtype() == pre_in.dtype(), "lstm_gates: c ",
                c_in.describe(), " differs from ", pre_in.describe(), " in device or dtype");
  const Tensor c = c_in.contiguous();
  in.push_back(c);
  const Device dev = pre_in.device();
  Tensor h_out = Tensor::empty({p.batch, p.hidden}, pre_in.dtype(), dev);
  Tensor c_out = Tensor::empty({p.batch, p.hidden}, pre_in.dtype(), dev);
  Tensor gates = Tensor::empty(pre_in.shape(), pre_in.dtype(), dev);
  std::vector<Tensor> outs{h_out, c_out, gates};
  run_forward(OpId::LstmGates, dev, OpCall{in, outs, &p});
  record_op(OpId::LstmGates, p, in, {c, gates, c_out}, {h_out, c_out});
  return {h_out, c_out};
}

}  // namespace caption
