// Module registration and recursive traversal.
#include "nn/module.h"

namespace caption::nn {

namespace {
std::string join(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}
}  // namespace

void Module::register_parameter(std::string name, Tensor& t) {
  CAPTION_ASSERT(t.defined(), "parameter ", name, " registered undefined");
  parameters_.emplace_back(std::move(name), &t);
}
void Module::register_buffer(std::string name, Tensor& t) { buffers_.emplace_back(std::move(name), &t); }
void Module::register_module(std::string name, Module& m) { children_.emplace_back(std::move(name), &m); }

std::vector<NamedTensorRef> Module::named_parameters(const std::string& prefix) {
  std::vector<NamedTensorRef> out;
  for (auto& [n, t] : parameters_) out.push_back({join(prefix, n), t});
  for (auto& [n, m] : children_) {
    auto sub = m->named_parameters(join(prefix, n));
    out.insert(out.end(), sub.begin(), sub.end());
  }
  return out;
}

std::vector<NamedTensorRef> Module::named_buffers(const std::string& prefix) {
  std::vector<NamedTensorRef> out;
  for (auto& [n, t] : buffers_) out.push_back({join(prefix, n), t});
  for (auto& [n, m] : children_) {
    auto sub = m->named_buffers(join(prefix, n));
    out.insert(out.end(), sub.begin(), sub.end());
  }
  return out;
}

std::vector<NamedTensorRef> Module::named_state(const std::string& prefix) {
  std::vector<NamedTensorRef> out = named_parameters(prefix);
  auto b = named_buffers(prefix);
  out.insert(out.end(), b.begin(), b.end());
  return out;
}

void Module::set_mode(Mode mode) {
  mode_ = mode;
  for (auto& [n, m] : children_) m->set_mode(mode);
  on_mode_change();
}

void Module::set_frozen(bool frozen) {
  frozen_ = frozen;
  for (auto& [n, t] : parameters_) {
    t->set_requires_grad(!frozen);
    if (frozen) t->zero_grad();
  }
  for (auto& [n, m] : children_) m->set_frozen(frozen);
}

void Module::to(Device device) {
  for (auto& [n, t] : parameters_) {
    if (t->device() == device) continue;
    const bool trainable = t->requires_grad();
    *t = t->detach().to(device);
    t->set_requires_grad(trainable);
  }
  for (auto& [n, t] : buffers_)
    if (t->defined() && t->device() != device) *t = t->detach().to(device);
  for (auto& [n, m] : children_) m->to(device);
}

std::vector<Module*> Module::modules() {
  std::vector<Module*> out{this};
  for (auto& [n, m] : children_) {
    auto sub = m->modules();
    out.insert(out.end(), sub.begin(), sub.end());
  }
  return out;
}

Tensor make_parameter(Tensor t) {
  t = t.detach();
  t.set_requires_grad(true);
  return t;
}

}  // namespace caption::nn
