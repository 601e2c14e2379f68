// The additive attention op: input checks, the CPU adapters and table registration.
#include "engine/ops/attention.h"

#include "engine/dispatch.h"
#include "engine/op_node.h"
#include "engine/op_table.h"

namespace caption {

namespace kc = kernels::cpu;

namespace {

void attention_cpu_forward(const OpCall& c) {
  const auto& p = c.get<AttentionParams>();
  dispatch_floating(c.in[0].dtype(), "additive_attention", [&]<typename T>() {
    kc::additive_attention_forward<T>(p.activation, c.in[0].data<T>(), c.in[1].data<T>(),
                                      c.in[2].data<T>(), c.in[3].data<T>(), c.in[4].data<T>(),
                                      c.out[0].data<T>(), c.out[1].data<T>(), p.batch, p.positions,
                                      p.att_dim, p.feat_dim);
  });
}

// Backward: in = {enc_proj, dec_proj, w, features, alpha, grad_context, grad_alpha},
// out = {d_enc_proj, d_dec_proj, d_w, d_bias, d_features}.
void attention_cpu_backward(const OpCall& c) {
  const auto& p = c.get<AttentionParams>();
  dispatch_floating(c.in[0].dtype(), "additive_attention backward", [&]<typename T>() {
    Tensor d_scores = Tensor::empty({p.batch, p.positions}, c.in[0].dtype());  // workspace
    kc::additive_attention_backward<T>(
        p.activation, c.in[0].data<T>(), c.in[1].data<T>(), c.in[2].data<T>(), c.in[3].data<T>(),
        c.in[4].data<T>(), c.in[5].data<T>(), c.in[6].data<T>(), data_or_null<T>(c.out[0]),
        data_or_null<T>(c.out[1]), data_or_null<T>(c.out[2]), data_or_null<T>(c.out[3]),
        data_or_null<T>(c.out[4]), d_scores.data<T>(), p.batch, p.positions, p.att_dim, p.feat_dim);
  });
}

// in = {enc_proj, dec_proj, w, bias, features, gate[, sum][, scale]},
// out = {z, alpha[, sum_out], context}.
void attention_step_cpu_forward(const OpCall& c) {
  const auto& p = c.get<AttentionStepParams>();
  dispatch_floating(c.in[0].dtype(), "attention_step", [&]<typename T>() {
    kc::attention_step_forward<T>(p.activation, attention_step_forward_args<T>(c),
                                  attention_step_shape(p));
  });
}

void attention_step_cpu_backward(const OpCall& c) {
  const auto& p = c.get<AttentionStepParams>();
  dispatch_floating(c.in[0].dtype(), "attention_step backward", [&]<typename T>() {
    kc::attention_step_backward<T>(p.activation, attention_step_backward_args<T>(c),
                                   attention_step_shape(p));
  });
}

[[maybe_unused]] const bool registered = [] {
  register_kernels(OpId::AdditiveAttention, DeviceType::CPU, attention_cpu_forward,
                   attention_cpu_backward);
  register_kernels(OpId::AttentionStep, DeviceType::CPU, attention_step_cpu_forward,
                   attention_step_cpu_backward);
  return true;
}();

void check_input(const Tensor& t, const Shape& expected, const char* what, const Tensor& enc,
                 const Tensor& features) {
  CAPTION_CHECK(t.defined(), "additive_attention: ", what, " is undefined (expected ",
                shape_string(expected), ")");
  CAPTION_CHECK(t.shape() == expected, "additive_attention: ", what, " is ", t.describe(),
                ", expected ", shape_string(expected), " (enc_proj ", enc.describe(), ", features ",
                features.describe(), ")");
  CAPTION_CHECK(t.device() == enc.device() && t.dtype() == enc.dtype(),
                "additive_attention: ", what, " ", t.describe(), " differs from enc_proj ",
                enc.describe(), " in device or dtype");
}

// A 2-D input read in place when its columns are contiguous (a column block of a wider
// row included), otherwise copied; `ld` receives its row stride.
Tensor row_strided(const Tensor& t, int64_t& ld) {
  if (t.dim() == 2 && t.size(0) > 0 && (t.strides()[1] == 1 || t.size(1) == 1) &&
      t.strides()[0] >= t.size(1)) {
    ld = t.size(0) == 1 ? t.size(1) : t.strides()[0];
    return t;
  }
  Tensor c = t.contiguous();
  ld = t.dim() == 2 ? t.size(1) : 0;
  return c;
}

}  // namespace

AttentionResult additive_attention(const Tensor& enc_in, const Tensor& dec_in, const Tensor& w_in,
                                   const Tensor& bias_in, const Tensor& feat_in,
                                   AttentionOptions options) {
  CAPTION_CHECK(enc_in.defined() && enc_in.dim() == 3,
                "additive_attention: enc_proj must be [B, P, A], got ", enc_in.describe());
  CAPTION_CHECK(feat_in.defined() && feat_in.dim() == 3,
                "additive_attention: features must be [B, P, D], got ", feat_in.describe());
  AttentionParams p;
  p.batch = enc_in.size(0);
  p.positions = enc_in.size(1);
  p.att_dim = enc_in.size(2);
  p.feat_dim = feat_in.size(2);
  p.activation = options.activation;
  const int64_t B = p.batch, P = p.positions, A = p.att_dim, D = p.feat_dim;
  CAPTION_CHECK(P > 0, "additive_attention: softmax over zero positions (enc_proj ",
                enc_in.describe(), ")");
  check_input(dec_in, {B, A}, "dec_proj", enc_in, feat_in);
  check_input(w_in, {A}, "w (full_att weight, flattened)", enc_in, feat_in);
  check_input(bias_in, {1}, "bias (full_att bias)", enc_in, feat_in);
  check_input(feat_in, {B, P, D}, "features", enc_in, feat_in);

  std::vector<Tensor> in{enc_in.contiguous(), dec_in.contiguous(), w_in.contiguous(),
                         bias_in.contiguous(), feat_in.contiguous()};
  const Device dev = enc_in.device();
  Tensor context = Tensor::empty({B, D}, enc_in.dtype(), dev);
  Tensor alpha = Tensor::empty({B, P}, enc_in.dtype(), dev);
  std::vector<Tensor> outs{context, alpha};
  run_forward(OpId::AdditiveAttention, dev, OpCall{in, outs, &p});
  record_op(OpId::AdditiveAttention, p, in, {in[0], in[1], in[2], in[4], alpha}, outs);
  return {context, alpha};
}

AttentionStepResult attention_step(const Tensor& enc_in, const Tensor& dec_in, const Tensor& w_in,
                                   const Tensor& bias_in, const Tensor& feat_in,
                                   const Tensor& gate_in, const AttentionRunningSum& running,
                                   AttentionOptions options) {
  CAPTION_CHECK(enc_in.defined() && enc_in.dim() == 3,
                "attention_step: enc_proj must be [B, P, A], got ",
                enc_in.defined() ? enc_in.describe() : std::string("(undefined)"));
  CAPTION_CHECK(feat_in.defined() && feat_in.dim() == 3,
                "attention_step: features must be [B, P, D], got ",
                feat_in.defined() ? feat_in.describe() : std::string("(undefined)"));
  AttentionStepParams p;
  p.batch = enc_in.size(0);
  p.positions = enc_in.size(1);
  p.att_dim = enc_in.size(2);
  p.feat_dim = feat_in.size(2);
  p.activation = options.activation;
  p.running = running.enabled;
  p.has_sum = running.enabled && running.sum.defined();
  p.has_scale = running.enabled && running.scale.defined();
  CAPTION_CHECK(running.enabled || (!running.sum.defined() && !running.scale.defined()),
                "attention_step: a running sum or scale was given with the running sum off");
  const int64_t B = p.batch, P = p.positions, A = p.att_dim, D = p.feat_dim;
  CAPTION_CHECK(P > 0, "attention_step: softmax over zero positions (enc_proj ",
                enc_in.describe(), ")");
  const auto check = [&](const Tensor& t, const Shape& expected, const char* what) {
    CAPTION_CHECK(t.defined(), "attention_step: ", what, " is undefined (expected ",
                  shape_string(expected), ")");
    CAPTION_CHECK(t.shape() == expected, "attention_step: ", what, " is ", t.describe(),
                  ", expected ", shape_string(expected), " (enc_proj ", enc_in.describe(),
                  ", features ", feat_in.describe(), ")");
    CAPTION_CHECK(t.device() == enc_in.device() && t.dtype() == enc_in.dtype(),
                  "attention_step: ", what, " ", t.describe(), " differs from enc_proj ",
                  enc_in.describe(), " in device or dtype");
  };
  check(dec_in, {B, A}, "dec_proj");
  check(w_in, {A}, "w (full_att weight, flattened)");
  check(bias_in, {1}, "bias (full_att bias)");
  check(feat_in, {B, P, D}, "features");
  check(gate_in, {B, D}, "gate (f_beta(h), before the sigmoid)");
  if (p.has_sum) check(running.sum, {B, P}, "running sum");
  Tensor scale;
  if (p.has_scale) {
    CAPTION_CHECK(running.scale.numel() == B && running.scale.dim() >= 1 &&
                      running.scale.size(0) == B,
                  "attention_step: the running sum's scale is ", running.scale.describe(),
                  ", expected ", B, " row weights ([B] or [B, 1])");
    scale = running.scale.reshape({B});
    check(scale, {B}, "running sum's scale");
  }

  std::vector<Tensor> in{enc_in.contiguous(), row_strided(dec_in, p.dec_ld), w_in.contiguous(),
                         bias_in.contiguous(), feat_in.contiguous(),
                         row_strided(gate_in, p.gate_ld)};
  if (p.has_sum) in.push_back(running.sum.contiguous());
  if (p.has_scale) in.push_back(scale.contiguous());
  const Device dev = enc_in.device();
  const DType dt = enc_in.dtype();
  AttentionStepResult r;
  r.z = Tensor::empty({B, D}, dt, dev);
  r.alpha = Tensor::empty({B, P}, dt, dev);
  const Tensor context = Tensor::empty({B, D}, dt, dev);
  std::vector<Tensor> outs{r.z, r.alpha};
  if (p.running) {
    r.alpha_sum = Tensor::empty({B, P}, dt, dev);
    outs.push_back(r.alpha_sum);
  }
  std::vector<Tensor> kernel_outs = outs;
  kernel_outs.push_back(context);
  run_forward(OpId::AttentionStep, dev, OpCall{in, kernel_outs, &p});
  std::vector<Tensor> saved{in[0], in[1], in[2], in[4], in[5], r.alpha, context};
  if (p.has_scale) saved.push_back(in.back());
  record_op(OpId::AttentionStep, p, in, saved, outs);
  return r;
}

}  // namespace caption
