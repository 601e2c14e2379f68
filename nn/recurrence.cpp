// See recurrence.h.
#include "nn/recurrence.h"

#include "engine/backend.h"
#include "engine/op_node.h"
#include "kernels/cpu/blas.h"

namespace caption::nn {

struct RecurrentLinear::Steps {
  std::vector<Tensor> xs;   // each step's input, in step order (detached)
  std::vector<Tensor> dys;  // each step's output gradient, filled by the backward
  // Under autocast on a GPU: the weight's bfloat16 copy, made once, which every step's
  // products read (forward and the backward's input gradient) instead of converting the
  // weight at each of them (kernels/cpu/blas.h's Bf16Shadow).
  Tensor weight16;
  std::vector<kernels::cpu::Bf16Shadow> shadows;
  const std::vector<kernels::cpu::Bf16Shadow>* shadow_list() const {
    return shadows.empty() ? nullptr : &shadows;
  }
};

RecurrentLinear::RecurrentLinear(const Tensor& weight, const Tensor& bias)
    : steps_(std::make_shared<Steps>()),
      weight_(weight.detach().contiguous()),
      bias_(bias.defined() ? bias.detach().contiguous() : Tensor()),
      record_(grad_enabled() &&
              (weight.requires_grad() || (bias.defined() && bias.requires_grad()))),
      bf16_(autocast_enabled()) {
  if (bf16_ && weight_.device().is_cuda() && weight_.dtype() == DType::F32 && weight_.numel() > 0) {
    steps_->weight16 = Tensor::empty(weight_.shape(), DType::BF16, weight_.device());
    cuda_bf16_copy(weight_.device().index, weight_.data<float>(), weight_.numel(),
                   steps_->weight16.data<uint16_t>());
    steps_->shadows.push_back(
        {weight_.data<float>(), weight_.numel(), steps_->weight16.data<uint16_t>()});
  }
  if (!record_) return;
  token_ = Tensor::zeros({1}, weight.dtype(), weight.device());
  std::shared_ptr<Steps> steps = steps_;
  const bool with_bias = bias.defined(), bf16 = bf16_;
  record_lambda("recurrent_linear_weights", {weight, bias}, {token_},
                [steps, with_bias, bf16](const std::vector<Tensor>&) {
                  std::vector<Tensor> xs, dys;
                  for (size_t i = 0; i < steps->dys.size(); ++i)
                    if (steps->dys[i].defined()) {
                      xs.push_back(steps->xs[i]);
                      dys.push_back(steps->dys[i]);
                    }
                  if (dys.empty()) return std::vector<Tensor>{Tensor(), Tensor()};
                  const Tensor dy = dys.size() == 1 ? dys[0] : concat(dys, 0);
                  const Tensor x = xs.size() == 1 ? xs[0] : concat(xs, 0);
                  AutocastGuard autocast(bf16);
                  return std::vector<Tensor>{matmul(dy, x, {Trans::Yes, Trans::No}),
                                             with_bias ? sum(dy, {0}) : Tensor()};
                });
}

Tensor RecurrentLinear::operator()(const Tensor& x) { return split(x, {weight_.size(0)})[0]; }

const Tensor& RecurrentLinear::bf16_weight() const { return steps_->weight16; }

std::vector<Tensor> RecurrentLinear::split(const Tensor& x, const std::vector<int64_t>& widths) {
  int64_t total = 0;
  for (int64_t w : widths) {
    CAPTION_CHECK(w > 0, "RecurrentLinear::split: block widths must be positive");
    total += w;
  }
  CAPTION_CHECK(total == weight_.size(0), "RecurrentLinear::split: blocks of ", total,
                " columns for an output of ", weight_.size(0));
  const auto blocks_of = [&widths](const Tensor& y) {
    std::vector<Tensor> blocks;
    int64_t offset = 0;
    for (int64_t w : widths) {
      blocks.push_back(widths.size() == 1 ? y : y.narrow(1, offset, w));
      offset += w;
    }
    return blocks;
  };
  const kernels::cpu::Bf16ShadowScope shadow_scope(steps_->shadow_list());
  // Frozen weights: x's own gradient, if any, through plain ops.
  if (!record_) return blocks_of(linear(x, weight_, bias_));
  std::vector<Tensor> blocks;
  {
    NoGradGuard no_grad;
    blocks = blocks_of(linear(x, weight_, bias_));
  }
  const size_t i = steps_->xs.size();
  steps_->xs.push_back(x.detach());
  steps_->dys.emplace_back();
  std::shared_ptr<Steps> steps = steps_;
  const Tensor w = weight_;
  const bool x_grad = x.requires_grad(), bf16 = bf16_;
  record_lambda("recurrent_linear_step", {x, token_}, blocks,
                [steps, i, w, x_grad, bf16](const std::vector<Tensor>& g) {
                  // The blocks' gradients side by side (a block that received none comes
                  // as zeros from the autograd engine).
                  const Tensor dy = g.size() == 1 ? g[0] : concat(g, 1);
                  steps->dys[i] = dy;
                  AutocastGuard autocast(bf16);
                  const kernels::cpu::Bf16ShadowScope weight16(steps->shadow_list());
                  return std::vector<Tensor>{x_grad ? matmul(dy, w) : Tensor(), Tensor()};
                });
  return blocks;
}

struct StepViews::Buffer {
  Tensor grad;  // the base's gradient, summed in place (allocated at the first step's)
  Shape shape;
  DType dtype = DType::F32;
  Device device = Device::cpu();
};

StepViews::StepViews(const Tensor& base)
    : buffer_(std::make_shared<Buffer>()),
      base_(base.detach().contiguous()),
      record_(grad_enabled() && base.requires_grad()) {
  if (!record_) return;
  buffer_->shape = base.shape();
  buffer_->dtype = base.dtype();
  buffer_->device = base.device();
  token_ = Tensor::zeros({1}, base.dtype(), base.device());
  std::shared_ptr<Buffer> buffer = buffer_;
  record_lambda("step_views_base", {base}, {token_}, [buffer](const std::vector<Tensor>&) {
    Tensor g = buffer->grad;
    buffer->grad = Tensor();
    return std::vector<Tensor>{g};
  });
}

Tensor StepViews::view(const std::function<Tensor(const Tensor&)>& fn) {
  if (!record_) return fn(base_);
  Tensor v;
  {
    NoGradGuard no_grad;
    v = fn(base_);
  }
  std::shared_ptr<Buffer> buffer = buffer_;
  record_lambda("step_view", {token_}, {v}, [buffer, fn](const std::vector<Tensor>& g) {
    if (!buffer->grad.defined()) buffer->grad = Tensor::zeros(buffer->shape, buffer->dtype, buffer->device);
    Tensor region = fn(buffer->grad);
    CAPTION_ASSERT(region.is_contiguous(), "StepViews: a view must be a contiguous region");
    add_into(region, g[0]);
    return std::vector<Tensor>{Tensor()};
  });
  return v;
}

}  // namespace caption::nn
