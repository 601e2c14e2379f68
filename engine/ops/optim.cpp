// Optimiser ops: option checks (PyTorch's own refusals), per-step scalars resolved on
// the host, the CPU adapters and table registration.
#include "engine/ops/optim.h"

#include <cmath>

#include "engine/dispatch.h"
#include "engine/op_table.h"

namespace caption {

namespace kc = kernels::cpu;

namespace {

void sgd_cpu(const OpCall& c) {
  const auto& p = c.get<SgdStepParams>();
  dispatch_floating(c.out[0].dtype(), "sgd_step", [&]<typename T>() {
    kc::sgd_step<T>(c.out[0].data<T>(), c.in[0].data<T>(), data_or_null<T>(c.out[1]),
                    c.out[0].numel(), p);
  });
}

void adam_cpu(const OpCall& c) {
  const auto& p = c.get<AdamStepParams>();
  dispatch_floating(c.out[0].dtype(), "adam_step", [&]<typename T>() {
    kc::adam_step<T>(c.out[0].data<T>(), c.in[0].data<T>(), c.out[1].data<T>(), c.out[2].data<T>(),
                     c.out[0].numel(), p);
  });
}

void sum_of_squares_cpu(const OpCall& c) {
  dispatch_floating(c.in[0].dtype(), "sum_of_squares", [&]<typename T>() {
    c.out[0].data<double>()[0] = kc::sum_of_squares<T>(c.in[0].data<T>(), c.in[0].numel());
  });
}

void scale_cpu(const OpCall& c) {
  dispatch_floating(c.out[0].dtype(), "scale", [&]<typename T>() {
    kc::scale<T>(c.out[0].data<T>(), c.out[0].numel(), c.get<ScaleParams>().factor);
  });
}

[[maybe_unused]] const bool registered = [] {
  register_kernels(OpId::SgdStep, DeviceType::CPU, sgd_cpu, nullptr);
  register_kernels(OpId::AdamStep, DeviceType::CPU, adam_cpu, nullptr);
  register_kernels(OpId::SumOfSquares, DeviceType::CPU, sum_of_squares_cpu, nullptr);
  register_kernels(OpId::Scale, DeviceType::CPU, scale_cpu, nullptr);
  return true;
}();

// A tensor updated in place must be contiguous: a contiguous() copy would be updated
// and then thrown away.
void check_state(const Tensor& t, const Tensor& param, const char* op, const char* what) {
  CAPTION_CHECK(t.defined(), op, ": ", what, " is undefined");
  CAPTION_CHECK(is_floating(t.dtype()), op, ": ", what, " ", t.describe(),
                " is not floating point");
  CAPTION_CHECK(t.shape() == param.shape(), op, ": ", what, " ", t.describe(),
                " does not match param ", param.describe());
  CAPTION_CHECK(t.device() == param.device() && t.dtype() == param.dtype(), op, ": ", what, " ",
                t.describe(), " differs from param ", param.describe(), " in device or dtype");
}

void check_in_place(const Tensor& t, const char* op, const char* what) {
  CAPTION_CHECK(t.is_contiguous(), op, ": ", what, " ", t.describe(),
                " must be contiguous (it is updated in place)");
}

}  // namespace

void sgd_step(const Tensor& param, const Tensor& grad, const Tensor& buf, const SgdOptions& o) {
  const char* op = "sgd_step";
  CAPTION_CHECK(o.lr >= 0, op, ": invalid learning rate ", o.lr);
  CAPTION_CHECK(o.momentum >= 0, op, ": invalid momentum ", o.momentum);
  CAPTION_CHECK(o.weight_decay >= 0, op, ": invalid weight_decay ", o.weight_decay);
  CAPTION_CHECK(o.nesterov == Nesterov::No || (o.momentum > 0 && o.dampening == 0), op,
                ": Nesterov momentum requires a momentum and zero dampening (momentum ", o.momentum,
                ", dampening ", o.dampening, ")");
  CAPTION_CHECK(o.step >= 1, op, ": step must be 1-based, got ", o.step);
  check_state(param, param, op, "param");
  check_state(grad, param, op, "grad");
  check_in_place(param, op, "param");
  const bool use_momentum = o.momentum != 0;
  if (use_momentum) {
    check_state(buf, param, op, "momentum_buf");
    check_in_place(buf, op, "momentum_buf");
  }
  SgdStepParams p;
  p.lr = o.lr;
  p.momentum = o.momentum;
  p.dampening = o.dampening;
  p.weight_decay = o.weight_decay;
  p.nesterov = o.nesterov;
  p.first_step = o.step == 1;
  std::vector<Tensor> in{grad.contiguous().detach()};
  std::vector<Tensor> outs{param.detach(), use_momentum ? buf.detach() : Tensor()};
  run_forward(OpId::SgdStep, param.device(), OpCall{in, outs, &p});
}

void adam_step(const Tensor& param, const Tensor& grad, const Tensor& exp_avg,
               const Tensor& exp_avg_sq, const AdamOptions& o) {
  const char* op = o.mode == WeightDecayMode::Decoupled ? "adam_step (AdamW)" : "adam_step";
  CAPTION_CHECK(o.lr >= 0, op, ": invalid learning rate ", o.lr);
  CAPTION_CHECK(o.eps >= 0, op, ": invalid epsilon ", o.eps);
  CAPTION_CHECK(o.beta1 >= 0 && o.beta1 < 1, op, ": invalid beta1 ", o.beta1, " (need [0, 1))");
  CAPTION_CHECK(o.beta2 >= 0 && o.beta2 < 1, op, ": invalid beta2 ", o.beta2, " (need [0, 1))");
  CAPTION_CHECK(o.weight_decay >= 0, op, ": invalid weight_decay ", o.weight_decay);
  CAPTION_CHECK(o.step >= 1, op, ": step must be 1-based, got ", o.step);
  check_state(param, param, op, "param");
  check_state(grad, param, op, "grad");
  check_state(exp_avg, param, op, "exp_avg");
  check_state(exp_avg_sq, param, op, "exp_avg_sq");
  check_in_place(param, op, "param");
  check_in_place(exp_avg, op, "exp_avg");
  check_in_place(exp_avg_sq, op, "exp_avg_sq");
  AdamStepParams p;
  p.lr = o.lr;
  p.beta1 = o.beta1;
  p.beta2 = o.beta2;
  p.eps = o.eps;
  p.weight_decay = o.weight_decay;
  p.mode = o.mode;
  const double t = static_cast<double>(o.step);
  p.bias_correction1 = 1.0 - std::pow(o.beta1, t);
  p.bias_correction2_sqrt = std::sqrt(1.0 - std::pow(o.beta2, t));
  std::vector<Tensor> in{grad.contiguous().detach()};
  std::vector<Tensor> outs{param.detach(), exp_avg.detach(), exp_avg_sq.detach()};
  run_forward(OpId::AdamStep, param.device(), OpCall{in, outs, &p});
}

Tensor sum_of_squares(const Tensor& x) {
  CAPTION_CHECK(x.defined() && is_floating(x.dtype()),
                "sum_of_squares: expected a floating-point tensor, got ", x.describe());
  Tensor total = Tensor::empty({}, DType::F64, x.device());
  std::vector<Tensor> in{x.contiguous().detach()}, outs{total};
  run_forward(OpId::SumOfSquares, x.device(), OpCall{in, outs, nullptr});
  return total;
}

void scale(const Tensor& x, double factor) {
  CAPTION_CHECK(x.defined() && is_floating(x.dtype()),
                "scale: expected a floating-point tensor, got ", x.describe());
  check_in_place(x, "scale", "x");
  ScaleParams p{factor};
  std::vector<Tensor> in, outs{x.detach()};
  run_forward(OpId::Scale, x.device(), OpCall{in, outs, &p});
}

}  // namespace caption
