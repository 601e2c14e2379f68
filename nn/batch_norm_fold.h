// A convolution followed by a batch norm that uses its running statistics is one affine
// map per output channel after the product, so at inference it can run as a single
// convolution with scaled weights and a bias:
//   bn(conv(x, W, b)) = conv(x, W * s[o]) + ((b - running_mean) * s + beta),
//   s = gamma / sqrt(running_var + eps).
// That removes a pass over the convolution's output (the batch norm reads and writes it)
// at the price of a pass over the weights.
//
// Why the folded weights are recomputed at every call instead of cached: the engine has no
// version counter on tensors, and parameters and running statistics change in place in
// several ways (checkpoint loads copy into them, calibrate_batch_norm and Train-mode batch
// norm update the statistics, optimiser steps write the parameter block, and user code
// holds the public members), so a cache could only be invalidated by hand, and one
// forgotten path would silently compute with stale weights. Recomputing cannot be stale.
// Its cost is a pass over the weights, which exceeds the pass it saves where a layer has
// more weights per output channel (C * kh * kw) than output positions (B * Ho * Wo): the
// deep layers of a ResNet at batch 1. WhereCheaper folds only where the saving is larger;
// Always folds every eligible pair (tests). Measured on 2 cores, ResNet-50 shapes: the fold
// runs at about 0.1 ms per million weights, so WhereCheaper's folds cost under 0.1 ms per
// forward at batch 1, and the layers it leaves unfolded save almost nothing when folded.
// Where nothing changes the weights (inference through the Captioner), a FoldedResNet
// (nn/folded_resnet.h) folds every pair once, as an explicit snapshot, and skips both costs.
//
// The fold runs batch norm's own Eval-mode op on the weights (seen as [1, O, C*kh*kw, 1],
// with a zero mean and no shift) and on the bias, so s and the shift are computed exactly
// as the unfolded batch norm computes them, on whatever device the tensors are on.
#pragma once

#include "nn/layers.h"

namespace caption::nn {

enum class BatchNormFolding {
  Off,           // always convolution, then batch norm
  WhereCheaper,  // fold eligible pairs whose output positions outnumber their weights per channel
  Always,        // fold every eligible pair
};

// The default folding: CAPTION_FOLD_BN=0 (Off), 1 (WhereCheaper) or all (Always); unset:
// WhereCheaper. Another value is refused, naming the variable.
BatchNormFolding default_batch_norm_folding();

// Whether bn(conv(x)) may be folded here: bn uses its running statistics, and no parameter
// of either layer can receive a gradient from this call (none requires grad, or grad mode
// is off). Gradients with respect to x flow through a folded convolution all the same.
bool can_fold_batch_norm(const Conv2d& conv, const BatchNorm2d& bn);

struct FoldedConv2d {
  Tensor weight;  // [O, C, kh, kw] conv.weight * s[o]
  Tensor bias;    // [O] (conv.bias - running_mean) * s + beta
};
// The folded weights from the current parameters and statistics (no autograd record).
FoldedConv2d fold_batch_norm(const Conv2d& conv, const BatchNorm2d& bn);

// The rule of WhereCheaper for an input of shape [B, C, H, W]: folding costs a pass over the
// weights (O * C*kh*kw values) and saves a pass over the output (O * B*Ho*Wo), so it pays
// where B*Ho*Wo >= C*kh*kw.
bool folding_saves_work(const Conv2d& conv, const Shape& input);

// bn.forward(conv.forward(x)) for x [B, C, H, W], folded where `folding` and
// can_fold_batch_norm allow it; then + epilogue.residual and ReLU as `epilogue` asks. A
// folded pair whose input and residual need no gradient applies them in the
// convolution's own pass over its output (engine/ops/conv.h); otherwise they run as the
// add and relu ops. The values are the same bit for bit either way.
Tensor conv_batch_norm(const Conv2d& conv, const BatchNorm2d& bn, const Tensor& x,
                       BatchNormFolding folding, const Conv2dEpilogue& epilogue = {});

}  // namespace caption::nn
