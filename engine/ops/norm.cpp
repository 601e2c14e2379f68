// batch_norm2d: validation, the CPU adapters and table registration.
//
// The forward kernel call is in = {x, weight, bias, running_mean, running_var},
// out = {y, save_mean [C], save_invstd [C]}; in Train mode it also writes the running
// buffers (in[3], in[4]) in place. Autograd records inputs {x, weight, bias}, output {y},
// and saves {x, weight, save_mean, save_invstd}: the backward kernel call is
// in = {x, weight, save_mean, save_invstd, grad_y}, out = {grad_x, grad_weight, grad_bias}.
#include "engine/ops/norm.h"

#include "engine/dispatch.h"
#include "engine/op_node.h"
#include "engine/op_table.h"

namespace caption {

namespace kc = kernels::cpu;

namespace {

void batch_norm2d_cpu_forward(const OpCall& c) {
  const auto& p = c.get<BatchNorm2dParams>();
  dispatch_floating(c.in[0].dtype(), "batch_norm2d", [&]<typename T>() {
    kc::batch_norm2d_forward<T>(p, c.in[0].data<T>(), data_or_null<T>(c.in[1]),
                                data_or_null<T>(c.in[2]), data_or_null<T>(c.in[3]),
                                data_or_null<T>(c.in[4]), c.out[0].data<T>(), c.out[1].data<T>(),
                                c.out[2].data<T>());
  });
}

void batch_norm2d_cpu_backward(const OpCall& c) {
  const auto& p = c.get<BatchNorm2dParams>();
  dispatch_floating(c.in[0].dtype(), "batch_norm2d backward", [&]<typename T>() {
    kc::batch_norm2d_backward<T>(p, c.in[0].data<T>(), data_or_null<T>(c.in[1]),
                                 c.in[2].data<T>(), c.in[3].data<T>(), c.in[4].data<T>(),
                                 data_or_null<T>(c.out[0]), data_or_null<T>(c.out[1]),
                                 data_or_null<T>(c.out[2]));
  });
}

[[maybe_unused]] const bool registered = [] {
  register_kernels(OpId::BatchNorm2d, DeviceType::CPU, batch_norm2d_cpu_forward,
                   batch_norm2d_cpu_backward);
  return true;
}();

void check_channel_vector(const Tensor& t, const char* what, const Tensor& x) {
  if (!t.defined()) return;
  const int64_t C = x.shape()[1];
  CAPTION_CHECK(t.dim() == 1 && t.shape()[0] == C, "batch_norm2d: ", what, " ", t.describe(),
                " does not match the ", C, " channels of input ", x.describe());
  CAPTION_CHECK(t.device() == x.device() && t.dtype() == x.dtype(), "batch_norm2d: ", what, " ",
                t.describe(), " differs in device or dtype from input ", x.describe());
}

}  // namespace

Tensor batch_norm2d(const Tensor& x_in, const Tensor& weight_in, const Tensor& bias_in,
                    const Tensor& running_mean, const Tensor& running_var,
                    BatchNormOptions o) {
  using Mode = BatchNormOptions::Mode;
  CAPTION_CHECK(x_in.defined() && x_in.dim() == 4,
                "batch_norm2d: input must be [B, C, H, W], got ",
                x_in.defined() ? x_in.describe() : "an undefined tensor");
  check_channel_vector(weight_in, "weight", x_in);
  check_channel_vector(bias_in, "bias", x_in);
  check_channel_vector(running_mean, "running_mean", x_in);
  check_channel_vector(running_var, "running_var", x_in);
  CAPTION_CHECK(running_mean.defined() == running_var.defined(),
                "batch_norm2d: running_mean and running_var must both be given or both be "
                "undefined");
  CAPTION_CHECK(o.eps >= 0, "batch_norm2d: eps ", o.eps, " must not be negative");
  CAPTION_CHECK(o.momentum >= 0 && o.momentum <= 1, "batch_norm2d: momentum ", o.momentum,
                " must lie in [0, 1]");
  BatchNorm2dParams p;
  p.mode = o.mode;
  p.momentum = o.momentum;
  p.eps = o.eps;
  p.batch = x_in.shape()[0];
  p.channels = x_in.shape()[1];
  p.plane = x_in.shape()[2] * x_in.shape()[3];
  Tensor rm = running_mean, rv = running_var;
  if (o.mode == Mode::Train) {
    CAPTION_CHECK(p.batch * p.plane > 1, "batch_norm2d: Train mode needs more than one value "
                  "per channel, got input ", x_in.describe());
    // Updated in place: a contiguous() copy would silently lose the update.
    CAPTION_CHECK(!rm.defined() || (rm.is_contiguous() && rv.is_contiguous()),
                  "batch_norm2d: running statistics ", rm.describe(), " and ", rv.describe(),
                  " must be contiguous in Train mode (they are updated in place)");
  } else {
    CAPTION_CHECK(rm.defined(), "batch_norm2d: Eval mode needs running_mean and running_var");
    rm = rm.contiguous();
    rv = rv.contiguous();
  }
  const Tensor x = x_in.contiguous();
  const Tensor w = weight_in.defined() ? weight_in.contiguous() : Tensor();
  const Tensor b = bias_in.defined() ? bias_in.contiguous() : Tensor();
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  Tensor save_mean = Tensor::empty({p.channels}, x.dtype(), x.device());
  Tensor save_invstd = Tensor::empty({p.channels}, x.dtype(), x.device());
  std::vector<Tensor> kernel_in{x, w, b, rm.defined() ? rm.detach() : rm,
                                rv.defined() ? rv.detach() : rv};
  std::vector<Tensor> kernel_out{y, save_mean, save_invstd};
  run_forward(OpId::BatchNorm2d, x.device(), OpCall{kernel_in, kernel_out, &p});
  record_op(OpId::BatchNorm2d, p, {x, w, b}, {x, w, save_mean, save_invstd}, {y});
  return y;
}

}  // namespace caption
