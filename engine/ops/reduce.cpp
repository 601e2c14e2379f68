// Sum and mean: the reduced axes are brought together (a permutation, which autograd
// records as a view) so that the kernel sees one [outer, reduce, inner] block.
#include "engine/ops/reduce.h"

#include <algorithm>

#include "engine/dispatch.h"
#include "engine/op_node.h"
#include "engine/op_table.h"
#include "kernels/cpu/reduce.h"

namespace caption {

namespace {

void reduce_cpu_forward(const OpCall& c) {
  const auto& p = c.get<ReduceParams>();
  dispatch_floating(c.in[0].dtype(), "sum", [&]<typename T>() {
    kernels::cpu::reduce_sum<T>(c.in[0].data<T>(), c.out[0].data<T>(), p.outer, p.reduce,
                                p.inner, static_cast<T>(p.scale));
  });
}

// Backward: in = {grad_out}, out = {grad_x}.
void reduce_cpu_backward(const OpCall& c) {
  const auto& p = c.get<ReduceParams>();
  dispatch_floating(c.in[0].dtype(), "sum backward", [&]<typename T>() {
    kernels::cpu::reduce_sum_backward<T>(c.in[0].data<T>(), c.out[0].data<T>(), p.outer,
                                         p.reduce, p.inner, static_cast<T>(p.scale));
  });
}

// in = {log_probs, base}, out = {indices, log_probs, scores}.
void top_extensions_cpu_forward(const OpCall& c) {
  const auto& p = c.get<TopExtensionsParams>();
  dispatch_floating(c.in[0].dtype(), "top_extensions", [&]<typename T>() {
    kernels::cpu::top_extensions<T>(c.in[0].data<T>(), c.in[1].data<double>(), p.hyps, p.vocab,
                                    p.take, c.out[0].data<int64_t>(), c.out[1].data<T>(),
                                    c.out[2].data<double>());
  });
}

void max_last_cpu_forward(const OpCall& c) {
  const auto& p = c.get<MaxLastParams>();
  dispatch_floating(c.in[0].dtype(), "max_last", [&]<typename T>() {
    kernels::cpu::max_last<T>(c.in[0].data<T>(), c.out[0].data<T>(), c.out[1].data<int64_t>(),
                              p.rows, p.cols);
  });
}

[[maybe_unused]] const bool registered = [] {
  register_kernels(OpId::MaxLast, DeviceType::CPU, max_last_cpu_forward, nullptr);
  register_kernels(OpId::TopExtensions, DeviceType::CPU, top_extensions_cpu_forward, nullptr);
  register_kernels(OpId::Sum, DeviceType::CPU, reduce_cpu_forward, reduce_cpu_backward);
  register_kernels(OpId::Mean, DeviceType::CPU, reduce_cpu_forward, reduce_cpu_backward);
  return true;
}();

Tensor reduce(OpId id, const Tensor& x_in, const std::vector<int64_t>& axes_in, KeepDim keep) {
  const int64_t rank = x_in.dim();
  std::vector<bool> reduced(rank, axes_in.empty());
  for (int64_t a : axes_in) {
    const int64_t ax = normalize_axis(a, rank, op_name(id).data());
    CAPTION_CHECK(!reduced[ax], op_name(id), ": axis ", a, " given twice");
    reduced[ax] = true;
  }
  // Permute so that reduced axes sit together after the first kept axes; a run of
  // reduced axes that is already contiguous needs no permutation.
  std::vector<int64_t> kept, red;
  for (int64_t i = 0; i < rank; ++i) (reduced[i] ? red : kept).push_back(i);
  int64_t first = red.empty() ? rank : red.front();
  const bool together = red.empty() || red.back() - red.front() + 1 == static_cast<int64_t>(red.size());
  Tensor x = x_in;
  std::vector<int64_t> order;
  if (!together) {
    order = kept;
    order.insert(order.end(), red.begin(), red.end());
    x = x_in.permute(order);
    first = static_cast<int64_t>(kept.size());
  }
  x = x.contiguous();
  ReduceParams p;
  const int64_t nred = static_cast<int64_t>(red.size());
  for (int64_t i = 0; i < first; ++i) p.outer *= x.shape()[i];
  for (int64_t i = first; i < first + nred; ++i) p.reduce *= x.shape()[i];
  for (int64_t i = first + nred; i < rank; ++i) p.inner *= x.shape()[i];
  if (id == OpId::Mean) {
    CAPTION_CHECK(p.reduce > 0, "mean over an empty axis of ", x_in.describe());
    p.scale = 1.0 / static_cast<double>(p.reduce);
  }
  Shape out_shape;
  for (int64_t i = 0; i < rank; ++i) {
    if (!reduced[i]) out_shape.push_back(x_in.shape()[i]);
    else if (keep == KeepDim::Yes) out_shape.push_back(1);
  }
  Tensor out = Tensor::empty(out_shape, x.dtype(), x.device());
  std::vector<Tensor> in{x}, outs{out};
  run_forward(id, x.device(), OpCall{in, outs, &p});
  record_op(id, p, in, {}, outs);
  return out;
}

}  // namespace

MaxResult max_last(const Tensor& x_in) {
  CAPTION_CHECK(x_in.defined() && x_in.dim() >= 1, "max_last: expected a tensor of rank >= 1, got ",
                x_in.defined() ? x_in.describe() : "an undefined tensor");
  CAPTION_CHECK(is_floating(x_in.dtype()), "max_last: expected a floating tensor, got ", x_in.describe());
  const int64_t cols = x_in.shape().back();
  CAPTION_CHECK(cols > 0, "max_last: the last axis of ", x_in.describe(), " is empty");
  const Tensor x = x_in.detach().contiguous();
  MaxLastParams p;
  p.cols = cols;
  p.rows = x.numel() / cols;
  Shape out_shape(x.shape().begin(), x.shape().end() - 1);
  MaxResult r{Tensor::empty(out_shape, x.dtype(), x.device()),
              Tensor::empty(out_shape, DType::I64, x.device())};
  if (p.rows == 0) return r;
  std::vector<Tensor> in{x}, outs{r.values, r.indices};
  run_forward(OpId::MaxLast, x.device(), OpCall{in, outs, &p});
  return r;
}

TopExtensions top_extensions(const Tensor& lp_in, const Tensor& base_in, int64_t take) {
  CAPTION_CHECK(lp_in.defined() && lp_in.dim() == 2 && is_floating(lp_in.dtype()),
                "top_extensions: log-probabilities must be floating [K, V], got ",
                lp_in.defined() ? lp_in.describe() : std::string("an undefined tensor"));
  const int64_t K = lp_in.size(0), V = lp_in.size(1);
  CAPTION_CHECK(base_in.defined() && base_in.dtype() == DType::F64 && base_in.dim() == 1 &&
                    base_in.size(0) == K && base_in.device() == lp_in.device(),
                "top_extensions: the hypotheses' scores must be float64 [", K, "] on ",
                lp_in.device().to_string(), ", got ",
                base_in.defined() ? base_in.describe() : std::string("an undefined tensor"));
  CAPTION_CHECK(take >= 0, "top_extensions: take must be non-negative, got ", take);
  TopExtensionsParams p;
  p.hyps = K;
  p.vocab = V;
  p.take = std::min(take, K * V);
  TopExtensions r{Tensor::empty({p.take}, DType::I64, lp_in.device()),
                  Tensor::empty({p.take}, lp_in.dtype(), lp_in.device()),
                  Tensor::empty({p.take}, DType::F64, lp_in.device())};
  if (p.take == 0) return r;
  std::vector<Tensor> in{lp_in.detach().contiguous(), base_in.detach().contiguous()},
      outs{r.indices, r.log_probs, r.scores};
  run_forward(OpId::TopExtensions, lp_in.device(), OpCall{in, outs, &p});
  return r;
}

Tensor sum(const Tensor& x, const std::vector<int64_t>& axes, KeepDim keep) {
  return reduce(OpId::Sum, x, axes, keep);
}
Tensor mean(const Tensor& x, const std::vector<int64_t>& axes, KeepDim keep) {
  return reduce(OpId::Mean, x, axes, keep);
}

}  // namespace caption
