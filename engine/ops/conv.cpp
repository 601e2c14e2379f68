// conv2d: validation and size resolution, the CPU adapters and table registration.
// The kernels' scratch buffer (im2col columns, one image at a time) is a tensor from the
// engine's allocator, so that it is counted and, in guard mode, checked like any other.
#include "engine/ops/conv.h"

#include "engine/autocast.h"
#include "engine/autograd.h"
#include "engine/dispatch.h"
#include "engine/op_node.h"
#include "engine/op_table.h"
#include "kernels/bf16.h"
#include "kernels/cpu/blas.h"

namespace caption {

namespace kc = kernels::cpu;

namespace {

Tensor workspace_for(const Conv2dParams& p, const Tensor& like) {
  const int64_t n = kc::conv2d_workspace_elems(p);
  return n > 0 ? Tensor::empty({n}, like.dtype(), like.device()) : Tensor();
}

// x rounded to bfloat16 in place (autocast's outputs; see Conv2dGeometry::bf16).
void round_to_bf16_(const Tensor& t) {
  float* p = t.data<float>();
  for (int64_t i = 0, n = t.numel(); i < n; ++i) p[i] = kernels::round_to_bf16(p[i]);
}

// Forward: in = {x, weight, bias (may be undefined), residual (may be undefined or
// absent)}, out = {y}; p.relu and the residual form the epilogue. Under autocast the
// products run on bfloat16-rounded operands (kc::Bf16Products), y is rounded before its
// bias is added in float32, and the epilogue follows in float32.
void conv2d_cpu_forward(const OpCall& c) {
  const auto& p = c.get<Conv2dParams>();
  const Tensor ws = workspace_for(p, c.in[0]);
  const Tensor residual = c.in.size() > 3 ? c.in[3] : Tensor();
  if (p.bf16 && c.in[0].dtype() == DType::F32) {
    {
      kc::Conv2dGeometry plain = p;  // the epilogue comes after the rounding and the bias
      plain.relu = false;
      kc::Bf16Products scope(true);
      kc::conv2d_forward<float>(plain, c.in[0].data<float>(), c.in[1].data<float>(), nullptr,
                                nullptr, c.out[0].data<float>(), data_or_null<float>(ws));
    }
    round_to_bf16_(c.out[0]);
    float* y = c.out[0].data<float>();
    const int64_t plane = p.out_plane(), n = c.out[0].numel();
    if (c.in[2].defined()) {
      const float* b = c.in[2].data<float>();
      for (int64_t i = 0; i < p.batch; ++i)
        for (int64_t o = 0; o < p.out_channels; ++o)
          for (int64_t k = 0; k < plane; ++k) y[(i * p.out_channels + o) * plane + k] += b[o];
    }
    if (residual.defined()) {
      const float* r = residual.data<float>();
      for (int64_t i = 0; i < n; ++i) y[i] += r[i];
    }
    if (p.relu)
      for (int64_t i = 0; i < n; ++i) y[i] = y[i] > 0.f ? y[i] : 0.f;
    return;
  }
  dispatch_floating(c.in[0].dtype(), "conv2d", [&]<typename T>() {
    kc::conv2d_forward<T>(p, c.in[0].data<T>(), c.in[1].data<T>(), data_or_null<T>(c.in[2]),
                          data_or_null<T>(residual), c.out[0].data<T>(), data_or_null<T>(ws));
  });
}

// Backward: in = {x, weight, grad_y}, out = {grad_x, grad_weight, grad_bias}. Under
// autocast grad_x and grad_weight are rounded to bfloat16; grad_bias (a float32 sum of
// grad_y, the bias being added in float32) is not.
void conv2d_cpu_backward(const OpCall& c) {
  const auto& p = c.get<Conv2dParams>();
  const Tensor ws = workspace_for(p, c.in[2]);
  const bool bf16 = p.bf16 && c.in[2].dtype() == DType::F32;
  kc::Bf16Products scope(bf16);
  dispatch_floating(c.in[2].dtype(), "conv2d backward", [&]<typename T>() {
    kc::conv2d_backward<T>(p, c.in[0].data<T>(), c.in[1].data<T>(), c.in[2].data<T>(),
                           data_or_null<T>(c.out[0]), data_or_null<T>(c.out[1]),
                           data_or_null<T>(c.out[2]), data_or_null<T>(ws));
  });
  if (!bf16) return;
  if (c.out[0].defined()) round_to_bf16_(c.out[0]);
  if (c.out[1].defined()) round_to_bf16_(c.out[1]);
}

[[maybe_unused]] const bool registered = [] {
  register_kernels(OpId::Conv2d, DeviceType::CPU, conv2d_cpu_forward, conv2d_cpu_backward);
  return true;
}();

}  // namespace

std::string size2_string(Size2 s) { return str("(", s.h, ", ", s.w, ")"); }

int64_t conv_output_size(int64_t in, int64_t kernel, int64_t stride, int64_t pad,
                         int64_t dilation) {
  const int64_t span = in + 2 * pad - dilation * (kernel - 1) - 1;
  // Floor division: a negative span (window larger than the padded input) gives <= 0.
  return (span >= 0 ? span / stride : -((-span + stride - 1) / stride)) + 1;
}

Conv2dParams conv2d_params(const Shape& x, const Shape& w, Conv2dOptions o, const char* op,
                           const Tensor& input) {
  CAPTION_CHECK(o.stride.h >= 1 && o.stride.w >= 1, op, ": stride ", size2_string(o.stride),
                " must be at least 1");
  CAPTION_CHECK(o.dilation.h >= 1 && o.dilation.w >= 1, op, ": dilation ",
                size2_string(o.dilation), " must be at least 1");
  CAPTION_CHECK(o.padding.h >= 0 && o.padding.w >= 0, op, ": padding ",
                size2_string(o.padding), " must not be negative");
  CAPTION_CHECK(w[2] >= 1 && w[3] >= 1, op, ": weight ", shape_string(w), " has an empty kernel");
  Conv2dParams p;
  p.batch = x[0];
  p.in_channels = x[1];
  p.in_h = x[2];
  p.in_w = x[3];
  p.out_channels = w[0];
  p.kernel_h = w[2];
  p.kernel_w = w[3];
  p.stride_h = o.stride.h;
  p.stride_w = o.stride.w;
  p.pad_h = o.padding.h;
  p.pad_w = o.padding.w;
  p.dilation_h = o.dilation.h;
  p.dilation_w = o.dilation.w;
  p.out_h = conv_output_size(p.in_h, p.kernel_h, p.stride_h, p.pad_h, p.dilation_h);
  p.out_w = conv_output_size(p.in_w, p.kernel_w, p.stride_w, p.pad_w, p.dilation_w);
  CAPTION_CHECK(p.out_h >= 1 && p.out_w >= 1, op, ": kernel ", p.kernel_h, "x", p.kernel_w,
                " with dilation ", size2_string(o.dilation), " does not fit input ", input.describe(),
                " padded by ", size2_string(o.padding), " (output would be ", p.out_h, "x",
                p.out_w, ")");
  return p;
}

Tensor conv2d(const Tensor& x_in, const Tensor& w_in, const Tensor& b_in, Conv2dOptions o) {
  return conv2d(x_in, w_in, b_in, o, Conv2dEpilogue{});
}

Tensor conv2d(const Tensor& x_in, const Tensor& w_in, const Tensor& b_in, Conv2dOptions o,
              const Conv2dEpilogue& e) {
  CAPTION_CHECK(x_in.defined() && x_in.dim() == 4, "conv2d: input must be [B, C, H, W], got ",
                x_in.defined() ? x_in.describe() : "an undefined tensor");
  CAPTION_CHECK(w_in.defined() && w_in.dim() == 4,
                "conv2d: weight must be [O, C, kh, kw], got ",
                w_in.defined() ? w_in.describe() : "an undefined tensor");
  CAPTION_CHECK(x_in.shape()[1] == w_in.shape()[1], "conv2d: input ", x_in.describe(), " has ",
                x_in.shape()[1], " channels but weight ", w_in.describe(), " expects ",
                w_in.shape()[1], " (groups are not supported)");
  CAPTION_CHECK(!b_in.defined() || (b_in.dim() == 1 && b_in.shape()[0] == w_in.shape()[0]),
                "conv2d: bias ", b_in.describe(), " does not match weight ", w_in.describe(),
                " (expected [", w_in.shape()[0], "])");
  CAPTION_CHECK(x_in.device() == w_in.device() && x_in.dtype() == w_in.dtype() &&
                    (!b_in.defined() || (b_in.device() == x_in.device() &&
                                         b_in.dtype() == x_in.dtype())),
                "conv2d: input ", x_in.describe(), ", weight ", w_in.describe(),
                b_in.defined() ? str(" and bias ", b_in.describe()) : std::string(),
                " differ in device or dtype");
  Conv2dParams p = conv2d_params(x_in.shape(), w_in.shape(), o, "conv2d", x_in);
  p.bf16 = autocast_enabled() && x_in.dtype() == DType::F32;
  p.relu = e.relu;
  const Tensor& r_in = e.residual;
  const bool epilogue = r_in.defined() || e.relu;
  CAPTION_CHECK(!epilogue || !any_requires_grad({x_in, w_in, b_in, r_in}),
                "conv2d: the epilogue (residual or ReLU) is for inference, but an input "
                "requires grad; run it under NoGradGuard, or apply add and relu as ops");
  const Shape out_shape{p.batch, p.out_channels, p.out_h, p.out_w};
  CAPTION_CHECK(!r_in.defined() || (r_in.shape() == out_shape && r_in.device() == x_in.device() &&
                                    r_in.dtype() == x_in.dtype()),
                "conv2d: residual ", r_in.defined() ? r_in.describe() : std::string(),
                " does not match the output ", shape_string(out_shape), " of input ",
                x_in.describe(), " (same shape, device and dtype needed)");
  const Tensor x = x_in.contiguous(), w = w_in.contiguous();
  const Tensor b = b_in.defined() ? b_in.contiguous() : Tensor();
  Tensor y = Tensor::empty(out_shape, x.dtype(), x.device());
  std::vector<Tensor> outs{y};
  if (epilogue) {
    std::vector<Tensor> in{x, w, b, r_in.defined() ? r_in.contiguous() : Tensor()};
    run_forward(OpId::Conv2d, x.device(), OpCall{in, outs, &p});
    return y;  // never recorded (checked above)
  }
  std::vector<Tensor> in{x, w, b};
  run_forward(OpId::Conv2d, x.device(), OpCall{in, outs, &p});
  record_op(OpId::Conv2d, p, in, {x, w}, outs);
  return y;
}

}  // namespace caption
