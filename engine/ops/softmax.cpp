// Softmax, log-softmax and cross-entropy: validation and shapes here, arithmetic in
// kernels/cpu/softmax.cpp.
//
// Saved for backward: softmax and log-softmax keep only their output (the mask is not
// needed: excluded entries are the zeros / -infs of the output). Cross-entropy keeps the
// logits, the targets and the per-row log-sum-exp [N], a second forward output that is
// never returned; the CUDA side computes and saves the same tensor.
//
// Targets are checked on the host before any kernel runs (for CUDA tensors that is one
// small copy of N integers), so that a bad target is refused with its value and row
// instead of indexing out of bounds; the same pass counts the valid rows, which the
// mean reduction needs on every device.
#include "engine/ops/softmax.h"

#include <algorithm>

#include "engine/dispatch.h"
#include "engine/op_node.h"
#include "engine/op_table.h"
#include "engine/ops/indexing.h"
#include "kernels/cpu/softmax.h"

namespace caption {

namespace kc = kernels::cpu;

namespace {

kc::SoftmaxKind kind_of(OpId op) {
  return op == OpId::Softmax ? kc::SoftmaxKind::Softmax : kc::SoftmaxKind::LogSoftmax;
}

void softmax_cpu_forward(OpId op, const OpCall& c) {
  const auto& p = c.get<SoftmaxParams>();
  const int32_t* mask = c.in[1].defined() ? c.in[1].data<int32_t>() : nullptr;
  dispatch_floating(c.in[0].dtype(), op_name(op).data(), [&]<typename T>() {
    kc::softmax_forward<T>(kind_of(op), c.in[0].data<T>(), mask, p.mask_numel,
                           c.out[0].data<T>(), p.outer, p.dim, p.inner);
  });
}

// Backward: in = {y, grad_y}, out = {grad_x, grad_mask (never defined)}.
void softmax_cpu_backward(OpId op, const OpCall& c) {
  const auto& p = c.get<SoftmaxParams>();
  if (!c.out[0].defined()) return;
  dispatch_floating(c.in[0].dtype(), op_name(op).data(), [&]<typename T>() {
    kc::softmax_backward<T>(kind_of(op), c.in[0].data<T>(), c.in[1].data<T>(),
                            c.out[0].data<T>(), p.outer, p.dim, p.inner);
  });
}

// Forward: in = {logits, targets}, out = {loss [], lse [N]}.
void cross_entropy_cpu_forward(const OpCall& c) {
  const auto& p = c.get<CrossEntropyParams>();
  dispatch_floating(c.in[0].dtype(), "cross_entropy", [&]<typename T>() {
    dispatch_index(c.in[1].dtype(), "cross_entropy", [&]<typename I>() {
      kc::cross_entropy_forward<T, I>(c.in[0].data<T>(), c.in[1].data<I>(), c.out[0].data<T>(),
                                      c.out[1].data<T>(), p.rows, p.classes, p.ignore_index,
                                      static_cast<T>(p.scale));
    });
  });
}

// Backward: in = {logits, targets, lse, grad_loss}, out = {grad_logits, grad_targets
// (never defined)}.
void cross_entropy_cpu_backward(const OpCall& c) {
  const auto& p = c.get<CrossEntropyParams>();
  if (!c.out[0].defined()) return;
  dispatch_floating(c.in[0].dtype(), "cross_entropy backward", [&]<typename T>() {
    dispatch_index(c.in[1].dtype(), "cross_entropy backward", [&]<typename I>() {
      const T grad_scale = c.in[3].data<T>()[0] * static_cast<T>(p.scale);
      kc::cross_entropy_backward<T, I>(c.in[0].data<T>(), c.in[1].data<I>(), c.in[2].data<T>(),
                                       grad_scale, c.out[0].data<T>(), p.rows, p.classes,
                                       p.ignore_index);
    });
  });
}

[[maybe_unused]] const bool registered = [] {
  register_kernels(
      OpId::Softmax, DeviceType::CPU, [](const OpCall& c) { softmax_cpu_forward(OpId::Softmax, c); },
      [](const OpCall& c) { softmax_cpu_backward(OpId::Softmax, c); });
  register_kernels(
      OpId::LogSoftmax, DeviceType::CPU,
      [](const OpCall& c) { softmax_cpu_forward(OpId::LogSoftmax, c); },
      [](const OpCall& c) { softmax_cpu_backward(OpId::LogSoftmax, c); });
  register_kernels(OpId::CrossEntropy, DeviceType::CPU, cross_entropy_cpu_forward,
                   cross_entropy_cpu_backward);
  return true;
}();

Tensor normalised_exponential(OpId op, const Tensor& x_in, int64_t axis, const Tensor& mask_in) {
  const char* name = op_name(op).data();
  CAPTION_CHECK(is_floating(x_in.dtype()), name, ": input must be float32 or float64, got ",
                x_in.describe());
  CAPTION_CHECK(x_in.dim() >= 1, name, ": input must have at least one axis, got ",
                x_in.describe());
  const int64_t ax = normalize_axis(axis, x_in.dim(), name);
  const Tensor x = x_in.contiguous();
  SoftmaxParams p;
  for (int64_t i = 0; i < ax; ++i) p.outer *= x.shape()[i];
  p.dim = x.shape()[ax];
  for (int64_t i = ax + 1; i < x.dim(); ++i) p.inner *= x.shape()[i];
  Tensor mask;
  if (mask_in.defined()) {
    CAPTION_CHECK(mask_in.dtype() == DType::I32, name, ": mask must be int32 (nonzero = keep), got ",
                  mask_in.describe());
    CAPTION_CHECK(mask_in.device() == x.device(), name, ": mask ", mask_in.describe(),
                  " and input ", x.describe(), " are on different devices");
    const Shape& ms = mask_in.shape();
    const bool suffix = ms.size() <= x.shape().size() &&
                        std::equal(ms.begin(), ms.end(), x.shape().end() - ms.size());
    CAPTION_CHECK(suffix, name, ": mask ", shape_string(ms), " must have the input's shape ",
                  shape_string(x.shape()), " or a suffix of it");
    mask = mask_in.contiguous();
    p.mask_numel = mask.numel();
  }
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  // A mask with no elements can only go with an empty input: drop it.
  if (p.mask_numel == 0) mask = Tensor();
  std::vector<Tensor> in{x, mask}, outs{y};
  run_forward(op, x.device(), OpCall{in, outs, &p});
  record_op(op, p, in, outs, outs);
  return y;
}

}  // namespace

Tensor softmax(const Tensor& x, int64_t axis, const Tensor& mask) {
  return normalised_exponential(OpId::Softmax, x, axis, mask);
}

Tensor log_softmax(const Tensor& x, int64_t axis, const Tensor& mask) {
  return normalised_exponential(OpId::LogSoftmax, x, axis, mask);
}

Tensor cross_entropy(const Tensor& logits_in, const Tensor& targets_in, CrossEntropyOptions o) {
  CAPTION_CHECK(logits_in.dim() == 2 && is_floating(logits_in.dtype()),
                "cross_entropy: logits must be float [N, V], got ", logits_in.describe());
  CAPTION_CHECK(targets_in.dim() == 1 &&
                    (targets_in.dtype() == DType::I64 || targets_in.dtype() == DType::I32),
                "cross_entropy: targets must be int64 or int32 [N], got ", targets_in.describe());
  CAPTION_CHECK(targets_in.shape()[0] == logits_in.shape()[0], "cross_entropy: ",
                targets_in.shape()[0], " targets for ", logits_in.shape()[0], " rows of logits (",
                logits_in.describe(), ")");
  CAPTION_CHECK(targets_in.device() == logits_in.device(), "cross_entropy: logits ",
                logits_in.describe(), " and targets ", targets_in.describe(),
                " are on different devices");
  const Tensor logits = logits_in.contiguous(), targets = targets_in.contiguous();
  CrossEntropyParams p;
  p.rows = logits.shape()[0];
  p.classes = logits.shape()[1];
  p.ignore_index = o.ignore_index;
  // Targets on a device are checked (and counted) on the host unless the caller vouches
  // for them (known_valid_rows, or DeviceIndexChecksOff while recording a graph; a sum
  // needs no count).
  CAPTION_CHECK(o.known_valid_rows <= p.rows, "cross_entropy: ", o.known_valid_rows,
                " valid rows claimed for ", p.rows, " rows");
  const bool host_check =
      o.known_valid_rows < 0 && (targets.device().is_cpu() || device_index_checks());
  if (o.known_valid_rows >= 0) p.valid_rows = o.known_valid_rows;
  CAPTION_CHECK(host_check || o.reduction == Reduction::Sum || o.known_valid_rows >= 0,
                "cross_entropy: a mean over unchecked device targets needs their count on the "
                "host; use Reduction::Sum and divide by the count");
  const std::vector<int64_t> t = host_check ? targets.to_vector<int64_t>() : std::vector<int64_t>{};
  for (int64_t r = 0; r < static_cast<int64_t>(t.size()); ++r) {
    if (t[r] == o.ignore_index) continue;
    CAPTION_CHECK(t[r] >= 0 && t[r] < p.classes, "cross_entropy: target ", t[r], " of row ", r,
                  " is out of range for ", p.classes, " classes (ignore_index is ",
                  o.ignore_index, ")");
    ++p.valid_rows;
  }
  if (o.reduction == Reduction::Sum)
    p.scale = 1.0;
  else
    p.scale = p.valid_rows > 0 ? 1.0 / static_cast<double>(p.valid_rows) : 0.0;
  Tensor loss = Tensor::empty({}, logits.dtype(), logits.device());
  Tensor lse = Tensor::empty({p.rows}, logits.dtype(), logits.device());  // [N]
  std::vector<Tensor> in{logits, targets}, outs{loss, lse};
  run_forward(OpId::CrossEntropy, logits.device(), OpCall{in, outs, &p});
  record_op(OpId::CrossEntropy, p, in, {logits, targets, lse}, {loss});
  return loss;
}

}  // namespace caption
