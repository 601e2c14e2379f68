// Optimiser ops: option checks (PyTorch's own refusals), per-step scalars resolved on
// the host, the CPU adapters and table registration.
#include "engine/ops/optim.h"

#include <cmath>

#include "engine/autograd.h"
#include "engine/dispatch.h"
#include "engine/op_table.h"
#include "engine/ops/indexing.h"

namespace caption {

namespace kc = kernels::cpu;

namespace {

void sgd_cpu(const OpCall& c) {
  SgdStepParams p = c.get<SgdStepParams>();
  if (c.in.size() > 1) p.lr = c.in[1].data<double>()[0];
  dispatch_floating(c.out[0].dtype(), "sgd_step", [&]<typename T>() {
    kc::sgd_step<T>(c.out[0].data<T>(), c.in[0].data<T>(), data_or_null<T>(c.out[1]),
                    c.out[0].numel(), p);
  });
}

void adam_cpu(const OpCall& c) {
  AdamStepParams p = c.get<AdamStepParams>();
  if (c.in.size() > 1) {
    const double* d = c.in[1].data<double>();
    p.lr = d[0];
    p.bias_correction1 = d[1];
    p.bias_correction2_sqrt = d[2];
  }
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
  const double factor = c.in.empty() ? c.get<ScaleParams>().factor : c.in[0].data<double>()[0];
  dispatch_floating(c.out[0].dtype(), "scale", [&]<typename T>() {
    kc::scale<T>(c.out[0].data<T>(), c.out[0].numel(), factor);
  });
}

void clip_coefficient_cpu(const OpCall& c) {
  const Tensor& totals = c.in[0];
  double sum = 0;
  for (int64_t i = 0; i < totals.numel(); ++i) sum += totals.data<double>()[i];
  const double norm = std::sqrt(sum), coef = c.get<ScaleParams>().factor / (norm + 1e-6);
  double* out = c.out[0].data<double>();
  out[0] = norm;
  out[1] = coef < 1.0 ? coef : 1.0;
}

[[maybe_unused]] const bool registered = [] {
  register_kernels(OpId::SgdStep, DeviceType::CPU, sgd_cpu, nullptr);
  register_kernels(OpId::AdamStep, DeviceType::CPU, adam_cpu, nullptr);
  register_kernels(OpId::SumOfSquares, DeviceType::CPU, sum_of_squares_cpu, nullptr);
  register_kernels(OpId::Scale, DeviceType::CPU, scale_cpu, nullptr);
  register_kernels(OpId::ClipCoefficient, DeviceType::CPU, clip_coefficient_cpu, nullptr);
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

// A tensor of per-step scalars: `count` float64 on the param's device.
void check_dynamic(const Tensor& d, int64_t count, const Tensor& param, const char* op) {
  CAPTION_CHECK(d.dtype() == DType::F64 && d.numel() == count && d.is_contiguous() &&
                    d.device() == param.device(),
                op, ": the per-step scalars must be ", count, " contiguous float64 on ",
                param.device().to_string(), ", got ", d.describe());
}

}  // namespace

void sgd_step(const Tensor& param, const Tensor& grad, const Tensor& buf, const SgdOptions& o,
              const Tensor& dynamic) {
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
  if (dynamic.defined()) {
    check_dynamic(dynamic, 1, param, op);
    in.push_back(dynamic.detach());
  }
  std::vector<Tensor> outs{param.detach(), use_momentum ? buf.detach() : Tensor()};
  run_forward(OpId::SgdStep, param.device(), OpCall{in, outs, &p});
}

std::array<double, 3> adam_dynamic_scalars(const AdamOptions& o) {
  const double t = static_cast<double>(o.step);
  return {o.lr, 1.0 - std::pow(o.beta1, t), std::sqrt(1.0 - std::pow(o.beta2, t))};
}

void adam_step(const Tensor& param, const Tensor& grad, const Tensor& exp_avg,
               const Tensor& exp_avg_sq, const AdamOptions& o, const Tensor& dynamic) {
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
  const std::array<double, 3> scalars = adam_dynamic_scalars(o);
  p.bias_correction1 = scalars[1];
  p.bias_correction2_sqrt = scalars[2];
  std::vector<Tensor> in{grad.contiguous().detach()};
  if (dynamic.defined()) {
    check_dynamic(dynamic, 3, param, op);
    in.push_back(dynamic.detach());
  }
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

void scale_by(const Tensor& x, const Tensor& factor) {
  CAPTION_CHECK(x.defined() && is_floating(x.dtype()),
                "scale_by: expected a floating-point tensor, got ", x.describe());
  check_in_place(x, "scale_by", "x");
  check_dynamic(factor, 1, x, "scale_by");
  ScaleParams p{1.0};
  std::vector<Tensor> in{factor.detach()}, outs{x.detach()};
  run_forward(OpId::Scale, x.device(), OpCall{in, outs, &p});
}

Tensor clip_coefficient(const std::vector<Tensor>& sums, double max_norm) {
  CAPTION_CHECK(max_norm >= 0 && std::isfinite(max_norm), "clip_coefficient: invalid max_norm ",
                max_norm);
  CAPTION_CHECK(!sums.empty(), "clip_coefficient: no sums of squares");
  std::vector<Tensor> parts;
  for (const Tensor& s : sums) {
    CAPTION_CHECK(s.defined() && s.dtype() == DType::F64 && s.numel() == 1 &&
                      s.device() == sums[0].device(),
                  "clip_coefficient: each sum of squares must be one float64 on ",
                  sums[0].device().to_string(), ", got ", s.defined() ? s.describe() : "nothing");
    parts.push_back(s.detach().reshape({1}));
  }
  NoGradGuard no_grad;
  const Tensor totals = parts.size() == 1 ? parts[0].contiguous() : concat(parts, 0);
  Tensor out = Tensor::empty({2}, DType::F64, totals.device());
  ScaleParams p{max_norm};
  std::vector<Tensor> in{totals}, outs{out};
  run_forward(OpId::ClipCoefficient, totals.device(), OpCall{in, outs, &p});
  return out;
}

}  // namespace caption
