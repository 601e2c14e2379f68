// Schedules: the formulas of torch.optim.lr_scheduler (torch 1.13).
#include "pipeline/schedule.h"

#include <cmath>
#include <limits>

#include "engine/error.h"

namespace caption::pipeline {

namespace {
double anneal_cos(double start, double end, double pct) {
  return end + (start - end) / 2.0 * (std::cos(M_PI * pct) + 1.0);
}
}  // namespace

OneCycle::OneCycle(OneCycleOptions options) : o_(std::move(options)) {
  CAPTION_CHECK(o_.total_steps > 0, "one-cycle: total_steps must be positive");
  CAPTION_CHECK(o_.pct_start > 0 && o_.pct_start < 1, "one-cycle: pct_start must be in (0, 1)");
  const size_t n = o_.max_lr.size();
  CAPTION_CHECK(n > 0 && o_.initial_lr.size() == n && o_.final_lr.size() == n,
                "one-cycle: one max, initial and final rate per group");
}

double OneCycle::lr(size_t g) const {
  // PyTorch: phase 1 ends at float(pct_start * total_steps) - 1, phase 2 at total - 1;
  // steps past the end keep the final rate.
  const double end1 = o_.pct_start * static_cast<double>(o_.total_steps) - 1.0;
  const double end2 = static_cast<double>(o_.total_steps) - 1.0;
  const double s = std::min(static_cast<double>(step_), end2);
  if (s <= end1) return anneal_cos(o_.initial_lr.at(g), o_.max_lr.at(g), s / end1);
  return anneal_cos(o_.max_lr.at(g), o_.final_lr.at(g), (s - end1) / (end2 - end1));
}

ReduceOnPlateau::ReduceOnPlateau(std::vector<double> lrs, PlateauOptions options)
    : lrs_(std::move(lrs)), o_(options) {
  CAPTION_CHECK(o_.factor > 0 && o_.factor < 1, "reduce-on-plateau: factor must be in (0, 1)");
  best_ = o_.direction == Direction::Minimize ? std::numeric_limits<double>::infinity()
                                              : -std::numeric_limits<double>::infinity();
}

bool ReduceOnPlateau::better(double a, double best) const {
  if (o_.direction == Direction::Minimize) return a < best * (1.0 - o_.threshold);
  return a > best * (1.0 + o_.threshold);
}

void ReduceOnPlateau::on_epoch_end(double metric) {
  if (better(metric, best_)) {
    best_ = metric;
    bad_epochs_ = 0;
  } else {
    ++bad_epochs_;
  }
  if (cooldown_counter_ > 0) {
    --cooldown_counter_;
    bad_epochs_ = 0;  // PyTorch ignores bad epochs during cooldown
  }
  if (bad_epochs_ > o_.patience) {
    for (double& lr : lrs_) {
      const double reduced = std::max(lr * o_.factor, o_.min_lr);
      if (lr - reduced > o_.eps) lr = reduced;
    }
    cooldown_counter_ = o_.cooldown;
    bad_epochs_ = 0;
  }
}

nlohmann::json ReduceOnPlateau::export_state() const {
  return {{"lrs", lrs_}, {"best", best_}, {"bad_epochs", bad_epochs_}, {"cooldown_counter", cooldown_counter_}};
}

void ReduceOnPlateau::import_state(const nlohmann::json& s) {
  lrs_ = s.at("lrs").get<std::vector<double>>();
  best_ = s.at("best").is_null() ? best_ : s.at("best").get<double>();
  bad_epochs_ = s.at("bad_epochs").get<int>();
  cooldown_counter_ = s.at("cooldown_counter").get<int>();
}

bool EarlyStopping::update(double value) {
  const bool improved = !has_best_ || (direction_ == Direction::Minimize ? value < best_ - min_delta_
                                                                         : value > best_ + min_delta_);
  if (improved) {
    best_ = value;
    has_best_ = true;
    bad_epochs_ = 0;
  } else {
    ++bad_epochs_;
  }
  return improved;
}

nlohmann::json EarlyStopping::export_state() const {
  return {{"has_best", has_best_}, {"best", best_}, {"bad_epochs", bad_epochs_}};
}

void EarlyStopping::import_state(const nlohmann::json& s) {
  has_best_ = s.at("has_best").get<bool>();
  best_ = s.at("best").get<double>();
  bad_epochs_ = s.at("bad_epochs").get<int>();
}

}  // namespace caption::pipeline
