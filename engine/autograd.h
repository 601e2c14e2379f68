// Reverse-mode automatic differentiation.
//
// Each recorded op creates a Node that knows how to turn the gradients of its outputs
// into the gradients of its inputs, and an Edge per input to the Node that produced it
// (or to the AccumulateGrad node of a leaf). backward() counts how many consumers each
// node has, runs nodes in an order where every consumer comes first, sums gradients of
// tensors used in more than one place, and releases each node's saved tensors once it
// has run (unless the graph is retained).
//
// The gradient rule: backward kernels write (=) the gradients of their inputs into new
// buffers; the engine adds them up where a tensor feeds several ops, and AccumulateGrad
// adds (+=) into a leaf's .grad, so that parameters accumulate across backward calls
// until zero_grad().
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace caption {

struct Edge {
  std::shared_ptr<Node> node;  // null: this input needs no gradient
  int input_nr = 0;            // which output of `node` the input was
};

class Node {
 public:
  virtual ~Node() = default;
  // grad_outputs has one entry per output; an entry is undefined where no gradient
  // reached that output (treat as zero). Returns one gradient per edge (undefined
  // where the edge needs none).
  virtual std::vector<Tensor> apply(std::vector<Tensor>& grad_outputs) = 0;
  // Frees saved tensors after a backward pass that does not retain the graph.
  virtual void release() {}
  virtual std::string name() const = 0;
  std::vector<Edge> next;
  int num_outputs = 1;
};

// The node of a leaf that requires grad: adds incoming gradients into leaf.grad.
class AccumulateGrad final : public Node {
 public:
  explicit AccumulateGrad(const std::shared_ptr<TensorImpl>& leaf) : leaf_(leaf) {}
  std::vector<Tensor> apply(std::vector<Tensor>& grad_outputs) override;
  std::string name() const override { return "AccumulateGrad"; }

 private:
  std::weak_ptr<TensorImpl> leaf_;
};

// Whether ops are recorded for autograd (thread-local; on by default).
bool grad_enabled();
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};

// The edge through which a gradient for `t` flows (null node when t needs none).
Edge gradient_edge(const Tensor& t);

// True when grad mode is on and any of the tensors requires grad.
bool any_requires_grad(std::initializer_list<Tensor> tensors);
bool any_requires_grad(const std::vector<Tensor>& tensors);

// Runs the backward pass from `roots` with seed gradients `grads` (same length).
void run_backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads,
                  Tensor::RetainGraph retain);

// Connects `node` to the inputs (edges) and marks outputs as its results.
void connect(const std::shared_ptr<Node>& node, const std::vector<Tensor>& inputs,
             const std::vector<Tensor>& outputs);

}  // namespace caption
