// Folding batch norm into the convolution before it (see batch_norm_fold.h).
#include "nn/batch_norm_fold.h"

#include <cstdlib>
#include <string>

namespace caption::nn {

BatchNormFolding default_batch_norm_folding() {
  const char* v = std::getenv("CAPTION_FOLD_BN");
  if (v == nullptr) return BatchNormFolding::WhereCheaper;
  const std::string s(v);
  if (s == "0") return BatchNormFolding::Off;
  if (s == "1") return BatchNormFolding::WhereCheaper;
  if (s == "all") return BatchNormFolding::Always;
  throw Error(str("CAPTION_FOLD_BN='", s, "' is not one of 0 (off), 1 (where cheaper), all"));
}

bool can_fold_batch_norm(const Conv2d& conv, const BatchNorm2d& bn) {
  // any_requires_grad is false whenever grad mode is off.
  return bn.uses_running_stats() &&
         !any_requires_grad({conv.weight, conv.bias, bn.weight, bn.bias});
}

FoldedConv2d fold_batch_norm(const Conv2d& conv, const BatchNorm2d& bn) {
  NoGradGuard no_grad;            // a constant of this forward pass
  const Tensor& w = conv.weight;  // [O, C, kh, kw]
  const int64_t O = w.size(0);
  const Tensor& var = bn.running_var;  // [O]
  CAPTION_CHECK(var.defined() && var.dim() == 1 && var.size(0) == O, "fold_batch_norm: ", O,
                " output channels, but the batch norm's running_var is ",
                var.defined() ? var.describe() : "undefined");
  BatchNormOptions eval;
  eval.mode = BatchNormOptions::Mode::Eval;
  eval.eps = bn.eps;
  // W * s: each output channel's weights are one channel of batch norm's input, normalised
  // with a zero mean and no shift, which leaves exactly the scale s the unfolded path uses.
  const Tensor zero_mean = Tensor::zeros({O}, w.dtype(), w.device());
  FoldedConv2d f;
  f.weight = batch_norm2d(w.reshape({1, O, -1, 1}), bn.weight, Tensor(), zero_mean, var, eval)
                 .reshape(w.shape());
  // The shift: batch norm of the bias (zero when the convolution has none).
  const Tensor b = conv.bias.defined() ? conv.bias.reshape({1, O, 1, 1})
                                       : Tensor::zeros({1, O, 1, 1}, w.dtype(), w.device());
  f.bias = batch_norm2d(b, bn.weight, bn.bias, bn.running_mean, var, eval).reshape({O});
  return f;
}

bool folding_saves_work(const Conv2d& conv, const Shape& input) {
  CAPTION_CHECK(input.size() == 4, "folding_saves_work: input must be [B, C, H, W], got ",
                shape_string(input));
  const Conv2dSpec& s = conv.spec;
  const int64_t ho = conv_output_size(input[2], s.kernel, s.stride, s.padding, s.dilation);
  const int64_t wo = conv_output_size(input[3], s.kernel, s.stride, s.padding, s.dilation);
  return input[0] * ho * wo >= s.in * s.kernel * s.kernel;
}

Tensor conv_batch_norm(const Conv2d& conv, const BatchNorm2d& bn, const Tensor& x,
                       BatchNormFolding folding, const Conv2dEpilogue& epilogue) {
  const bool fold = folding != BatchNormFolding::Off && x.defined() && x.dim() == 4 &&
                    can_fold_batch_norm(conv, bn) &&
                    (folding == BatchNormFolding::Always || folding_saves_work(conv, x.shape()));
  Tensor y;
  if (fold) {
    const FoldedConv2d f = fold_batch_norm(conv, bn);
    if (!any_requires_grad({x, epilogue.residual}))
      return conv2d(x, f.weight, f.bias, conv.options(), epilogue);
    y = conv2d(x, f.weight, f.bias, conv.options());
  } else {
    y = bn.forward(conv.forward(x));
  }
  if (epilogue.residual.defined()) y = add(y, epilogue.residual);
  return epilogue.relu ? relu(y) : y;
}

}  // namespace caption::nn
