// Recording of table ops for autograd: OpNode calls the op's backward kernel with the
// tensors its forward saved, and LambdaNode covers the few non-kernel functions (views,
// device transfers) whose backward is itself a composition of ops.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "engine/autograd.h"
#include "engine/op_table.h"

namespace caption {

struct TensorMeta {
  Shape shape;
  DType dtype;
  Device device;
};
TensorMeta meta_of(const Tensor& t);

class OpNode final : public Node {
 public:
  OpNode(OpId op, std::shared_ptr<const void> params, std::vector<Tensor> saved,
         std::vector<TensorMeta> inputs, std::vector<TensorMeta> outputs);
  std::vector<Tensor> apply(std::vector<Tensor>& grad_outputs) override;
  void release() override { saved_.clear(); released_ = true; }
  std::string name() const override;

 private:
  OpId op_;
  std::shared_ptr<const void> params_;
  std::vector<Tensor> saved_;
  std::vector<TensorMeta> inputs_;
  std::vector<TensorMeta> outputs_;
  bool released_ = false;
};

// Records a forward call of `op` when any input requires grad: `saved` are the tensors
// the backward kernel receives first (stored detached, so outputs may be saved without
// a reference cycle).
template <typename P>
void record_op(OpId op, const P& params, const std::vector<Tensor>& inputs,
               const std::vector<Tensor>& saved, const std::vector<Tensor>& outputs) {
  if (!any_requires_grad(inputs)) return;
  std::vector<Tensor> detached;
  detached.reserve(saved.size());
  for (const Tensor& s : saved) detached.push_back(s.defined() ? s.detach() : s);
  std::vector<TensorMeta> in_meta, out_meta;
  for (const Tensor& t : inputs) in_meta.push_back(meta_of(t));
  for (const Tensor& t : outputs) out_meta.push_back(meta_of(t));
  auto node = std::make_shared<OpNode>(op, std::make_shared<P>(params), std::move(detached),
                                       std::move(in_meta), std::move(out_meta));
  connect(node, inputs, outputs);
}

// A node whose backward is a function of the output gradients (composed of ops, run
// with grad mode off).
class LambdaNode final : public Node {
 public:
  using Fn = std::function<std::vector<Tensor>(const std::vector<Tensor>& grad_outputs)>;
  LambdaNode(std::string name, std::vector<TensorMeta> outputs, Fn fn)
      : name_(std::move(name)), outputs_(std::move(outputs)), fn_(std::move(fn)) {}
  std::vector<Tensor> apply(std::vector<Tensor>& grad_outputs) override;
  void release() override { fn_ = nullptr; }
  std::string name() const override { return name_; }

 private:
  std::string name_;
  std::vector<TensorMeta> outputs_;
  Fn fn_;
};

// Records a LambdaNode when any input requires grad.
void record_lambda(std::string name, const std::vector<Tensor>& inputs,
                   const std::vector<Tensor>& outputs, LambdaNode::Fn fn);

// Runs a forward kernel on freshly allocated outputs: the common path of a table op.
struct NoParams {};

}  // namespace caption
