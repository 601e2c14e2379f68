// ResNet construction. Initialisation as torchvision: convolutions kaiming_normal
// (fan_out, relu), batch norm weight 1 and bias 0 (converted weights replace all of it).
// Every conv + batch norm pair goes through conv_batch_norm, which folds the pair into one
// convolution where the batch norm is frozen or in Eval mode (batch_norm_fold.h).
#include "nn/resnet.h"

#include <cstdlib>
#include <string>

#include "engine/autocast.h"
#include "engine/ops/nhwc.h"

namespace caption::nn {

ResNetSpec resnet_spec(int depth) {
  switch (depth) {
    case 18: return {18, BlockKind::Basic, {2, 2, 2, 2}};
    case 34: return {34, BlockKind::Basic, {3, 4, 6, 3}};
    case 50: return {50, BlockKind::Bottleneck, {3, 4, 6, 3}};
    case 101: return {101, BlockKind::Bottleneck, {3, 4, 23, 3}};
    case 152: return {152, BlockKind::Bottleneck, {3, 8, 36, 3}};
    default: break;
  }
  throw Error(str("ResNet depth ", depth, " is not supported (18, 34, 50, 101 or 152)"));
}

bool default_encoder_nhwc() {
  const char* v = std::getenv("CAPTION_ENCODER_NHWC");
  if (v == nullptr) return true;
  const std::string s(v);
  CAPTION_CHECK(s == "0" || s == "1", "CAPTION_ENCODER_NHWC='", s, "' is neither 0 nor 1");
  return s == "1";
}

namespace {
int64_t expansion(BlockKind k) { return k == BlockKind::Bottleneck ? 4 : 1; }

constexpr int64_t kChannelMultiple = ResNet::kNhwcChannelMultiple;

// conv + batch norm folded (one pass over the weights, recomputed at each call as
// batch_norm_fold.h explains), on NHWC bfloat16 x, with the residual added and ReLU
// applied in the convolution's epilogue.
Tensor conv_bn_nhwc(const Conv2d& conv, const BatchNorm2d& bn, const Tensor& x,
                    const Tensor& residual, bool relu) {
  const PackedConv k = fold_pack_nhwc(conv.weight, conv.bias, bn.weight, bn.bias, bn.running_mean,
                                      bn.running_var, bn.eps, kChannelMultiple);
  return conv_nhwc(x, k.weight, k.bias, residual, {conv.options(), relu});
}
// conv + batch norm in training on NHWC bfloat16 x: the convolution on a bfloat16 copy of
// the weight (its gradient reaches the float32 weight), the batch norm with batch
// statistics, then the residual and ReLU, in one pass.
// The weight's input channels are padded to `channel_multiple` (the stem's 3 to 8, as x's).
Tensor train_conv_bn(const Conv2d& conv, const BatchNorm2d& bn, const Tensor& x,
                     const Tensor& residual, bool relu, int64_t channel_multiple) {
  const Tensor y = conv_nhwc(x, nhwc_pack(conv.weight, channel_multiple), Tensor(), Tensor(),
                             {conv.options(), false});
  return batch_norm_nhwc(y, bn.weight, bn.bias, bn.running_mean, bn.running_var, residual,
                         {bn.momentum, bn.eps, relu});
}
Tensor conv_bn_train_nhwc(const Conv2d& conv, const BatchNorm2d& bn, const Tensor& x,
                          const Tensor& residual, bool relu) {
  return train_conv_bn(conv, bn, x, residual, relu, 1);
}

// The layer-by-layer pair: folded where `folding` allows (batch_norm_fold.h).
ConvBnFn layer_by_layer(BatchNormFolding folding) {
  return [folding](const Conv2d& conv, const BatchNorm2d& bn, const Tensor& x,
                   const Tensor& residual, bool relu) {
    return conv_batch_norm(conv, bn, x, folding, {.residual = residual, .relu = relu});
  };
}

bool trains_nhwc(const Conv2d& conv, const BatchNorm2d& bn) {
  return !bn.uses_running_stats() && !conv.bias.defined();
}
}  // namespace

ResidualBlock::Downsample::Downsample(int64_t in, int64_t out, int64_t stride, Generator& gen)
    : conv(Conv2dSpec{in, out, 1, stride, 0, 1, Bias::No}, gen), bn(out) {
  register_module("0", conv);
  register_module("1", bn);
}

ResidualBlock::ResidualBlock(BlockKind kind, int64_t in, int64_t planes, int64_t stride, Generator& gen)
    : kind_(kind) {
  const int64_t out = planes * expansion(kind);
  if (kind == BlockKind::Bottleneck) {
    conv1_ = std::make_unique<Conv2d>(Conv2dSpec{in, planes, 1, 1, 0, 1, Bias::No}, gen);
    bn1_ = std::make_unique<BatchNorm2d>(planes);
    conv2_ = std::make_unique<Conv2d>(Conv2dSpec{planes, planes, 3, stride, 1, 1, Bias::No}, gen);
    bn2_ = std::make_unique<BatchNorm2d>(planes);
    conv3_ = std::make_unique<Conv2d>(Conv2dSpec{planes, out, 1, 1, 0, 1, Bias::No}, gen);
    bn3_ = std::make_unique<BatchNorm2d>(out);
  } else {
    conv1_ = std::make_unique<Conv2d>(Conv2dSpec{in, planes, 3, stride, 1, 1, Bias::No}, gen);
    bn1_ = std::make_unique<BatchNorm2d>(planes);
    conv2_ = std::make_unique<Conv2d>(Conv2dSpec{planes, planes, 3, 1, 1, 1, Bias::No}, gen);
    bn2_ = std::make_unique<BatchNorm2d>(planes);
  }
  register_module("conv1", *conv1_);
  register_module("bn1", *bn1_);
  register_module("conv2", *conv2_);
  register_module("bn2", *bn2_);
  if (conv3_) {
    register_module("conv3", *conv3_);
    register_module("bn3", *bn3_);
  }
  if (stride != 1 || in != out) {
    downsample_ = std::make_unique<Downsample>(in, out, stride, gen);
    register_module("downsample", *downsample_);
  }
}

Tensor ResidualBlock::forward_pairs(const ConvBnFn& conv_bn, const Tensor& x) const {
  Tensor y = conv_bn(*conv1_, *bn1_, x, Tensor(), true);
  if (kind_ == BlockKind::Bottleneck) y = conv_bn(*conv2_, *bn2_, y, Tensor(), true);
  // The identity just before the last convolution, which adds it and applies ReLU.
  const Tensor identity =
      downsample_ ? conv_bn(downsample_->conv, downsample_->bn, x, Tensor(), false) : x;
  if (kind_ == BlockKind::Bottleneck) return conv_bn(*conv3_, *bn3_, y, identity, true);
  return conv_bn(*conv2_, *bn2_, y, identity, true);
}

Tensor ResidualBlock::forward(const Tensor& x, BatchNormFolding folding) const {
  return forward_pairs(layer_by_layer(folding), x);
}

Tensor ResidualBlock::forward_nhwc_bf16(const Tensor& x) const { return forward_pairs(conv_bn_nhwc, x); }

Tensor ResidualBlock::forward_nhwc_train(const Tensor& x) const {
  return forward_pairs(conv_bn_train_nhwc, x);
}

void ResidualBlock::for_each_pair(
    const std::function<void(const Conv2d&, const BatchNorm2d&)>& visit) const {
  visit(*conv1_, *bn1_);
  visit(*conv2_, *bn2_);
  if (conv3_) visit(*conv3_, *bn3_);
  if (downsample_) visit(downsample_->conv, downsample_->bn);
}

bool ResidualBlock::every_pair(PairTest test) const {
  return test(*conv1_, *bn1_) && test(*conv2_, *bn2_) && (!conv3_ || test(*conv3_, *bn3_)) &&
         (!downsample_ || test(downsample_->conv, downsample_->bn));
}

bool ResidualBlock::trains_nhwc() const { return every_pair(nn::trains_nhwc); }

bool ResidualBlock::foldable() const { return every_pair(can_fold_batch_norm); }

Stage::Stage(BlockKind kind, int64_t& in, int64_t planes, int blocks, int64_t stride, Generator& gen) {
  for (int i = 0; i < blocks; ++i) {
    blocks_.push_back(std::make_unique<ResidualBlock>(kind, in, planes, i == 0 ? stride : 1, gen));
    in = planes * expansion(kind);
    register_module(std::to_string(i), *blocks_.back());
  }
}

Tensor Stage::forward_pairs(const ConvBnFn& conv_bn, const Tensor& x) const {
  Tensor y = x;
  for (const auto& b : blocks_) y = b->forward_pairs(conv_bn, y);
  return y;
}

Tensor Stage::forward(const Tensor& x, BatchNormFolding folding) const {
  return forward_pairs(layer_by_layer(folding), x);
}

Tensor Stage::forward_nhwc_bf16(const Tensor& x) const { return forward_pairs(conv_bn_nhwc, x); }

Tensor Stage::forward_nhwc_train(const Tensor& x) const { return forward_pairs(conv_bn_train_nhwc, x); }

void Stage::for_each_pair(const std::function<void(const Conv2d&, const BatchNorm2d&)>& visit) const {
  for (const auto& b : blocks_) b->for_each_pair(visit);
}

bool Stage::trains_nhwc() const {
  for (const auto& b : blocks_)
    if (!b->trains_nhwc()) return false;
  return true;
}

bool Stage::foldable() const {
  for (const auto& b : blocks_)
    if (!b->foldable()) return false;
  return true;
}

ResNet::ResNet(const ResNetSpec& spec, Generator& gen) : spec_(spec) {
  conv1_ = std::make_unique<Conv2d>(Conv2dSpec{3, 64, 7, 2, 3, 1, Bias::No}, gen);
  bn1_ = std::make_unique<BatchNorm2d>(64);
  register_module("conv1", *conv1_);
  register_module("bn1", *bn1_);
  int64_t in = 64;
  const int64_t planes[4] = {64, 128, 256, 512};
  for (int s = 0; s < 4; ++s) {
    stages_.push_back(std::make_unique<Stage>(spec.block, in, planes[s], spec.blocks[s], s == 0 ? 1 : 2, gen));
    register_module("layer" + std::to_string(s + 1), *stages_.back());
  }
}

namespace {
// The stem's max pool: 3x3, stride 2, padding 1.
MaxPool2dOptions stem_pool() {
  MaxPool2dOptions pool;
  pool.kernel = {3, 3};
  pool.stride = Size2{2, 2};
  pool.padding = {1, 1};
  return pool;
}

void check_images(const Tensor& x) {
  CAPTION_CHECK(x.defined() && x.dim() == 4 && x.size(1) == 3,
                "ResNet: expected images [B, 3, H, W], got ",
                x.defined() ? x.describe() : "an undefined tensor");
}
}  // namespace

int ResNet::foldable_stages() const {
  if (!can_fold_batch_norm(*conv1_, *bn1_)) return -1;
  int k = 0;
  while (k < static_cast<int>(stages_.size()) && stages_[k]->foldable()) ++k;
  return k;
}

bool ResNet::nhwc_eligible(const Tensor& x) const {
  return nhwc_bf16 && batch_norm_folding != BatchNormFolding::Off && autocast_enabled() &&
         x.defined() && x.device().is_cuda() && x.dtype() == DType::F32 && !any_requires_grad({x});
}

int ResNet::nhwc_bf16_stages(const Tensor& x) const {
  return nhwc_eligible(x) ? foldable_stages() : -1;
}

bool ResNet::trains_all_nhwc() const {
  if (!trains_nhwc(*conv1_, *bn1_)) return false;
  for (const auto& st : stages_)
    if (!st->trains_nhwc()) return false;
  return true;
}

bool ResNet::runs_nhwc_bf16(const Tensor& x) const {
  return nhwc_bf16_stages(x) == static_cast<int>(stages_.size());
}

int ResNet::nhwc_train_stages(const Tensor& x) const {
  const int k = nhwc_bf16_stages(x);
  if (k < 0) return nhwc_eligible(x) && trains_all_nhwc() ? static_cast<int>(stages_.size()) : 0;
  int t = 0;
  while (k + t < static_cast<int>(stages_.size()) && stages_[k + t]->trains_nhwc()) ++t;
  return t;
}

Tensor ResNet::forward_nhwc_bf16(const Tensor& x, int stages, bool train_nhwc) const {
  check_images(x);
  const int n = static_cast<int>(stages_.size());
  if (stages < 0) stages = n;
  CAPTION_CHECK(stages <= n, "ResNet::forward_nhwc_bf16: ", stages, " stages asked of a ResNet with ", n);
  CAPTION_CHECK(foldable_stages() >= stages,
                "ResNet::forward_nhwc_bf16: every batch norm of the stem and of the first ", stages,
                " stage(s) must be foldable (Eval mode or frozen, and no parameter receiving a "
                "gradient)");
  Tensor y = max_pool_nhwc(conv_bn_nhwc(*conv1_, *bn1_, nhwc_pack(x, kChannelMultiple), Tensor(), true),
                           stem_pool());
  int s = 0;
  for (; s < stages; ++s) y = stages_[s]->forward_nhwc_bf16(y);
  // The stages that train with batch statistics, in NHWC too when asked.
  for (; train_nhwc && s < n && stages_[s]->trains_nhwc(); ++s) y = stages_[s]->forward_nhwc_train(y);
  Tensor out = nhwc_unpack(y);
  // The others run layer by layer.
  for (; s < n; ++s) out = stages_[s]->forward(out, batch_norm_folding);
  return out;
}

Tensor ResNet::forward_nhwc_train(const Tensor& x) const {
  check_images(x);
  CAPTION_CHECK(trains_all_nhwc(),
                "ResNet::forward_nhwc_train: every batch norm must train with batch statistics "
                "(Train mode, not frozen) and no convolution may have a bias");
  Tensor y = max_pool_nhwc(train_conv_bn(*conv1_, *bn1_, nhwc_pack(x, kChannelMultiple), Tensor(),
                                         true, kChannelMultiple),
                           stem_pool());
  for (const auto& st : stages_) y = st->forward_nhwc_train(y);
  return nhwc_unpack(y);
}

Tensor ResNet::forward_pairs(const Tensor& x, const ConvBnFn& conv_bn, bool nhwc) const {
  check_images(x);
  if (!nhwc) {
    Tensor y = max_pool2d(conv_bn(*conv1_, *bn1_, x, Tensor(), true), stem_pool());
    for (const auto& s : stages_) y = s->forward_pairs(conv_bn, y);
    return y;
  }
  Tensor y = max_pool_nhwc(conv_bn(*conv1_, *bn1_, nhwc_pack(x, kChannelMultiple), Tensor(), true),
                           stem_pool());
  for (const auto& s : stages_) y = s->forward_pairs(conv_bn, y);
  return nhwc_unpack(y);
}

void ResNet::for_each_pair(const std::function<void(const Conv2d&, const BatchNorm2d&)>& visit) const {
  visit(*conv1_, *bn1_);
  for (const auto& s : stages_) s->for_each_pair(visit);
}

Tensor ResNet::forward(const Tensor& x) const {
  check_images(x);
  if (const int k = nhwc_bf16_stages(x); k >= 0) return forward_nhwc_bf16(x, k, true);
  if (nhwc_eligible(x) && trains_all_nhwc()) return forward_nhwc_train(x);
  return forward_pairs(x, layer_by_layer(batch_norm_folding), false);
}

}  // namespace caption::nn
