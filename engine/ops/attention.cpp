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

[[maybe_unused]] const bool registered = [] {
  register_kernels(OpId::AdditiveAttention, DeviceType::CPU, attention_cpu_forward,
                   attention_cpu_backward);
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

}  // namespace caption
