// max_pool2d and adaptive_avg_pool2d: validation, CPU adapters, table registration.
//
// Max pooling: forward kernel out = {y, indices (int64) [B, C, Ho, Wo]}, the indices
// undefined when no gradient will be needed (grad mode off or x not requiring grad: the
// kernel then skips them and runs faster); autograd saves only the indices, so the
// backward call is in = {indices, grad_y}, out = {grad_x}.
// Adaptive average pooling saves nothing: in = {grad_y}, out = {grad_x}.
#include "engine/ops/pool.h"

#include "engine/dispatch.h"
#include "engine/op_node.h"
#include "engine/op_table.h"

namespace caption {

namespace kc = kernels::cpu;

namespace {

void max_pool2d_cpu_forward(const OpCall& c) {
  const auto& p = c.get<MaxPool2dParams>();
  dispatch_floating(c.in[0].dtype(), "max_pool2d", [&]<typename T>() {
    kc::max_pool2d_forward<T>(p, c.in[0].data<T>(), c.out[0].data<T>(),
                              data_or_null<int64_t>(c.out[1]));
  });
}

void max_pool2d_cpu_backward(const OpCall& c) {
  const auto& p = c.get<MaxPool2dParams>();
  dispatch_floating(c.in[1].dtype(), "max_pool2d backward", [&]<typename T>() {
    kc::max_pool2d_backward<T>(p, c.in[0].data<int64_t>(), c.in[1].data<T>(),
                               c.out[0].data<T>());
  });
}

void adaptive_avg_pool2d_cpu_forward(const OpCall& c) {
  const auto& p = c.get<AdaptiveAvgPool2dParams>();
  dispatch_floating(c.in[0].dtype(), "adaptive_avg_pool2d", [&]<typename T>() {
    kc::adaptive_avg_pool2d_forward<T>(p, c.in[0].data<T>(), c.out[0].data<T>());
  });
}

void adaptive_avg_pool2d_cpu_backward(const OpCall& c) {
  const auto& p = c.get<AdaptiveAvgPool2dParams>();
  dispatch_floating(c.in[0].dtype(), "adaptive_avg_pool2d backward", [&]<typename T>() {
    kc::adaptive_avg_pool2d_backward<T>(p, c.in[0].data<T>(), c.out[0].data<T>());
  });
}

[[maybe_unused]] const bool registered = [] {
  register_kernels(OpId::MaxPool2d, DeviceType::CPU, max_pool2d_cpu_forward,
                   max_pool2d_cpu_backward);
  register_kernels(OpId::AdaptiveAvgPool2d, DeviceType::CPU, adaptive_avg_pool2d_cpu_forward,
                   adaptive_avg_pool2d_cpu_backward);
  return true;
}();

void check_image(const Tensor& x, const char* op) {
  CAPTION_CHECK(x.defined() && x.dim() == 4, op, ": input must be [B, C, H, W], got ",
                x.defined() ? x.describe() : "an undefined tensor");
}

}  // namespace

MaxPool2dParams max_pool2d_params(const Shape& x, MaxPool2dOptions o, const char* op,
                                  const Tensor& input) {
  const Size2 k = o.kernel, s = o.stride.value_or(o.kernel), pad = o.padding, d = o.dilation;
  CAPTION_CHECK(k.h >= 1 && k.w >= 1, op, ": kernel ", size2_string(k), " must be at least 1");
  CAPTION_CHECK(s.h >= 1 && s.w >= 1, op, ": stride ", size2_string(s), " must be at least 1");
  CAPTION_CHECK(d.h >= 1 && d.w >= 1, op, ": dilation ", size2_string(d), " must be at least 1");
  CAPTION_CHECK(pad.h >= 0 && pad.w >= 0 && pad.h <= k.h / 2 && pad.w <= k.w / 2, op,
                ": padding ", size2_string(pad), " must lie between 0 and half the kernel ",
                size2_string(k));
  MaxPool2dParams p;
  p.planes = x[0] * x[1];
  p.in_h = x[2];
  p.in_w = x[3];
  p.kernel_h = k.h;
  p.kernel_w = k.w;
  p.stride_h = s.h;
  p.stride_w = s.w;
  p.pad_h = pad.h;
  p.pad_w = pad.w;
  p.dilation_h = d.h;
  p.dilation_w = d.w;
  p.out_h = conv_output_size(p.in_h, k.h, s.h, pad.h, d.h);
  p.out_w = conv_output_size(p.in_w, k.w, s.w, pad.w, d.w);
  CAPTION_CHECK(p.out_h >= 1 && p.out_w >= 1, op, ": window ", size2_string(k),
                " with dilation ", size2_string(d), " does not fit input ", input.describe(),
                " padded by ", size2_string(pad), " (output would be ", p.out_h, "x", p.out_w,
                ")");
  return p;
}

Tensor max_pool2d(const Tensor& x_in, MaxPool2dOptions o) {
  check_image(x_in, "max_pool2d");
  const MaxPool2dParams p = max_pool2d_params(x_in.shape(), o, "max_pool2d", x_in);
  const Tensor x = x_in.contiguous();
  const Shape out_shape{x.shape()[0], x.shape()[1], p.out_h, p.out_w};
  Tensor y = Tensor::empty(out_shape, x.dtype(), x.device());
  const bool needs_grad = any_requires_grad({x});
  Tensor indices = needs_grad ? Tensor::empty(out_shape, DType::I64, x.device()) : Tensor();
  std::vector<Tensor> in{x}, outs{y, indices};
  run_forward(OpId::MaxPool2d, x.device(), OpCall{in, outs, &p});
  record_op(OpId::MaxPool2d, p, in, {indices}, {y});
  return y;
}

Tensor adaptive_avg_pool2d(const Tensor& x_in, Size2 out) {
  check_image(x_in, "adaptive_avg_pool2d");
  CAPTION_CHECK(out.h >= 1 && out.w >= 1, "adaptive_avg_pool2d: output size ",
                size2_string(out), " must be at least 1x1");
  CAPTION_CHECK(x_in.shape()[2] >= 1 && x_in.shape()[3] >= 1, "adaptive_avg_pool2d: input ",
                x_in.describe(), " has an empty plane");
  AdaptiveAvgPool2dParams p;
  p.planes = x_in.shape()[0] * x_in.shape()[1];
  p.in_h = x_in.shape()[2];
  p.in_w = x_in.shape()[3];
  p.out_h = out.h;
  p.out_w = out.w;
  const Tensor x = x_in.contiguous();
  Tensor y = Tensor::empty({x.shape()[0], x.shape()[1], out.h, out.w}, x.dtype(), x.device());
  std::vector<Tensor> in{x}, outs{y};
  run_forward(OpId::AdaptiveAvgPool2d, x.device(), OpCall{in, outs, &p});
  record_op(OpId::AdaptiveAvgPool2d, p, in, {}, outs);
  return y;
}

}  // namespace caption
