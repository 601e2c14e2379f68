// Optimisers: group assignment, the run-per-block step, state export/import, and
// gradient clipping. The arithmetic is in the optimiser ops (engine/ops/optim.h).
#include "nn/optim.h"

#include <cmath>
#include <set>
#include <unordered_map>

namespace caption::nn {

Optimizer::Optimizer(ParameterStore& store, std::vector<ParamGroup> groups, double default_lr,
                     const char* name)
    : store_(store), name_(name), groups_(std::move(groups)) {
  CAPTION_CHECK(store.finalized(), name_, ": the parameter store must be finalised first");
  if (groups_.empty()) groups_.push_back({"", default_lr});
  for (ParamGroup& g : groups_) {
    if (!g.lr) g.lr = default_lr;
    CAPTION_CHECK(*g.lr >= 0, name_, ": invalid learning rate ", *g.lr, " for group '", g.prefix,
                  "'");
  }
  std::vector<int64_t> members(groups_.size(), 0);
  for (const ParameterEntry& e : store.entries()) {
    size_t best = groups_.size();
    for (size_t g = 0; g < groups_.size(); ++g)
      if (e.name.rfind(groups_[g].prefix, 0) == 0 &&
          (best == groups_.size() || groups_[g].prefix.size() > groups_[best].prefix.size()))
        best = g;
    CAPTION_CHECK(best < groups_.size(), name_, ": parameter '", e.name,
                  "' matches no parameter group prefix");
    group_of_.push_back(best);
    ++members[best];
  }
  for (size_t g = 0; g < groups_.size(); ++g)
    CAPTION_CHECK(members[g] > 0, name_, ": parameter group ", g, " (prefix '", groups_[g].prefix,
                  "') has no parameters");
  steps_.assign(store.entries().size(), 0);
}

const ParamGroup& Optimizer::group(size_t i) const {
  CAPTION_CHECK(i < groups_.size(), name_, ": no parameter group ", i, " (", groups_.size(),
                " groups)");
  return groups_[i];
}

void Optimizer::set_lr(size_t i, double lr) {
  group(i);  // range check
  CAPTION_CHECK(lr >= 0, name_, ": invalid learning rate ", lr);
  groups_[i].lr = lr;
}

void Optimizer::set_lr(double lr) {
  for (size_t i = 0; i < groups_.size(); ++i) set_lr(i, lr);
}

size_t Optimizer::group_of(const std::string& param) const {
  const ParameterEntry& e = store_.entry(param);
  return group_of_[static_cast<size_t>(&e - store_.entries().data())];
}

int64_t Optimizer::step_count(const std::string& param) const {
  const ParameterEntry& e = store_.entry(param);
  return steps_[static_cast<size_t>(&e - store_.entries().data())];
}

Tensor Optimizer::new_block() const {
  return Tensor::zeros({store_.numel()}, store_.dtype(), store_.device());
}

Tensor Optimizer::run_of(const Tensor& block, int64_t offset, int64_t numel) {
  return block.narrow(0, offset, numel);
}
Tensor Optimizer::param_run(int64_t offset, int64_t numel) const {
  return run_of(store_.values(), offset, numel);
}
Tensor Optimizer::grad_run(int64_t offset, int64_t numel) const {
  return run_of(store_.grads(), offset, numel);
}

std::vector<Optimizer::Run> Optimizer::runs() const {
  const std::vector<ParameterEntry>& entries = store_.entries();
  std::vector<Run> out;
  size_t i = 0;
  while (i < entries.size()) {
    if (!entries[i].trainable()) {
      ++i;
      continue;
    }
    // The maximal run of adjacent trainable parameters sharing group and step count.
    size_t j = i + 1;
    while (j < entries.size() && entries[j].trainable() && group_of_[j] == group_of_[i] &&
           steps_[j] == steps_[i])
      ++j;
    Run r;
    r.begin = i;
    r.end = j;
    r.group = group_of_[i];
    r.offset = entries[i].offset;
    r.numel = entries[j - 1].offset + entries[j - 1].numel - r.offset;
    r.step = steps_[i] + 1;
    out.push_back(r);
    i = j;
  }
  return out;
}

void Optimizer::step() {
  NoGradGuard no_grad;
  store_.sync_grads();
  for (const Run& r : runs()) {
    if (r.numel > 0) update(r.offset, r.numel, *groups_[r.group].lr, r.step);
    for (size_t k = r.begin; k < r.end; ++k) steps_[k] = r.step;
  }
}

void Optimizer::stage_device_step(Device device) {
  std::vector<Run> next = runs();
  std::vector<double> scalars;
  for (const Run& r : next) {
    const std::vector<double> s = dynamic_scalars(*groups_[r.group].lr, r.step);
    scalars.insert(scalars.end(), s.begin(), s.end());
  }
  const int64_t n = static_cast<int64_t>(scalars.size());
  // The block keeps its place while its size does (a recording reads it there).
  if (!dynamic_.defined() || dynamic_.numel() != n || dynamic_.device() != device)
    dynamic_ = Tensor::empty({n}, DType::F64, device);
  if (n > 0) dynamic_.copy_(Tensor::from_vector<double>(scalars, {n}));
  for (const Run& r : next)
    for (size_t k = r.begin; k < r.end; ++k) steps_[k] = r.step;
  staged_ = std::move(next);
}

void Optimizer::device_step() {
  NoGradGuard no_grad;
  store_.sync_grads();
  int64_t at = 0;
  for (const Run& r : staged_) {
    const int64_t k = static_cast<int64_t>(dynamic_scalars(*groups_[r.group].lr, r.step).size());
    if (r.numel > 0) update_device(r.offset, r.numel, r.step, dynamic_.narrow(0, at, k));
    at += k;
  }
}

NamedTensors Optimizer::export_state() const {
  NamedTensors out;
  const auto blocks = moment_blocks();
  for (size_t i = 0; i < store_.entries().size(); ++i) {
    const ParameterEntry& e = store_.entries()[i];
    out.emplace_back(e.name + ".step",
                     Tensor::from_vector(std::vector<int64_t>{steps_[i]}, Shape{}));
    for (const auto& [suffix, block] : blocks)
      out.emplace_back(e.name + "." + suffix, run_of(block, e.offset, e.numel).reshape(e.shape));
  }
  for (size_t g = 0; g < groups_.size(); ++g)
    out.emplace_back(str("group.", g, ".lr"), Tensor::scalar(*groups_[g].lr, DType::F64));
  return out;
}

void Optimizer::import_state(const NamedTensors& state) {
  NoGradGuard no_grad;
  // Everything is checked before anything is written, so a bad state changes nothing.
  struct Target {
    Tensor dst;  // undefined for step counts and learning rates
    int64_t* step = nullptr;
    size_t lr_group = 0;
    bool is_lr = false;
  };
  std::unordered_map<std::string, Target> expected;
  const auto blocks = moment_blocks();
  for (size_t i = 0; i < store_.entries().size(); ++i) {
    const ParameterEntry& e = store_.entries()[i];
    expected[e.name + ".step"] = Target{Tensor(), &steps_[i]};
    for (const auto& [suffix, block] : blocks)
      expected[e.name + "." + suffix] = Target{run_of(block, e.offset, e.numel).reshape(e.shape)};
  }
  for (size_t g = 0; g < groups_.size(); ++g) {
    Target t;
    t.lr_group = g;
    t.is_lr = true;
    expected[str("group.", g, ".lr")] = t;
  }
  std::set<std::string> seen;
  for (const auto& [name, t] : state) {
    auto it = expected.find(name);
    CAPTION_CHECK(it != expected.end(), name_, " state: unexpected tensor '", name, "'");
    CAPTION_CHECK(seen.insert(name).second, name_, " state: tensor '", name, "' given twice");
    CAPTION_CHECK(t.defined(), name_, " state: tensor '", name, "' is undefined");
    const Target& target = it->second;
    if (target.dst.defined()) {
      CAPTION_CHECK(t.shape() == target.dst.shape() && t.dtype() == target.dst.dtype(), name_,
                    " state: '", name, "' is ", t.describe(), ", expected ", target.dst.describe());
    } else {
      CAPTION_CHECK(t.numel() == 1, name_, " state: '", name, "' must hold one value, got ",
                    t.describe());
      const double v = t.item();
      CAPTION_CHECK(target.is_lr ? v >= 0 : (v >= 0 && v == std::floor(v)), name_, " state: '",
                    name, "' has an invalid value ", v);
    }
  }
  for (const auto& [name, target] : expected)
    CAPTION_CHECK(seen.count(name), name_, " state: tensor '", name, "' is missing");
  for (const auto& [name, t] : state) {
    const Target& target = expected.at(name);
    if (target.dst.defined())
      target.dst.detach().copy_(t);
    else if (target.is_lr)
      groups_[target.lr_group].lr = t.item();
    else
      *target.step = static_cast<int64_t>(t.item());
  }
}

// ---- SGD ----

SGD::SGD(ParameterStore& store, SgdConfig config, std::vector<ParamGroup> groups)
    : Optimizer(store, std::move(groups), config.lr, "SGD"), config_(config) {
  // Validate once here rather than at the first step.
  CAPTION_CHECK(config.momentum >= 0, "SGD: invalid momentum ", config.momentum);
  CAPTION_CHECK(config.weight_decay >= 0, "SGD: invalid weight_decay ", config.weight_decay);
  CAPTION_CHECK(config.nesterov == Nesterov::No || (config.momentum > 0 && config.dampening == 0),
                "SGD: Nesterov momentum requires a momentum and zero dampening");
  if (config.momentum != 0) momentum_ = new_block();
}

void SGD::update(int64_t offset, int64_t numel, double lr, int64_t step) {
  update_with(offset, numel, lr, step, Tensor());
}

void SGD::update_device(int64_t offset, int64_t numel, int64_t step, const Tensor& dynamic) {
  update_with(offset, numel, 0.0, step, dynamic);
}

void SGD::update_with(int64_t offset, int64_t numel, double lr, int64_t step, const Tensor& dynamic) {
  SgdOptions o;
  o.lr = lr;
  o.momentum = config_.momentum;
  o.dampening = config_.dampening;
  o.weight_decay = config_.weight_decay;
  o.nesterov = config_.nesterov;
  o.step = step;
  sgd_step(param_run(offset, numel), grad_run(offset, numel),
           momentum_.defined() ? run_of(momentum_, offset, numel) : Tensor(), o, dynamic);
}

std::vector<double> SGD::dynamic_scalars(double lr, int64_t) const { return {lr}; }

std::vector<std::pair<std::string, Tensor>> SGD::moment_blocks() const {
  if (!momentum_.defined()) return {};
  return {{"momentum_buffer", momentum_}};
}

// ---- Adam and AdamW ----

Adam::Adam(ParameterStore& store, AdamConfig config, std::vector<ParamGroup> groups)
    : Adam(store, config, std::move(groups), WeightDecayMode::L2, "Adam") {}

Adam::Adam(ParameterStore& store, AdamConfig config, std::vector<ParamGroup> groups,
           WeightDecayMode mode, const char* name)
    : Optimizer(store, std::move(groups), config.lr, name), config_(config), mode_(mode) {
  CAPTION_CHECK(config.eps >= 0, name_, ": invalid epsilon ", config.eps);
  CAPTION_CHECK(config.beta1 >= 0 && config.beta1 < 1, name_, ": invalid beta1 ", config.beta1);
  CAPTION_CHECK(config.beta2 >= 0 && config.beta2 < 1, name_, ": invalid beta2 ", config.beta2);
  CAPTION_CHECK(config.weight_decay >= 0, name_, ": invalid weight_decay ", config.weight_decay);
  exp_avg_ = new_block();
  exp_avg_sq_ = new_block();
}

AdamOptions Adam::options(double lr, int64_t step) const {
  AdamOptions o;
  o.lr = lr;
  o.beta1 = config_.beta1;
  o.beta2 = config_.beta2;
  o.eps = config_.eps;
  o.weight_decay = config_.weight_decay;
  o.mode = mode_;
  o.step = step;
  return o;
}

void Adam::update(int64_t offset, int64_t numel, double lr, int64_t step) {
  adam_step(param_run(offset, numel), grad_run(offset, numel), run_of(exp_avg_, offset, numel),
            run_of(exp_avg_sq_, offset, numel), options(lr, step));
}

void Adam::update_device(int64_t offset, int64_t numel, int64_t step, const Tensor& dynamic) {
  adam_step(param_run(offset, numel), grad_run(offset, numel), run_of(exp_avg_, offset, numel),
            run_of(exp_avg_sq_, offset, numel), options(0.0, step), dynamic);
}

std::vector<double> Adam::dynamic_scalars(double lr, int64_t step) const {
  const std::array<double, 3> s = adam_dynamic_scalars(options(lr, step));
  return {s.begin(), s.end()};
}

std::vector<std::pair<std::string, Tensor>> Adam::moment_blocks() const {
  return {{"exp_avg", exp_avg_}, {"exp_avg_sq", exp_avg_sq_}};
}

namespace {
AdamConfig as_adam(const AdamWConfig& c) {
  return AdamConfig{c.lr, c.beta1, c.beta2, c.eps, c.weight_decay};
}
}  // namespace

AdamW::AdamW(ParameterStore& store, AdamWConfig config, std::vector<ParamGroup> groups)
    : Adam(store, as_adam(config), std::move(groups), WeightDecayMode::Decoupled, "AdamW") {}

// ---- clipping ----

namespace {
// Checks max_norm, binds the gradients to the block, and returns the runs of adjacent
// trainable parameters: one reduction (and one scale) per run.
std::vector<std::pair<int64_t, int64_t>> clip_runs(ParameterStore& store, double max_norm) {
  CAPTION_CHECK(max_norm >= 0 && std::isfinite(max_norm), "clip_grad_norm: invalid max_norm ",
                max_norm);
  store.sync_grads();
  std::vector<std::pair<int64_t, int64_t>> runs;  // offset, numel
  for (const ParameterEntry& e : store.entries()) {
    if (!e.trainable() || e.numel == 0) continue;
    if (!runs.empty() && runs.back().first + runs.back().second == e.offset)
      runs.back().second += e.numel;
    else
      runs.emplace_back(e.offset, e.numel);
  }
  return runs;
}
}  // namespace

Tensor clip_grad_norm_on_device(ParameterStore& store, double max_norm) {
  NoGradGuard no_grad;
  const std::vector<std::pair<int64_t, int64_t>> runs = clip_runs(store, max_norm);
  CAPTION_CHECK(!runs.empty(), "clip_grad_norm: no trainable parameters");
  std::vector<Tensor> sums;
  for (const auto& [offset, numel] : runs) sums.push_back(sum_of_squares(store.grads().narrow(0, offset, numel)));
  const Tensor coef = clip_coefficient(sums, max_norm);
  const Tensor factor = coef.narrow(0, 1, 1);
  for (const auto& [offset, numel] : runs) scale_by(store.grads().narrow(0, offset, numel), factor);
  return coef;
}

double clip_grad_norm(ParameterStore& store, double max_norm) {
  NoGradGuard no_grad;
  const std::vector<std::pair<int64_t, int64_t>> runs = clip_runs(store, max_norm);
  double total_sq = 0;
  for (const auto& [offset, numel] : runs)
    total_sq += sum_of_squares(store.grads().narrow(0, offset, numel)).item();
  const double total = std::sqrt(total_sq);
  const double coef = max_norm / (total + 1e-6);
  if (coef < 1.0)
    for (const auto& [offset, numel] : runs) scale(store.grads().narrow(0, offset, numel), coef);
  return total;
}

}  // namespace caption::nn
