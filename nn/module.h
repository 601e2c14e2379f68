// Module: the base of every layer and model. A module registers its parameters,
// buffers (state that is saved but not trained, such as batch-norm running statistics)
// and child modules by name, so that the full dotted names of MODEL_SPEC section 7
// ("decoder.lstm.weight_ih", "encoder.layer1.0.bn1.running_mean") come from the
// structure itself. Registration stores pointers to the members, so modules are
// neither copyable nor movable; hold them by value inside their parent or by pointer.
//
// Train/eval mode is recursive. A module can be frozen: its parameters stop requiring
// gradients, and frozen batch norm always runs with its running statistics, whatever
// the mode of its parent (MODEL_SPEC section 3).
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/engine.h"

namespace caption::nn {

enum class Mode { Train, Eval };

struct NamedTensorRef {
  std::string name;
  Tensor* tensor;
};

class Module {
 public:
  Module() = default;
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // Parameters, in registration order, depth first, with dotted names under `prefix`.
  std::vector<NamedTensorRef> named_parameters(const std::string& prefix = "");
  std::vector<NamedTensorRef> named_buffers(const std::string& prefix = "");
  // Parameters then buffers: everything a checkpoint stores.
  std::vector<NamedTensorRef> named_state(const std::string& prefix = "");

  void set_mode(Mode mode);
  void train() { set_mode(Mode::Train); }
  void eval() { set_mode(Mode::Eval); }
  Mode mode() const { return mode_; }
  bool training() const { return mode_ == Mode::Train; }

  // Freezing: parameters stop (or start) requiring gradients, recursively.
  void set_frozen(bool frozen);
  bool frozen() const { return frozen_; }

  // Moves every parameter and buffer to `device` (parameters stay leaves).
  void to(Device device);

  // This module and all its descendants, depth first.
  std::vector<Module*> modules();

 protected:
  // `t` must be a member of the derived module (its address is kept).
  void register_parameter(std::string name, Tensor& t);
  void register_buffer(std::string name, Tensor& t);
  void register_module(std::string name, Module& m);
  virtual void on_mode_change() {}

 private:
  std::vector<std::pair<std::string, Tensor*>> parameters_;
  std::vector<std::pair<std::string, Tensor*>> buffers_;
  std::vector<std::pair<std::string, Module*>> children_;
  Mode mode_ = Mode::Train;
  bool frozen_ = false;
};

// Makes `t` a trainable leaf (float, requires_grad).
Tensor make_parameter(Tensor t);

}  // namespace caption::nn
