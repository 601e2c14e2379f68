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

  // A run: adjacent trainable parameters [begin, end) sharing group and step count, the
  // unit one update call covers (`step` is the 1-based step it takes next).
  struct Run {
    size_t begin = 0, end = 0, group = 0;
    int64_t offset = 0, numel = 0, step = 0;
    bool same_parameters(const Run& o) const {
      return begin == o.begin && end == o.end && group == o.group;
    }
  };
  std::vector<Run> runs() const;

  // step() in two halves, for recorded training steps (nn/train_graph.h):
  // stage_device_step() is the host half: it writes each run's scalars for the coming
  // step (learning rate, bias corrections) into a small float64 block on the device and
  // advances the step counts; device_step() enqueues the updates, which read that block
  // when they run, over the runs staged last. Together they are step() bit for bit. A
  // recording of device_step() stays valid while stage_device_step() stages the same
  // runs (same_parameters) and the block stays where it is (device_scalars()).
  void stage_device_step(Device device);
  void device_step();
  const std::vector<Run>& staged_runs() const { return staged_; }
  const Tensor& device_scalars() const { return dynamic_; }

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
  // The same with the step's scalars read from `dynamic` (on the device, laid out as
  // dynamic_scalars gives them); `step` is the one staged (SGD: whether its momentum
  // buffer starts now).
  virtual void update_device(int64_t offset, int64_t numel, int64_t step, const Tensor& dynamic) = 0;
  virtual std::vector<double> dynamic_scalars(double lr, int64_t step) const = 0;
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
  std::vector<Run> staged_;       // the runs of the staged device step
  Tensor dynamic_;                // their scalars, run after run, on the device
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
  void update_device(int64_t offset, int64_t numel, int64_t step, const Tensor& dynamic) override;
  // The host's lr (dynamic undefined) or the device block's.
  void update_with(int64_t offset, int64_t numel, double lr, int64_t step, const Tensor& dynamic);
  std::vector<double> dynamic_scalars(double lr, int64_t step) const override;
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
  void update_device(int64_t offset, int64_t numel, int64_t step, const Tensor& dynamic) override;
  std::vector<double> dynamic_scalars(double lr, int64_t step) const override;
  AdamOptions options(double lr, int64_t step) const;
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
// The same without reading anything on the host (so that it can be recorded): the norm
// and the factor stay on the device, float64 [2] = {total norm, min(1, max_norm /
// (total + 1e-6))}, and every trainable gradient is scaled by the factor (by exactly 1
// below the threshold: the gradients are those of clip_grad_norm bit for bit).
Tensor clip_grad_norm_on_device(ParameterStore& store, double max_norm);

}  // namespace caption::nn
