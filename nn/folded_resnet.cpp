// The folded inference snapshot of a ResNet trunk (see folded_resnet.h).
#include "nn/folded_resnet.h"

#include <string>

#include "engine/autocast.h"
#include "engine/autograd.h"
#include "nn/encoder_graph.h"

namespace caption::nn {

namespace {
// The batch norm's dotted name ("layer2.0.bn1"), from its weight's parameter name; "a
// batch norm" when the weight is not one of the trunk's parameters.
std::string name_of(const ResNet& source, const BatchNorm2d& bn) {
  // named_parameters() is not const (it hands out mutable references); only read here.
  for (const auto& ref : const_cast<ResNet&>(source).named_parameters())
    if (ref.tensor == &bn.weight) return ref.name.substr(0, ref.name.size() - std::string(".weight").size());
  return "a batch norm";
}
}  // namespace

FoldedResNet::FoldedResNet(const ResNet& source)
    : source_(source),
      device_(source.conv1().weight.device()),
      runner_(std::make_unique<EncoderRunner>()) {
  NoGradGuard no_grad;
  has_nhwc_ = device_.is_cuda() && source.conv1().weight.dtype() == DType::F32;
  source.for_each_pair([&](const Conv2d& conv, const BatchNorm2d& bn) {
    CAPTION_CHECK(bn.uses_running_stats(), "FoldedResNet: ", name_of(source, bn),
                  " normalises with batch statistics (Train mode, not frozen); only a batch norm "
                  "using its running statistics folds (call eval() or freeze it first)");
    Prepared p;
    p.nchw = fold_batch_norm(conv, bn);
    if (has_nhwc_)
      p.nhwc = fold_pack_nhwc(conv.weight, conv.bias, bn.weight, bn.bias, bn.running_mean,
                              bn.running_var, bn.eps, ResNet::kNhwcChannelMultiple);
    pairs_.emplace(&conv, std::move(p));
  });
}

FoldedResNet::~FoldedResNet() = default;

int64_t FoldedResNet::bytes() const {
  int64_t n = 0;
  for (const auto& [conv, p] : pairs_)
    for (const Tensor* t : {&p.nchw.weight, &p.nchw.bias, &p.nhwc.weight, &p.nhwc.bias})
      if (t->defined()) n += static_cast<int64_t>(t->nbytes());
  return n;
}

EncoderRunnerStats FoldedResNet::runner_stats() const { return runner_->stats(); }

bool FoldedResNet::runs_nhwc(const Tensor& x) const {
  return has_nhwc_ && source_.nhwc_bf16 && autocast_enabled() && x.device().is_cuda() &&
         x.dtype() == DType::F32;
}

Tensor FoldedResNet::pass(const Tensor& x, bool nhwc) const {
  if (nhwc)
    return source_.forward_pairs(
        x,
        [this](const Conv2d& conv, const BatchNorm2d&, const Tensor& in, const Tensor& residual,
               bool relu) {
          const PackedConv& k = pairs_.at(&conv).nhwc;
          return conv_nhwc(in, k.weight, k.bias, residual, {conv.options(), relu});
        },
        true);
  return source_.forward_pairs(
      x,
      [this](const Conv2d& conv, const BatchNorm2d&, const Tensor& in, const Tensor& residual,
             bool relu) {
        const FoldedConv2d& f = pairs_.at(&conv).nchw;
        return conv2d(in, f.weight, f.bias, conv.options(), {.residual = residual, .relu = relu});
      },
      false);
}

Tensor FoldedResNet::forward(const Tensor& x) const {
  CAPTION_CHECK(x.defined(), "FoldedResNet: the images are an undefined tensor");
  CAPTION_CHECK(!(grad_enabled() && x.requires_grad()),
                "FoldedResNet: inference only, but the images ", x.describe(),
                " require grad (run the ResNet itself to differentiate, or under NoGradGuard)");
  NoGradGuard no_grad;
  const bool nhwc = runs_nhwc(x);
  if (!EncoderRunner::graphs_possible(x)) return pass(x, nhwc);
  // The folded weights never change: the snapshot itself is the recorded state.
  return runner_->run(x, nhwc ? 1 : 0, {this}, [this, nhwc](const Tensor& images) {
    return pass(images, nhwc);
  });
}

std::unique_ptr<FoldedResNet> inference_snapshot(const ResNet& source) {
  if (source.batch_norm_folding == BatchNormFolding::Off) return nullptr;
  return std::make_unique<FoldedResNet>(source);
}

}  // namespace caption::nn
