// ParameterStore: declaration, block allocation and the named views.
#include "nn/parameters.h"

namespace caption::nn {

ParameterStore::ParameterStore(Device device, DType dtype) : device_(device), dtype_(dtype) {
  CAPTION_CHECK(is_floating(dtype), "ParameterStore: parameters must be floating point, not ",
                dtype_name(dtype));
}

void ParameterStore::declare(const std::string& name, const Shape& shape, Trainable trainable,
                             Tensor* slot) {
  CAPTION_CHECK(!finalized_, "ParameterStore: cannot add parameter '", name,
                "' after finalize() (the blocks are allocated once)");
  CAPTION_CHECK(!name.empty(), "ParameterStore: a parameter needs a name");
  CAPTION_CHECK(!contains(name), "ParameterStore: parameter '", name, "' added twice");
  for (int64_t s : shape)
    CAPTION_CHECK(s >= 0, "ParameterStore: parameter '", name, "' has a negative size in ",
                  shape_string(shape));
  ParameterEntry e;
  e.name = name;
  e.shape = shape;
  e.offset = numel_;
  e.numel = shape_numel(shape);
  numel_ += e.numel;
  index_.emplace(name, entries_.size());
  entries_.push_back(std::move(e));
  slots_.push_back(slot);
  pending_trainable_.push_back(trainable);
}

void ParameterStore::add(const std::string& name, const Shape& shape, Trainable trainable) {
  declare(name, shape, trainable, nullptr);
}

void ParameterStore::add(const std::string& name, Tensor& slot) {
  CAPTION_CHECK(slot.defined(), "ParameterStore: parameter '", name, "' is undefined");
  CAPTION_CHECK(slot.dtype() == dtype_, "ParameterStore: parameter '", name, "' is ",
                slot.describe(), " but the store holds ", dtype_name(dtype_));
  CAPTION_CHECK(slot.is_leaf(), "ParameterStore: parameter '", name, "' (", slot.describe(),
                ") is the result of an op, not a leaf");
  declare(name, slot.shape(), slot.requires_grad() ? Trainable::Yes : Trainable::No, &slot);
}

void ParameterStore::finalize() {
  CAPTION_CHECK(!finalized_, "ParameterStore: finalize() called twice");
  values_ = Tensor::zeros({numel_}, dtype_, device_);
  grads_ = Tensor::zeros({numel_}, dtype_, device_);
  for (size_t i = 0; i < entries_.size(); ++i) {
    ParameterEntry& e = entries_[i];
    e.value = values_.narrow(0, e.offset, e.numel).reshape(e.shape);
    e.grad = grads_.narrow(0, e.offset, e.numel).reshape(e.shape);
    if (Tensor* slot = slots_[i]) {
      e.value.copy_(*slot);
      *slot = e.value;  // the module now computes with the block
    }
    e.value.set_requires_grad(pending_trainable_[i] == Trainable::Yes);
    e.value.set_grad(e.grad);
  }
  slots_.clear();
  pending_trainable_.clear();
  finalized_ = true;
}

void ParameterStore::check_finalized(const char* what) const {
  CAPTION_CHECK(finalized_, "ParameterStore: ", what, " before finalize()");
}

size_t ParameterStore::find(const std::string& name) const {
  auto it = index_.find(name);
  if (it != index_.end()) return it->second;
  std::string near;
  for (const ParameterEntry& e : entries_) {
    if (near.size() > 200) break;
    if (e.name.rfind(name.substr(0, name.find('.')), 0) == 0)
      near += (near.empty() ? "" : ", ") + e.name;
  }
  throw Error(str("ParameterStore: unknown parameter '", name, "' (", entries_.size(),
                  " parameters", near.empty() ? std::string() : "; similar: " + near, ")"));
}

const ParameterEntry& ParameterStore::entry(const std::string& name) const {
  return entries_[find(name)];
}

Tensor ParameterStore::get(const std::string& name) const {
  const size_t i = find(name);
  check_finalized("get()");
  return entries_[i].value;
}

Tensor ParameterStore::grad(const std::string& name) const {
  const size_t i = find(name);
  check_finalized("grad()");
  return entries_[i].grad;
}

std::vector<std::pair<std::string, Tensor>> ParameterStore::named_parameters() const {
  check_finalized("named_parameters()");
  std::vector<std::pair<std::string, Tensor>> out;
  out.reserve(entries_.size());
  for (const ParameterEntry& e : entries_) out.emplace_back(e.name, e.value);
  return out;
}

int64_t ParameterStore::set_trainable(const std::string& prefix, Trainable trainable) {
  int64_t matched = 0;
  for (size_t i = 0; i < entries_.size(); ++i) {
    if (entries_[i].name.rfind(prefix, 0) != 0) continue;
    ++matched;
    if (finalized_)
      entries_[i].value.set_requires_grad(trainable == Trainable::Yes);
    else
      pending_trainable_[i] = trainable;
  }
  CAPTION_CHECK(matched > 0, "ParameterStore: no parameter name starts with '", prefix, "' (",
                trainable == Trainable::Yes ? "unfreeze" : "freeze", ")");
  return matched;
}

int64_t ParameterStore::freeze(const std::string& prefix) {
  return set_trainable(prefix, Trainable::No);
}
int64_t ParameterStore::unfreeze(const std::string& prefix) {
  return set_trainable(prefix, Trainable::Yes);
}

bool ParameterStore::trainable(const std::string& name) const {
  const size_t i = find(name);
  return finalized_ ? entries_[i].trainable() : pending_trainable_[i] == Trainable::Yes;
}

void ParameterStore::zero_grad() {
  check_finalized("zero_grad()");
  grads_.zero_();
  for (ParameterEntry& e : entries_)
    if (!e.value.grad().same(e.grad)) e.value.set_grad(e.grad);
}

void ParameterStore::sync_grads() {
  check_finalized("sync_grads()");
  for (ParameterEntry& e : entries_) {
    const Tensor g = e.value.grad();
    if (g.same(e.grad)) continue;
    if (g.defined())
      e.grad.copy_(g);
    else
      e.grad.zero_();
    e.value.set_grad(e.grad);
  }
}

Tensor ParameterStore::values() const {
  check_finalized("values()");
  return values_;
}
Tensor ParameterStore::grads() const {
  check_finalized("grads()");
  return grads_;
}

}  // namespace caption::nn
