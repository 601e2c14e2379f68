// ParameterStore: every parameter of a model in ONE contiguous block, their gradients in
// one block of the same layout, so that an optimiser step, zeroing the gradients and
// the global gradient norm are single passes (ENGINEERING.md, "Memory and errors").
//
// Design: two phases, so that the blocks are allocated once, at their final size.
//   1. Declare: add(name, shape) declares a new zero-initialised parameter;
//      add(name, slot) adopts an existing tensor, e.g. a module's member from
//      Module::named_parameters(): its current values (any device) are the initial
//      values, its requires_grad flag the initial trainable flag, and finalize()
//      rebinds `slot` to the view, so the module computes with the block from then on.
//      Adopted slots must outlive finalize() (modules are not movable, so theirs do).
//   2. finalize(): allocates the value and gradient blocks on the store's device, copies
//      the initial values in, and makes each parameter a leaf view into the value block
//      with requires_grad = trainable and .grad = the matching view of the gradient
//      block. Autograd's AccumulateGrad adds into an existing .grad in place, so
//      backward writes straight into the gradient block.
// Parameters are laid out in registration order, so parameters registered together
// (a module, the encoder, the decoder) form contiguous runs.
//
// Trainable means requires_grad on the view: freeze()/unfreeze() set it, and so may
// Module::set_frozen; optimisers read it at every step, so both stay consistent.
// Tensor::zero_grad() (which Module::set_frozen calls) drops a .grad view; the next
// zero_grad() or sync_grads() of the store binds it again (keeping any gradient that
// arrived meanwhile), and optimisers call sync_grads() before they read gradients.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "engine/engine.h"

namespace caption::nn {

enum class Trainable { No, Yes };

struct ParameterEntry {
  std::string name;
  Shape shape;
  int64_t offset = 0;  // in elements, into the blocks
  int64_t numel = 0;
  Tensor value;  // shape: a leaf view into the value block (after finalize)
  Tensor grad;   // shape: the matching view of the gradient block (after finalize)
  bool trainable() const { return value.defined() && value.requires_grad(); }
};

class ParameterStore {
 public:
  explicit ParameterStore(Device device = Device::cpu(), DType dtype = DType::F32);
  ParameterStore(const ParameterStore&) = delete;
  ParameterStore& operator=(const ParameterStore&) = delete;

  // ---- phase 1: declaring (refused after finalize) ----
  void add(const std::string& name, const Shape& shape, Trainable trainable = Trainable::Yes);
  void add(const std::string& name, Tensor& slot);
  void finalize();
  bool finalized() const { return finalized_; }

  // ---- phase 2: use (refused before finalize) ----
  // The parameter's view (a handle sharing the block); throws naming the parameter
  // when unknown.
  Tensor get(const std::string& name) const;
  Tensor grad(const std::string& name) const;
  bool contains(const std::string& name) const { return index_.count(name) > 0; }
  const ParameterEntry& entry(const std::string& name) const;
  // All parameters in registration order.
  const std::vector<ParameterEntry>& entries() const { return entries_; }
  std::vector<std::pair<std::string, Tensor>> named_parameters() const;

  // Freezes (unfreezes) every parameter whose name starts with `prefix`; returns how
  // many matched and throws when none did (a misspelt prefix should not pass silently).
  // Allowed in both phases.
  int64_t freeze(const std::string& prefix);
  int64_t unfreeze(const std::string& prefix);
  bool trainable(const std::string& name) const;

  // Zeros the whole gradient block in one pass and binds every .grad to its view.
  void zero_grad();
  // Binds each trainable parameter's .grad to its view again where something replaced
  // or dropped it (a replaced gradient's values are copied into the block first).
  void sync_grads();

  Tensor values() const;  // [numel()] the value block (a handle: writes go to the block)
  Tensor grads() const;   // [numel()] the gradient block
  int64_t numel() const { return numel_; }
  size_t size() const { return entries_.size(); }
  Device device() const { return device_; }
  DType dtype() const { return dtype_; }

 private:
  size_t find(const std::string& name) const;
  void check_finalized(const char* what) const;
  void declare(const std::string& name, const Shape& shape, Trainable trainable, Tensor* slot);
  int64_t set_trainable(const std::string& prefix, Trainable trainable);

  Device device_;
  DType dtype_;
  bool finalized_ = false;
  int64_t numel_ = 0;
  std::vector<ParameterEntry> entries_;
  std::unordered_map<std::string, size_t> index_;
  // Phase 1 only: per entry, the adopted slot (or null) and the declared trainable flag.
  std::vector<Tensor*> slots_;
  std::vector<Trainable> pending_trainable_;
  Tensor values_;  // [numel_]
  Tensor grads_;   // [numel_]
};

}  // namespace caption::nn
