// NHWC bfloat16 inference ops: validation, the CPU adapters and table registration.
#include "engine/ops/nhwc.h"

#include <algorithm>
#include <vector>

#include "engine/autograd.h"
#include "engine/dispatch.h"
#include "engine/op_node.h"
#include "engine/op_table.h"
#include "kernels/bf16.h"

namespace caption {

namespace kc = kernels::cpu;

namespace {

void require_bf16(const Tensor& t, const char* op, const char* what) {
  CAPTION_CHECK(t.defined() && t.dim() == 4 && t.dtype() == DType::BF16, op, ": ", what,
                " must be a 4-d bfloat16 tensor in NHWC, got ",
                t.defined() ? t.describe() : "an undefined tensor");
}

void refuse_grad(std::initializer_list<Tensor> ins, const char* op) {
  CAPTION_CHECK(!any_requires_grad(ins), op,
                ": inference only (no backward), but an input requires grad; run it under "
                "NoGradGuard or on detached tensors");
}

// Logical NCHW sizes of an NHWC shape.
Shape nchw_of(const Shape& nhwc) { return {nhwc[0], nhwc[3], nhwc[1], nhwc[2]}; }

void nhwc_pack_cpu(const OpCall& c) {
  kc::nchw_to_nhwc_bf16(c.get<NhwcPackParams>(), c.in[0].data<float>(), c.out[0].data<uint16_t>());
}

void fold_pack_nhwc_cpu(const OpCall& c) {
  kc::fold_pack_nhwc(c.get<FoldPackParams>(), c.in[0].data<float>(), data_or_null<float>(c.in[1]),
                     data_or_null<float>(c.in[2]), data_or_null<float>(c.in[3]),
                     c.in[4].data<float>(), c.in[5].data<float>(), c.out[0].data<uint16_t>(),
                     c.out[1].data<float>());
}

void nhwc_unpack_cpu(const OpCall& c) {
  kc::nhwc_bf16_to_nchw(c.get<NhwcPackParams>(), c.in[0].data<uint16_t>(), c.out[0].data<float>());
}

// The CPU twin of an NHWC bfloat16 convolution runs the NCHW float32 one on the (exact)
// widened operands: the geometry without its NHWC mark, x [B, C, H, W] and w [O, C, kh, kw]
// widened from the op's inputs, and the im2col workspace. The bf16 mark stays: it keeps
// the twin's products those of the bfloat16 operands themselves (no Winograd transform),
// float32 sums of exact products, as the tensor cores compute them.
struct WidenedConv {
  kc::Conv2dGeometry g;
  Tensor x, w, ws;
};
WidenedConv widened_conv(const ConvNhwcParams& p, const OpCall& c) {
  WidenedConv r{p.g, {}, {}, {}};
  kc::Conv2dGeometry& g = r.g;
  g.nhwc = false;
  r.x = Tensor::empty({g.batch, g.in_channels, g.in_h, g.in_w});
  r.w = Tensor::empty({g.out_channels, g.in_channels, g.kernel_h, g.kernel_w});
  kc::nhwc_bf16_to_nchw({g.batch, g.in_channels, g.in_h * g.in_w}, c.in[0].data<uint16_t>(),
                        r.x.data<float>());
  kc::nhwc_bf16_to_nchw({g.out_channels, g.in_channels, g.kernel_h * g.kernel_w},
                        c.in[1].data<uint16_t>(), r.w.data<float>());
  const int64_t ws_elems = kc::conv2d_workspace_elems(g);
  if (ws_elems > 0) r.ws = Tensor::empty({ws_elems});
  return r;
}

// in = {x, w, bias (may be undefined), residual (may be undefined)}, out = {y}.
void conv_nhwc_cpu(const OpCall& c) {
  const auto& p = c.get<ConvNhwcParams>();
  const WidenedConv k = widened_conv(p, c);
  const kc::Conv2dGeometry& g = k.g;
  const Tensor y = Tensor::empty({g.batch, g.out_channels, g.out_h, g.out_w});
  kc::conv2d_forward<float>(g, k.x.data<float>(), k.w.data<float>(), nullptr, nullptr,
                            y.data<float>(), data_or_null<float>(k.ws));
  uint16_t* out = c.out[0].data<uint16_t>();
  kc::nchw_to_nhwc_bf16({g.batch, g.out_channels, g.out_plane()}, y.data<float>(), out);
  kc::conv_nhwc_epilogue(out, data_or_null<float>(c.in[2]),
                         c.in[3].defined() ? c.in[3].data<uint16_t>() : nullptr,
                         g.batch * g.out_plane(), g.out_channels, p.relu);
}

// Backward: in = {x, w, grad_y}, out = {grad_x, grad_w, grad_bias, grad_residual} (the last
// two always undefined: the op records itself only without an epilogue). The gradients are
// float32 NCHW convolution gradients of the widened operands, rounded to bfloat16 (as
// cuDNN's bfloat16 backward convolutions store them).
void conv_nhwc_cpu_backward(const OpCall& c) {
  const bool want_dx = c.out[0].defined(), want_dw = c.out[1].defined();
  if (!want_dx && !want_dw) return;
  const WidenedConv k = widened_conv(c.get<ConvNhwcParams>(), c);
  const kc::Conv2dGeometry& g = k.g;
  const Tensor gy = Tensor::empty({g.batch, g.out_channels, g.out_h, g.out_w});
  kc::nhwc_bf16_to_nchw({g.batch, g.out_channels, g.out_plane()}, c.in[2].data<uint16_t>(),
                        gy.data<float>());
  const Tensor dx = want_dx ? Tensor::empty(k.x.shape()) : Tensor();
  const Tensor dw = want_dw ? Tensor::empty(k.w.shape()) : Tensor();
  kc::conv2d_backward<float>(g, k.x.data<float>(), k.w.data<float>(), gy.data<float>(),
                             data_or_null<float>(dx), data_or_null<float>(dw), nullptr,
                             data_or_null<float>(k.ws));
  if (want_dx)
    kc::nchw_to_nhwc_bf16({g.batch, g.in_channels, g.in_h * g.in_w}, dx.data<float>(),
                          c.out[0].data<uint16_t>());
  if (want_dw)
    kc::nchw_to_nhwc_bf16({g.out_channels, g.in_channels, g.kernel_h * g.kernel_w},
                          dw.data<float>(), c.out[1].data<uint16_t>());
}

// in = {x, weight, bias, residual, running_mean, running_var} (all but x may be
// undefined), out = {y, save_mean, save_invstd}.
void batch_norm_nhwc_cpu(const OpCall& c) {
  const auto& p = c.get<BatchNormNhwcParams>();
  const Tensor coef = Tensor::empty({2 * p.channels});
  kc::batch_norm_nhwc_forward(p, c.in[0].data<uint16_t>(), data_or_null<float>(c.in[1]),
                              data_or_null<float>(c.in[2]),
                              c.in[3].defined() ? c.in[3].data<uint16_t>() : nullptr,
                              data_or_null<float>(c.in[4]), data_or_null<float>(c.in[5]),
                              c.out[0].data<uint16_t>(), c.out[1].data<float>(),
                              c.out[2].data<float>(), coef.data<float>());
}

// Backward: in = {x, weight, save_mean, save_invstd, y, grad_y}, out = {grad_x,
// grad_weight, grad_bias, grad_residual}, each may be undefined.
void batch_norm_nhwc_cpu_backward(const OpCall& c) {
  const auto& p = c.get<BatchNormNhwcParams>();
  const Tensor coef = Tensor::empty({3 * p.channels});
  auto bf16_or_null = [](const Tensor& t) { return t.defined() ? t.data<uint16_t>() : nullptr; };
  kc::batch_norm_nhwc_backward(p, c.in[0].data<uint16_t>(), c.in[4].data<uint16_t>(),
                               data_or_null<float>(c.in[1]), c.in[2].data<float>(),
                               c.in[3].data<float>(), c.in[5].data<uint16_t>(),
                               bf16_or_null(c.out[0]), data_or_null<float>(c.out[1]),
                               data_or_null<float>(c.out[2]), bf16_or_null(c.out[3]),
                               coef.data<float>());
}

// out = {y, indices (int32; undefined unless differentiated)}.
void max_pool_nhwc_cpu(const OpCall& c) {
  kc::max_pool_nhwc_bf16(c.get<MaxPoolNhwcParams>(), c.in[0].data<uint16_t>(),
                         c.out[0].data<uint16_t>(),
                         c.out[1].defined() ? c.out[1].data<int32_t>() : nullptr);
}

// Backward: in = {indices, grad_y}, out = {grad_x}.
void max_pool_nhwc_cpu_backward(const OpCall& c) {
  if (!c.out[0].defined()) return;
  kc::max_pool_nhwc_backward(c.get<MaxPoolNhwcParams>(), c.in[0].data<int32_t>(),
                             c.in[1].data<uint16_t>(), c.out[0].data<uint16_t>());
}

[[maybe_unused]] const bool registered = [] {
  register_kernels(OpId::NhwcPack, DeviceType::CPU, nhwc_pack_cpu, nullptr);
  register_kernels(OpId::NhwcUnpack, DeviceType::CPU, nhwc_unpack_cpu, nullptr);
  register_kernels(OpId::FoldPackNhwc, DeviceType::CPU, fold_pack_nhwc_cpu, nullptr);
  register_kernels(OpId::ConvNhwc, DeviceType::CPU, conv_nhwc_cpu, conv_nhwc_cpu_backward);
  register_kernels(OpId::BatchNormNhwc, DeviceType::CPU, batch_norm_nhwc_cpu,
                   batch_norm_nhwc_cpu_backward);
  register_kernels(OpId::MaxPoolNhwc, DeviceType::CPU, max_pool_nhwc_cpu,
                   max_pool_nhwc_cpu_backward);
  return true;
}();

// C rounded up to a multiple of m (checked).
int64_t padded_channels(int64_t C, int64_t m, const char* op) {
  CAPTION_CHECK(m >= 1 && m <= 64, op, ": channel_multiple must be between 1 and 64, got ", m);
  return (C + m - 1) / m * m;
}

}  // namespace

Tensor nhwc_pack(const Tensor& x_in, int64_t channel_multiple) {
  CAPTION_CHECK(x_in.defined() && x_in.dim() == 4 && x_in.dtype() == DType::F32,
                "nhwc_pack: input must be a 4-d float32 tensor [B, C, H, W], got ",
                x_in.defined() ? x_in.describe() : "an undefined tensor");
  const Tensor x = x_in.contiguous();
  const Shape& s = x.shape();
  const int64_t cp = padded_channels(s[1], channel_multiple, "nhwc_pack");
  NhwcPackParams p{s[0], s[1], s[2] * s[3], cp};
  Tensor y = Tensor::empty({s[0], s[2], s[3], cp}, DType::BF16, x.device());
  std::vector<Tensor> in{x}, out{y};
  run_forward(OpId::NhwcPack, x.device(), OpCall{in, out, &p});
  // The gradient of a packing is the unpacking of the gradient (exact), the padded
  // channels dropped.
  const int64_t C = s[1];
  record_lambda("nhwc_pack_backward", {x}, {y}, [C, cp](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{nhwc_unpack(cp == C ? g[0] : g[0].narrow(3, 0, C).contiguous())};
  });
  return y;
}

PackedConv fold_pack_nhwc(const Tensor& w_in, const Tensor& conv_bias, const Tensor& gamma,
                          const Tensor& beta, const Tensor& mean, const Tensor& var, double eps,
                          int64_t channel_multiple) {
  CAPTION_CHECK(w_in.defined() && w_in.dim() == 4 && w_in.dtype() == DType::F32,
                "fold_pack_nhwc: weight must be a 4-d float32 tensor [O, C, kh, kw], got ",
                w_in.defined() ? w_in.describe() : "an undefined tensor");
  const int64_t O = w_in.size(0);
  const Tensor* vectors[] = {&conv_bias, &gamma, &beta, &mean, &var};
  const char* names[] = {"conv bias", "gamma", "beta", "running mean", "running var"};
  for (int i = 0; i < 5; ++i) {
    const Tensor& t = *vectors[i];
    const bool optional = i < 3;
    CAPTION_CHECK((optional && !t.defined()) ||
                      (t.defined() && t.dim() == 1 && t.size(0) == O && t.dtype() == DType::F32 &&
                       t.device() == w_in.device()),
                  "fold_pack_nhwc: ", names[i], " must be float32 [", O, "] on ",
                  w_in.device().to_string(), ", got ", t.defined() ? t.describe() : "an undefined tensor");
  }
  CAPTION_CHECK(eps > 0, "fold_pack_nhwc: eps must be positive, got ", eps);
  refuse_grad({w_in, conv_bias, gamma, beta, mean, var}, "fold_pack_nhwc");
  auto contiguous = [](const Tensor& t) { return t.defined() ? t.contiguous() : Tensor(); };
  const Tensor w = w_in.contiguous();
  FoldPackParams p;
  p.out_channels = O;
  p.in_channels = w.size(1);
  p.taps = w.size(2) * w.size(3);
  p.channels_out = padded_channels(p.in_channels, channel_multiple, "fold_pack_nhwc");
  p.eps = eps;
  PackedConv k;
  k.weight = Tensor::empty({O, w.size(2), w.size(3), p.channels_out}, DType::BF16, w.device());
  k.bias = Tensor::empty({O}, DType::F32, w.device());
  std::vector<Tensor> in{w, contiguous(conv_bias), contiguous(gamma), contiguous(beta), contiguous(mean),
                         contiguous(var)};
  std::vector<Tensor> out{k.weight, k.bias};
  run_forward(OpId::FoldPackNhwc, w.device(), OpCall{in, out, &p});
  return k;
}

Tensor nhwc_unpack(const Tensor& x_in) {
  require_bf16(x_in, "nhwc_unpack", "input");
  const Tensor x = x_in.contiguous();
  const Shape& s = x.shape();
  NhwcPackParams p{s[0], s[3], s[1] * s[2], s[3]};
  Tensor y = Tensor::empty(nchw_of(s), DType::F32, x.device());
  std::vector<Tensor> in{x}, out{y};
  run_forward(OpId::NhwcUnpack, x.device(), OpCall{in, out, &p});
  // The gradient of an unpacking is the packing of the gradient, rounded to bfloat16 (as
  // autocast rounds the gradients that reach its bfloat16 values).
  record_lambda("nhwc_unpack_backward", {x}, {y}, [](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{nhwc_pack(g[0])};
  });
  return y;
}

Tensor conv_nhwc(const Tensor& x_in, const Tensor& w_in, const Tensor& b_in, const Tensor& r_in,
                 ConvNhwcOptions o) {
  require_bf16(x_in, "conv_nhwc", "input");
  require_bf16(w_in, "conv_nhwc", "weight");
  const bool differentiate = any_requires_grad({x_in, w_in, b_in, r_in});
  CAPTION_CHECK(!differentiate || (!b_in.defined() && !r_in.defined() && !o.relu),
                "conv_nhwc: an input requires grad; only the plain convolution (no bias, "
                "residual or ReLU, which batch_norm_nhwc applies in training) is differentiable");
  const Shape xs = nchw_of(x_in.shape()), ws = nchw_of(w_in.shape());
  CAPTION_CHECK(xs[1] == ws[1], "conv_nhwc: input ", x_in.describe(), " has ", xs[1],
                " channels but weight ", w_in.describe(), " expects ", ws[1]);
  CAPTION_CHECK(!b_in.defined() || (b_in.dim() == 1 && b_in.size(0) == ws[0] &&
                                    b_in.dtype() == DType::F32),
                "conv_nhwc: bias ", b_in.describe(), " must be float32 [", ws[0], "]");
  ConvNhwcParams p;
  p.g = conv2d_params(xs, ws, o.conv, "conv_nhwc", x_in);
  p.g.bf16 = true;
  p.g.nhwc = true;
  p.relu = o.relu;
  const Shape out_shape{p.g.batch, p.g.out_h, p.g.out_w, p.g.out_channels};
  if (r_in.defined()) {
    require_bf16(r_in, "conv_nhwc", "residual");
    CAPTION_CHECK(r_in.shape() == out_shape, "conv_nhwc: residual ", r_in.describe(),
                  " does not match the output [", p.g.batch, ", ", p.g.out_h, ", ", p.g.out_w,
                  ", ", p.g.out_channels, "]");
  }
  for (const Tensor* t : {&w_in, &b_in, &r_in})
    CAPTION_CHECK(!t->defined() || t->device() == x_in.device(), "conv_nhwc: input ",
                  x_in.describe(), " and ", t->describe(), " are on different devices");
  const Tensor x = x_in.contiguous(), w = w_in.contiguous();
  const Tensor b = b_in.defined() ? b_in.contiguous() : Tensor();
  const Tensor r = r_in.defined() ? r_in.contiguous() : Tensor();
  Tensor y = Tensor::empty(out_shape, DType::BF16, x.device());
  std::vector<Tensor> in{x, w, b, r}, out{y};
  run_forward(OpId::ConvNhwc, x.device(), OpCall{in, out, &p});
  record_op(OpId::ConvNhwc, p, in, {x, w}, out);
  return y;
}

Tensor batch_norm_nhwc(const Tensor& x_in, const Tensor& weight, const Tensor& bias,
                       const Tensor& running_mean, const Tensor& running_var,
                       const Tensor& residual, BatchNormNhwcOptions o) {
  require_bf16(x_in, "batch_norm_nhwc", "input");
  const int64_t C = x_in.size(3);
  const Tensor* vectors[] = {&weight, &bias, &running_mean, &running_var};
  const char* names[] = {"weight", "bias", "running_mean", "running_var"};
  for (int i = 0; i < 4; ++i) {
    const Tensor& t = *vectors[i];
    CAPTION_CHECK(!t.defined() || (t.dim() == 1 && t.size(0) == C && t.dtype() == DType::F32 &&
                                   t.device() == x_in.device()),
                  "batch_norm_nhwc: ", names[i], " must be float32 [", C, "] on ",
                  x_in.device().to_string(), " for input ", x_in.describe(), ", got ",
                  t.describe());
    CAPTION_CHECK(i < 2 || !t.defined() || t.is_contiguous(), "batch_norm_nhwc: ", names[i],
                  " must be contiguous (it is updated in place)");
  }
  CAPTION_CHECK(!any_requires_grad({running_mean, running_var}),
                "batch_norm_nhwc: the running statistics must not require grad");
  if (residual.defined()) {
    require_bf16(residual, "batch_norm_nhwc", "residual");
    CAPTION_CHECK(residual.shape() == x_in.shape() && residual.device() == x_in.device(),
                  "batch_norm_nhwc: residual ", residual.describe(), " does not match input ",
                  x_in.describe());
  }
  BatchNormNhwcParams p;
  p.rows = x_in.numel() / std::max<int64_t>(C, 1);
  p.channels = C;
  p.momentum = o.momentum;
  p.eps = o.eps;
  p.relu = o.relu;
  CAPTION_CHECK(p.rows > 1, "batch_norm_nhwc: training mode needs more than one value per "
                "channel, got input ", x_in.describe());
  CAPTION_CHECK(o.eps > 0, "batch_norm_nhwc: eps must be positive, got ", o.eps);
  auto contiguous = [](const Tensor& t) { return t.defined() ? t.contiguous() : Tensor(); };
  const Tensor x = x_in.contiguous(), w = contiguous(weight), b = contiguous(bias),
               r = contiguous(residual);
  Tensor y = Tensor::empty(x.shape(), DType::BF16, x.device());
  Tensor save_mean = Tensor::empty({C}, DType::F32, x.device());
  Tensor save_invstd = Tensor::empty({C}, DType::F32, x.device());
  {
    std::vector<Tensor> in{x, w, b, r, contiguous(running_mean).detach(),
                          contiguous(running_var).detach()};
    std::vector<Tensor> out{y, save_mean, save_invstd};
    run_forward(OpId::BatchNormNhwc, x.device(), OpCall{in, out, &p});
  }
  record_op(OpId::BatchNormNhwc, p, {x, w, b, r}, {x, w, save_mean, save_invstd, y}, {y});
  return y;
}

Tensor max_pool_nhwc(const Tensor& x_in, MaxPool2dOptions o) {
  require_bf16(x_in, "max_pool_nhwc", "input");
  const Shape xs = nchw_of(x_in.shape());
  MaxPoolNhwcParams p;
  p.g = max_pool2d_params(xs, o, "max_pool_nhwc", x_in);
  p.g.planes = xs[0];
  p.channels = xs[1];
  const Tensor x = x_in.contiguous();
  const Shape out_shape{xs[0], p.g.out_h, p.g.out_w, xs[1]};
  Tensor y = Tensor::empty(out_shape, DType::BF16, x.device());
  // The maxima's positions, only where a backward will read them.
  const bool differentiate = any_requires_grad({x_in});
  Tensor indices = differentiate ? Tensor::empty(out_shape, DType::I32, x.device()) : Tensor();
  std::vector<Tensor> in{x}, out{y, indices};
  run_forward(OpId::MaxPoolNhwc, x.device(), OpCall{in, out, &p});
  record_op(OpId::MaxPoolNhwc, p, in, {indices}, {y});
  return y;
}

}  // namespace caption
