// Learning-rate schedules and early stopping, with PyTorch's semantics, stepped where
// the original project meant them to be (and was not): one-cycle per batch,
// reduce-on-plateau per epoch with its threshold and cooldown, early stopping against
// the best value so far in the right direction. Each exports its state as JSON so a
// resumed run continues exactly.
#pragma once

#include <memory>
#include <vector>

#include <nlohmann/json.hpp>

namespace caption::pipeline {

enum class Direction { Minimize, Maximize };

class LrSchedule {
 public:
  virtual ~LrSchedule() = default;
  virtual double lr(size_t group) const = 0;
  virtual void on_batch_end() {}
  virtual void on_epoch_end(double /*metric*/) {}
  virtual nlohmann::json export_state() const = 0;
  virtual void import_state(const nlohmann::json& state) = 0;
};

class ConstantLr final : public LrSchedule {
 public:
  explicit ConstantLr(std::vector<double> lrs) : lrs_(std::move(lrs)) {}
  double lr(size_t group) const override { return lrs_.at(group); }
  nlohmann::json export_state() const override { return nlohmann::json::object(); }
  void import_state(const nlohmann::json&) override {}

 private:
  std::vector<double> lrs_;
};

// torch.optim.lr_scheduler.OneCycleLR with cosine annealing (three_phase = False),
// parameterised by each group's peak, initial and final rate: the rate rises from
// initial to max over the first pct_start of total_steps, then falls to final.
struct OneCycleOptions {
  std::vector<double> max_lr, initial_lr, final_lr;  // per group
  double pct_start = 0.3;
  long total_steps = 0;
};
class OneCycle final : public LrSchedule {
 public:
  explicit OneCycle(OneCycleOptions options);
  double lr(size_t group) const override;
  void on_batch_end() override { ++step_; }
  nlohmann::json export_state() const override { return {{"step", step_}}; }
  void import_state(const nlohmann::json& s) override { step_ = s.at("step").get<long>(); }
  long step() const { return step_; }

 private:
  OneCycleOptions o_;
  long step_ = 0;
};

// torch.optim.lr_scheduler.ReduceLROnPlateau (threshold_mode 'rel').
struct PlateauOptions {
  Direction direction = Direction::Minimize;
  double factor = 0.6;
  int patience = 3;
  double threshold = 1e-4;
  int cooldown = 0;
  double min_lr = 0;
  double eps = 1e-8;
};
class ReduceOnPlateau final : public LrSchedule {
 public:
  ReduceOnPlateau(std::vector<double> lrs, PlateauOptions options);
  double lr(size_t group) const override { return lrs_.at(group); }
  void on_epoch_end(double metric) override;
  nlohmann::json export_state() const override;
  void import_state(const nlohmann::json& s) override;

 private:
  bool better(double a, double best) const;
  std::vector<double> lrs_;
  PlateauOptions o_;
  double best_;
  int bad_epochs_ = 0, cooldown_counter_ = 0;
};

// Stops after `patience` epochs without improving on the best value so far by more
// than min_delta.
class EarlyStopping {
 public:
  EarlyStopping(int patience, Direction direction, double min_delta = 0)
      : patience_(patience), direction_(direction), min_delta_(min_delta) {}
  // Records an epoch's value; returns true when it is a new best.
  bool update(double value);
  bool should_stop() const { return patience_ > 0 && bad_epochs_ >= patience_; }
  int bad_epochs() const { return bad_epochs_; }
  nlohmann::json export_state() const;
  void import_state(const nlohmann::json& s);

 private:
  int patience_;
  Direction direction_;
  double min_delta_;
  bool has_best_ = false;
  double best_ = 0;
  int bad_epochs_ = 0;
};

}  // namespace caption::pipeline
