// The backward engine, AccumulateGrad, grad mode, and the generic op nodes.
#include "engine/autograd.h"

#include <unordered_map>
#include <unordered_set>

#include "engine/op_node.h"
#include "engine/ops/elementwise.h"

namespace caption {

namespace {
thread_local bool t_grad_enabled = true;
}

bool grad_enabled() { return t_grad_enabled; }
NoGradGuard::NoGradGuard() : previous_(t_grad_enabled) { t_grad_enabled = false; }
NoGradGuard::~NoGradGuard() { t_grad_enabled = previous_; }

bool any_requires_grad(std::initializer_list<Tensor> tensors) {
  if (!t_grad_enabled) return false;
  for (const Tensor& t : tensors)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}
bool any_requires_grad(const std::vector<Tensor>& tensors) {
  if (!t_grad_enabled) return false;
  for (const Tensor& t : tensors)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

Edge gradient_edge(const Tensor& t) {
  if (!t.defined() || !t.requires_grad()) return {};
  if (t.grad_fn()) return {t.grad_fn(), t.output_nr()};
  // A leaf: its AccumulateGrad node, created once and shared by all uses.
  return {t.grad_accumulator(), 0};
}

void connect(const std::shared_ptr<Node>& node, const std::vector<Tensor>& inputs,
             const std::vector<Tensor>& outputs) {
  node->next.clear();
  for (const Tensor& in : inputs) node->next.push_back(gradient_edge(in));
  node->num_outputs = static_cast<int>(outputs.size());
  for (size_t i = 0; i < outputs.size(); ++i) outputs[i].set_history(node, static_cast<int>(i));
}

std::vector<Tensor> AccumulateGrad::apply(std::vector<Tensor>& grad_outputs) {
  auto leaf = leaf_.lock();
  if (!leaf || !grad_outputs[0].defined()) return {};
  Tensor g = grad_outputs[0].contiguous();
  if (!leaf->grad.defined()) {
    leaf->grad = g.clone();
  } else {
    add_into(leaf->grad, g);  // parameters accumulate: grad += g
  }
  return {};
}

void run_backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads,
                  Tensor::RetainGraph retain) {
  CAPTION_ASSERT(roots.size() == grads.size());
  NoGradGuard no_grad;
  // Count, for each node, the edges that reach it from the roots.
  std::unordered_map<Node*, int> dependencies;
  std::vector<Node*> stack;
  std::unordered_set<Node*> seen;
  std::vector<Edge> root_edges;
  for (const Tensor& r : roots) {
    Edge e = gradient_edge(r);
    CAPTION_CHECK(e.node != nullptr, "backward: the tensor ", r.describe(),
                  " does not require grad and has no grad_fn");
    root_edges.push_back(e);
    if (seen.insert(e.node.get()).second) stack.push_back(e.node.get());
  }
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    for (const Edge& e : n->next) {
      if (!e.node) continue;
      ++dependencies[e.node.get()];
      if (seen.insert(e.node.get()).second) stack.push_back(e.node.get());
    }
  }
  // Pending output gradients per node, summed as they arrive.
  std::unordered_map<Node*, std::vector<Tensor>> pending;
  std::unordered_map<Node*, std::shared_ptr<Node>> keep_alive;
  auto deliver = [&](const Edge& e, const Tensor& g) {
    auto& slots = pending[e.node.get()];
    if (slots.empty()) slots.resize(e.node->num_outputs);
    Tensor& slot = slots[e.input_nr];
    if (!slot.defined()) {
      slot = g;
    } else {
      slot = add(slot, g);  // a tensor used in several places: sum its gradients
    }
    keep_alive[e.node.get()] = e.node;
  };
  std::vector<std::shared_ptr<Node>> ready;
  for (size_t i = 0; i < roots.size(); ++i) {
    Tensor g = grads[i];
    if (!g.defined()) {
      CAPTION_CHECK(roots[i].numel() == 1, "backward: ", roots[i].describe(),
                    " has more than one element; pass its gradient");
      g = Tensor::ones(roots[i].shape(), roots[i].dtype(), roots[i].device());
    }
    CAPTION_CHECK(g.shape() == roots[i].shape(), "backward: gradient ", g.describe(),
                  " does not match ", roots[i].describe());
    deliver(root_edges[i], g);
  }
  for (const Edge& e : root_edges)
    if (dependencies[e.node.get()] == 0) {
      bool already = false;
      for (auto& r : ready) already |= r == e.node;
      if (!already) ready.push_back(e.node);
    }
  while (!ready.empty()) {
    std::shared_ptr<Node> node = ready.back();
    ready.pop_back();
    std::vector<Tensor> outs = std::move(pending[node.get()]);
    pending.erase(node.get());
    keep_alive.erase(node.get());
    if (outs.empty()) outs.resize(node->num_outputs);
    std::vector<Tensor> in_grads = node->apply(outs);
    if (retain == Tensor::RetainGraph::No) node->release();
    for (size_t i = 0; i < node->next.size(); ++i) {
      const Edge& e = node->next[i];
      if (!e.node) continue;
      if (i < in_grads.size() && in_grads[i].defined()) deliver(e, in_grads[i]);
      if (--dependencies[e.node.get()] == 0) {
        auto it = keep_alive.find(e.node.get());
        ready.push_back(it != keep_alive.end() ? it->second : e.node);
      }
    }
  }
}

// ---- OpNode / LambdaNode ----------------------------------------------------------

TensorMeta meta_of(const Tensor& t) {
  if (!t.defined()) return {{}, DType::F32, Device::cpu()};  // an absent optional input
  return {t.shape(), t.dtype(), t.device()};
}

OpNode::OpNode(OpId op, std::shared_ptr<const void> params, std::vector<Tensor> saved,
               std::vector<TensorMeta> inputs, std::vector<TensorMeta> outputs)
    : op_(op), params_(std::move(params)), saved_(std::move(saved)),
      inputs_(std::move(inputs)), outputs_(std::move(outputs)) {}

std::string OpNode::name() const { return str(op_name(op_), "_backward"); }

std::vector<Tensor> OpNode::apply(std::vector<Tensor>& grad_outputs) {
  CAPTION_CHECK(!released_, "backward through ", op_name(op_),
                " a second time: its saved tensors were freed (use RetainGraph::Yes)");
  std::vector<Tensor> in = saved_;
  for (size_t i = 0; i < outputs_.size(); ++i) {
    const Tensor& g = i < grad_outputs.size() ? grad_outputs[i] : Tensor();
    in.push_back(g.defined() ? g.contiguous()
                             : Tensor::zeros(outputs_[i].shape, outputs_[i].dtype,
                                             outputs_[i].device));
  }
  std::vector<Tensor> out(inputs_.size());
  bool any = false;
  for (size_t i = 0; i < inputs_.size(); ++i) {
    if (next[i].node) {
      out[i] = Tensor::empty(inputs_[i].shape, inputs_[i].dtype, inputs_[i].device);
      any = true;
    }
  }
  if (!any) return out;
  const Device device = inputs_.front().device;
  run_backward_kernel(op_, device, OpCall{in, out, params_.get()});
  return out;
}

std::vector<Tensor> LambdaNode::apply(std::vector<Tensor>& grad_outputs) {
  CAPTION_CHECK(fn_ != nullptr, "backward through ", name_,
                " a second time: the graph was freed (use RetainGraph::Yes)");
  std::vector<Tensor> g(outputs_.size());
  for (size_t i = 0; i < outputs_.size(); ++i) {
    g[i] = i < grad_outputs.size() && grad_outputs[i].defined()
               ? grad_outputs[i]
               : Tensor::zeros(outputs_[i].shape, outputs_[i].dtype, outputs_[i].device);
  }
  return fn_(g);
}

void record_lambda(std::string name, const std::vector<Tensor>& inputs,
                   const std::vector<Tensor>& outputs, LambdaNode::Fn fn) {
  if (!any_requires_grad(inputs)) return;
  std::vector<TensorMeta> metas;
  for (const Tensor& t : outputs) metas.push_back(meta_of(t));
  auto node = std::make_shared<LambdaNode>(std::move(name), std::move(metas), std::move(fn));
  connect(node, inputs, outputs);
}

}  // namespace caption
