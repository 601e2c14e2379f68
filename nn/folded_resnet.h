// An inference snapshot of a ResNet trunk: every conv + batch norm pair folded into one
// convolution once, when the snapshot is made, instead of at every pass.
//
// ResNet itself recomputes the folded weights at each call (batch_norm_fold.h: with no
// version counter on tensors, a cache inside the model could go stale unseen). That costs
// a pass over the weights per forward, so at small batches WhereCheaper leaves the deep
// layers unfolded (their batch norm, residual add and ReLU run as separate ops), and on a
// GPU the NHWC pass re-packs every weight inside each recorded graph (53 kernels for
// ResNet-50). A snapshot has neither cost: every pair runs as one convolution with its
// bias, residual and ReLU applied in the convolution's own pass, at every batch size.
//
// What it is: a copy of the folded weights, taken from the source's parameters and
// statistics as they are when it is constructed. Later changes to the source are not
// seen: make a new snapshot after loading other weights or recalibrating. The source's
// structure (its layers' shapes and options) is walked at each pass, so the source must
// outlive the snapshot. The Captioner (pipeline/captioner.h) keeps one beside its model,
// which nothing changes once loaded.
//
// Values: forward(x) equals source.forward(x) with batch_norm_folding = Always as the
// source was when folded, bit for bit (the same folded weights, the same kernels): in
// NCHW on the CPU and on a GPU in float32; on a GPU under autocast, when the source would
// take its NHWC bfloat16 pass (ResNet::nhwc_bf16), that pass with the same packed weights.
// On a CUDA device passes are recorded as graphs per input shape (nn/encoder_graph.h).
//
// Memory: one folded copy of the trunk's convolution weights (float32 NCHW, and on a GPU
// also the packed NHWC bfloat16 copy): ~94 MB (+47 MB) for ResNet-50.
#pragma once

#include <memory>
#include <unordered_map>

#include "engine/ops/nhwc.h"
#include "nn/encoder_graph.h"
#include "nn/resnet.h"

namespace caption::nn {

class FoldedResNet {
 public:
  // Folds every pair of `source` now. Refused, naming the layer, when a batch norm
  // normalises with batch statistics (Train mode and not frozen): only running statistics
  // fold.
  explicit FoldedResNet(const ResNet& source);
  ~FoldedResNet();
  FoldedResNet(const FoldedResNet&) = delete;
  FoldedResNet& operator=(const FoldedResNet&) = delete;

  // The trunk's output [B, D, H/32, W/32] for images x [B, 3, H, W] on the snapshot's
  // device. Inference only: images that require grad (with grad mode on) are refused; the
  // result records no gradient.
  Tensor forward(const Tensor& x) const;

  const ResNet& source() const { return source_; }
  Device device() const { return device_; }
  // Bytes held by the folded weights.
  int64_t bytes() const;
  // Graph recordings and replays on a CUDA device (all zero elsewhere).
  EncoderRunnerStats runner_stats() const;

 private:
  struct Prepared {
    FoldedConv2d nchw;  // conv.weight * s, (conv.bias - mean) * s + beta
    PackedConv nhwc;    // the same packed as fold_pack_nhwc packs it (CUDA, float32 only)
  };
  // Whether the pass over x runs in NHWC bfloat16 (as source.forward(x) would).
  bool runs_nhwc(const Tensor& x) const;
  Tensor pass(const Tensor& x, bool nhwc) const;

  const ResNet& source_;
  Device device_;
  bool has_nhwc_ = false;
  std::unordered_map<const Conv2d*, Prepared> pairs_;
  std::unique_ptr<EncoderRunner> runner_;
};

// The snapshot that inference code keeps beside a model whose weights it does not change
// (the Captioner, an evaluation loop, the feature cache's build, bench_model): null when
// the source's batch norms are not to be folded (batch_norm_folding Off, which
// CAPTION_FOLD_BN=0 makes the default), and the caller then runs the source's own pass
// (CaptionModel::encode takes the null as that).
std::unique_ptr<FoldedResNet> inference_snapshot(const ResNet& source);

}  // namespace caption::nn
