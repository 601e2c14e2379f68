// Autograd helpers for the decoder's loop over steps, so that its backward does the
// work once per batch that a plain step-by-step recording would do once per step.
//
// - RecurrentLinear: y_t = x_t W^T + b at every step with one weight. Recorded plainly,
//   each step's backward forms a thin weight gradient dy_t^T x_t (K = the step's rows)
//   and autograd adds it into W's gradient: a full [O, I] product and a full [O, I]
//   addition per step. Here each step's backward only keeps dy_t (and forms dx_t), and
//   one node, which autograd runs after every step's (it depends on all of them), forms
//   dW = [dy_1; ...; dy_T]^T [x_1; ...; x_T] and db in one product over all rows.
//   split() hands out the step's output as column blocks: the decoder concatenates the
//   weights of everything that reads h (attention projection, gate, recurrent half of
//   the LSTM) into one RecurrentLinear, one product per step each way.
// - StepViews: views of one tensor taken at every step (the batch's first rows, one
//   time step of a time-major tensor). A plain view's backward materialises a zero
//   tensor of the whole base and autograd adds it up: O(base) per step. Here each step
//   adds its gradient in place into the matching region of one buffer, and one node
//   hands the buffer on as the base's gradient: O(view) per step.
// Both are exact rearrangements of the same sums (in another order), valid for any
// graph: when a step's output receives no gradient its rows are simply absent.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "engine/engine.h"

namespace caption::nn {

class RecurrentLinear {
 public:
  // weight [O, I] (any view; made contiguous once here), bias [O] or undefined.
  RecurrentLinear(const Tensor& weight, const Tensor& bias);
  // One step: x [rows, I] -> [rows, O].
  Tensor operator()(const Tensor& x);
  // One step whose output is used as column blocks of the given widths (summing to O):
  // x [rows, I] -> one [rows, width] view per block, columns of the step's one output
  // (row stride O: the decoder's attention_step and lstm_gates read such blocks in place;
  // other ops copy them). Their gradients are gathered into one [rows, O] gradient, so
  // the step's backward is still one product (several weights that read the same input,
  // concatenated, make one product instead of several, forward and backward).
  std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& widths);
  // Under autocast on a GPU, the weight's bfloat16 copy [O, I] (DType::BF16), made once
  // at construction and read by every step's products in place of the weight; undefined
  // otherwise. Exposed for tests.
  const Tensor& bf16_weight() const;

 private:
  struct Steps;
  std::shared_ptr<Steps> steps_;
  Tensor weight_, bias_;  // detached, contiguous
  Tensor token_;          // the edge to the weights' gradient node
  bool record_ = false;
  bool bf16_ = false;     // autocast at construction, kept for the backward products
};

class StepViews {
 public:
  explicit StepViews(const Tensor& base);
  // view(base) for this step; `view` must give a contiguous region of a contiguous
  // tensor of base's shape (a row prefix, or one index of the leading axis then a row
  // prefix), and is applied again to the gradient buffer.
  Tensor view(const std::function<Tensor(const Tensor&)>& view);

 private:
  struct Buffer;
  std::shared_ptr<Buffer> buffer_;
  Tensor base_;   // detached, contiguous
  Tensor token_;  // the edge to the base's gradient node
  bool record_ = false;
};

}  // namespace caption::nn
