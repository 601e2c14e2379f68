// ResNet-18/34/50/101/152 exactly as torchvision builds them (v1.5: the stride of a
// downsampling bottleneck sits in its 3x3 convolution), without the average pool and
// the fully connected layer. Parameter names follow torchvision ("layer1.0.conv1.weight",
// "layer2.0.downsample.0.weight"), so converted ImageNet weights load by name.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "nn/batch_norm_fold.h"
#include "nn/layers.h"

namespace caption::nn {

enum class BlockKind { Basic, Bottleneck };

struct ResNetSpec {
  int depth = 50;
  BlockKind block = BlockKind::Bottleneck;
  std::vector<int> blocks;  // per stage
  int64_t out_channels() const { return block == BlockKind::Bottleneck ? 2048 : 512; }
};
// CAPTION_ENCODER_NHWC: 1 (default) or 0.
bool default_encoder_nhwc();

// The spec of a supported depth (18, 34, 50, 101, 152); others are refused.
ResNetSpec resnet_spec(int depth);

// How the trunk computes one conv + batch norm pair on x, then adds `residual` (may be
// undefined) and applies ReLU when `relu`: the layer-by-layer pair (conv_batch_norm),
// the folded NHWC bfloat16 one, the one training in NHWC, or a FoldedResNet's
// precomputed weights. The walks below (forward_pairs) are the ResNet's structure.
using ConvBnFn = std::function<Tensor(const Conv2d& conv, const BatchNorm2d& bn, const Tensor& x,
                                      const Tensor& residual, bool relu)>;

class ResidualBlock : public Module {
 public:
  ResidualBlock(BlockKind kind, int64_t in, int64_t planes, int64_t stride, Generator& gen);
  Tensor forward(const Tensor& x, BatchNormFolding folding) const;
  // The block with every pair computed by `conv_bn`.
  Tensor forward_pairs(const ConvBnFn& conv_bn, const Tensor& x) const;
  // The block on NHWC bfloat16 activations, every batch norm folded (ResNet::forward_nhwc_bf16).
  Tensor forward_nhwc_bf16(const Tensor& x) const;
  // The block training on NHWC bfloat16 activations: each convolution on a bfloat16 copy of
  // its float32 weight, each batch norm with batch statistics (running statistics updated),
  // the residual add and ReLU fused into the last one; gradients reach the float32
  // parameters (ResNet::forward_nhwc_bf16 with train_nhwc).
  Tensor forward_nhwc_train(const Tensor& x) const;
  // Whether every conv + batch norm pair of the block can be folded now.
  bool foldable() const;
  // Whether forward_nhwc_train computes the block's function: every batch norm normalises
  // with batch statistics (Train mode, not frozen) and no convolution has a bias.
  bool trains_nhwc() const;
  // Calls `visit` on every conv + batch norm pair of the block.
  void for_each_pair(const std::function<void(const Conv2d&, const BatchNorm2d&)>& visit) const;

 private:
  // Whether `test` holds for every conv + batch norm pair of the block.
  using PairTest = bool (*)(const Conv2d&, const BatchNorm2d&);
  bool every_pair(PairTest test) const;

  BlockKind kind_;
  std::unique_ptr<Conv2d> conv1_, conv2_, conv3_;
  std::unique_ptr<BatchNorm2d> bn1_, bn2_, bn3_;
  // downsample.0 (1x1 conv) and downsample.1 (batch norm), when shape changes
  struct Downsample : public Module {
    Downsample(int64_t in, int64_t out, int64_t stride, Generator& gen);
    Conv2d conv;
    BatchNorm2d bn;
  };
  std::unique_ptr<Downsample> downsample_;
};

class Stage : public Module {
 public:
  Stage(BlockKind kind, int64_t& in, int64_t planes, int blocks, int64_t stride, Generator& gen);
  Tensor forward(const Tensor& x, BatchNormFolding folding) const;
  Tensor forward_nhwc_bf16(const Tensor& x) const;
  Tensor forward_nhwc_train(const Tensor& x) const;
  Tensor forward_pairs(const ConvBnFn& conv_bn, const Tensor& x) const;
  bool foldable() const;
  bool trains_nhwc() const;
  void for_each_pair(const std::function<void(const Conv2d&, const BatchNorm2d&)>& visit) const;

 private:
  std::vector<std::unique_ptr<ResidualBlock>> blocks_;
};

// The trunk: conv1, bn1, relu, maxpool, layer1..layer4. Input [B, 3, H, W], output
// [B, D, H/32, W/32] with D = 2048 (bottleneck) or 512 (basic).
//
// Two ways to run it. The general one, layer by layer on NCHW float32 (autocast rounds
// each convolution's operands and result to bfloat16), handles training, gradients and
// every device. The inference one, forward_nhwc_bf16, keeps the activations in NHWC
// bfloat16 from the first convolution to the last (engine/ops/nhwc.h): every batch norm
// folded, bias, residual and ReLU applied in the convolution's epilogue, the stem's max
// pool in NHWC; only the input and the output are converted. forward() takes it where it
// computes what autocast asks for: on a GPU, under autocast, with an input that needs no
// gradient and the stem's batch norm foldable (Eval mode or frozen), unless
// CAPTION_ENCODER_NHWC=0 (or nhwc_bf16 = false). When only the first stages fold (a
// partly fine-tuned encoder: --fine-tune from:N freezes the stem and layers 1..N-1), those
// run folded in NHWC, and the stages that train stay in NHWC bfloat16 too
// (forward_nhwc_train: bfloat16 copies of the weights for cuDNN's NHWC convolutions and
// their gradients, batch norm with batch statistics fused with the residual and ReLU);
// only the encoder's output is converted back. A stage that neither folds nor trains
// with batch statistics (Eval mode while differentiated) and the stages after it run
// layer by layer. With the stem trained too (--fine-tune all) the whole trunk trains in
// NHWC bfloat16 (forward_nhwc_train).
class ResNet : public Module {
 public:
  ResNet(const ResNetSpec& spec, Generator& gen);
  Tensor forward(const Tensor& x) const;
  // The stem and the first `stages` stages (-1: all) folded in NHWC bfloat16, then, with
  // train_nhwc, the following stages whose blocks all train_nhwc() in NHWC bfloat16 too,
  // then the other stages layer by layer (any device; the CPU runs the reference
  // kernels). Refuses when a batch norm of that prefix cannot be folded now, or an input
  // requiring grad.
  Tensor forward_nhwc_bf16(const Tensor& x, int stages = -1, bool train_nhwc = false) const;
  // The whole trunk training in NHWC bfloat16 (--fine-tune all): the stem's convolution on
  // the input padded to 8 channels, its batch norm with batch statistics, max pooling with
  // its gradient, then every stage as forward_nhwc_train. Refuses unless trains_all_nhwc().
  Tensor forward_nhwc_train(const Tensor& x) const;
  // Whether every conv + batch norm pair trains with batch statistics and has no conv bias.
  bool trains_all_nhwc() const;
  // How many stages after the folded prefix of nhwc_bf16_stages(x) forward(x) trains in
  // NHWC bfloat16 (all of them when the stem trains too; 0 when it takes the
  // layer-by-layer path).
  int nhwc_train_stages(const Tensor& x) const;
  // How many stages forward(x) runs in NHWC bfloat16 after the stem (0 to 4), or -1 when
  // it does not take that path at all.
  int nhwc_bf16_stages(const Tensor& x) const;
  // Whether forward(x) runs wholly in NHWC bfloat16 (nhwc_bf16_stages(x) == 4).
  bool runs_nhwc_bf16(const Tensor& x) const;
  // -1 when the stem's batch norm cannot be folded now, else the number of leading stages
  // whose batch norms all can.
  int foldable_stages() const;
  // The whole trunk with every pair computed by `conv_bn`: in NCHW (x [B, 3, H, W] as is,
  // max_pool2d after the stem), or with `nhwc` in NHWC bfloat16 (x packed with its channels
  // padded to 8 for the stem, max_pool_nhwc, the output unpacked to NCHW float32).
  Tensor forward_pairs(const Tensor& x, const ConvBnFn& conv_bn, bool nhwc) const;
  // Calls `visit` on every conv + batch norm pair, the stem's first, in the order of the
  // forward pass's walk.
  void for_each_pair(const std::function<void(const Conv2d&, const BatchNorm2d&)>& visit) const;
  // The stem's input channels are padded to this many in NHWC (cuDNN's tensor-core kernels
  // want multiples of 8; every later layer has a multiple of 64).
  static constexpr int64_t kNhwcChannelMultiple = 8;
  const ResNetSpec& spec() const { return spec_; }
  // layer1..layer4, for partial fine-tuning.
  Stage& stage(int i) { return *stages_.at(i - 1); }
  Conv2d& conv1() { return *conv1_; }
  const Conv2d& conv1() const { return *conv1_; }
  BatchNorm2d& bn1() { return *bn1_; }
  // Whether each conv + batch norm pair runs as one folded convolution where that computes
  // the same function (batch_norm_fold.h); Off gives the plain layer-by-layer path.
  BatchNormFolding batch_norm_folding = default_batch_norm_folding();
  // Whether forward() may take the NHWC bfloat16 inference pass (see above); the default
  // is CAPTION_ENCODER_NHWC (0 or 1; unset: 1), another value is refused.
  bool nhwc_bf16 = default_encoder_nhwc();

 private:
  // On a GPU under autocast, x float32 and needing no gradient, CAPTION_ENCODER_NHWC on.
  bool nhwc_eligible(const Tensor& x) const;

  ResNetSpec spec_;
  std::unique_ptr<Conv2d> conv1_;
  std::unique_ptr<BatchNorm2d> bn1_;
  std::vector<std::unique_ptr<Stage>> stages_;
};

}  // namespace caption::nn
