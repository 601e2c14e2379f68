// Optimisers over a ParameterStore: SGD (momentum, dampening, Nesterov, weight decay),
// Adam and AdamW with PyTorch's update rules (torch.optim as of 1.13), parameter groups
// by name prefix, state export/import for exact resumption, and clip_grad_norm.
//
// Choices:
// - Moments live in one block each, laid out like the store's blocks. A step walks the
//   parameters in registration order and updates each maximal run of adjacent trainable
//   parameters with the same group and the same step count with ONE op call (normally
//   one call per group). Frozen parameters are skipped and keep their state.
// - Step counts are per parameter, as PyTorch keeps them, so that a part unfrozen later
//   (fine-tuning from epoch N) starts its bias corrections at step 1, as torch does.
// - Groups: each group has a name prefix and a learning rate; a parameter joins the group
//   with the longest prefix its name starts with ("" matches every name). Every
//   parameter must find a group and every group a parameter, or construction throws.
// - Where PyTorch skips a parameter whose .grad is None, we update it with its (zero)
//   gradient: in the block every trainable parameter has a gradient. Weight decay and
//   momentum therefore still act on a trainable parameter that got no gradient.
// - State names (export/import): "<param>.step" (int64 scalar), "<param>.momentum_buffer"
//   (SGD with momentum), "<param>.exp_avg", "<param>.exp_avg_sq" (Adam/AdamW), and
//   "group.<i>.lr" (float64 scalar) so set_lr changes resume too. Exported moment
//   tensors are views into the blocks (no copy); import copies and checks every name
//   and shape.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "engine/engine.h"
#include "nn/parameters.h"

namespace caption::nn {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

struct ParamGroup {
  std::string prefix;        // parameters whose names start with it ("" = all)
  std::optional<double> lr;  // unset: the optimiser config's lr
};

// Keeps a reference to its store, which must be finalised first and outlive it.
class Optimizer {
 public:
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // One update of every trainable parameter from the gradient block.
  void step();
  void zero_grad() { store_.zero_grad(); }

  size_t num_groups() const { return groups_.size(); }
  const ParamGroup& group(size_t i) const;
  double lr(size_t group) const { return *this->group(group).lr; }
  void set_lr(size_t group, double lr);
  void set_lr(double lr);  // every group
  // The group of a parameter, and its step count (0 before its first update).
  size_t group_of(const std::string& param) const;
  int64_t step_count(const std::string& param) const;

  NamedTensors export_state() const;
  void import_state(const NamedTensors& state);

  ParameterStore& store() { return store_; }

 protected:
  // `groups` empty: one group of every parameter at `default_lr`.
  Optimizer(ParameterStore& store, std::vector<ParamGroup> groups, double default_lr,
            const char* name);
  // Updates elements [offset, offset + numel) of the blocks; `step` is 1-based.
  virtual void update(int64_t offset, int64_t numel, double lr, int64_t step) = 0;
  // The moment blocks with their state-name suffixes ("exp_avg", ...).
  virtual std::vector<std::pair<std::string, Tensor>> moment_blocks() const = 0;
  // A block of state shaped like the parameter block (zeros).
  Tensor new_block() const;
  // Views of the blocks over a run.
  Tensor param_run(int64_t offset, int64_t numel) const;
  Tensor grad_run(int64_t offset, int64_t numel) const;
  static Tensor run_of(const Tensor& block, int64_t offset, int64_t numel);

  ParameterStore& store_;
  std::string name_;

 private:
  std::vector<ParamGroup> groups_;
  std::vector<size_t> group_of_;  // per parameter
  std::vector<int64_t> steps_;    // per parameter
};

struct SgdConfig {
  double lr = 0.01;  // for groups given without their own lr
  double momentum = 0.0;
  double dampening = 0.0;
  double weight_decay = 0.0;
  Nesterov nesterov = Nesterov::No;
};

class SGD final : public Optimizer {
 public:
  SGD(ParameterStore& store, SgdConfig config, std::vector<ParamGroup> groups = {});
  const SgdConfig& config() const { return config_; }

 private:
  void update(int64_t offset, int64_t numel, double lr, int64_t step) override;
  std::vector<std::pair<std::string, Tensor>> moment_blocks() const override;
  SgdConfig config_;
  Tensor momentum_;  // [store.numel()], undefined without momentum
};

struct AdamConfig {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;  // torch.optim.Adam's default
};

struct AdamWConfig {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.01;  // torch.optim.AdamW's default
};

// Adam (L2 weight decay added to the gradient) and, through AdamW, decoupled decay.
class Adam : public Optimizer {
 public:
  Adam(ParameterStore& store, AdamConfig config, std::vector<ParamGroup> groups = {});
  const AdamConfig& config() const { return config_; }
  WeightDecayMode mode() const { return mode_; }

 protected:
  Adam(ParameterStore& store, AdamConfig config, std::vector<ParamGroup> groups,
       WeightDecayMode mode, const char* name);

 private:
  void update(int64_t offset, int64_t numel, double lr, int64_t step) override;
  std::vector<std::pair<std::string, Tensor>> moment_blocks() const override;
  AdamConfig config_;
  WeightDecayMode mode_;
  Tensor exp_avg_;     // [store.numel()]
  Tensor exp_avg_sq_;  // [store.numel()]
};

class AdamW final : public Adam {
 public:
  AdamW(ParameterStore& store, AdamWConfig config = {}, std::vector<ParamGroup> groups = {});
};

// torch.nn.utils.clip_grad_norm_ (norm type 2) over the trainable parameters' gradients:
// returns the total norm, and when it exceeds max_norm scales every trainable gradient
// by max_norm / (total + 1e-6).
double clip_grad_norm(ParameterStore& store, double max_norm);

}  // namespace caption::nn
