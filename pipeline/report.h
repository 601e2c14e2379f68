// What a training run shows and leaves behind: a progress line (live on a terminal,
// plain periodic lines otherwise), a JSON-lines metrics log, SVG charts (lines, and bars
// for the gradient flow), and the learning-rate range test.
#pragma once

#include <chrono>
#include <functional>
#include <ostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace caption::pipeline {

// Appends one JSON object per line; opened in append mode so that a resumed run
// continues the same file.
class MetricsLog {
 public:
  explicit MetricsLog(std::string path) : path_(std::move(path)) {}
  void append(const nlohmann::json& record) const;
  static std::vector<nlohmann::json> read(const std::string& path);

 private:
  std::string path_;
};

// "epoch 3/10  step 120/469  loss 2.3412  lr 4.0e-04  512 img/s  ETA 0:01:12"
class Progress {
 public:
  using Clock = std::function<double()>;  // seconds; injectable for tests
  Progress(std::ostream& out, bool live, int every_steps, Clock clock = {});
  void start_epoch(int epoch, int epochs, long steps);
  void update(long step, double loss, double lr, long images);
  void finish();
  std::string line() const;  // the current line (for tests)

 private:
  std::ostream& out_;
  bool live_;
  int every_;
  Clock clock_;
  int epoch_ = 0, epochs_ = 0;
  long steps_ = 0, step_ = 0, images_ = 0;
  double start_ = 0, loss_ = 0, lr_ = 0;
  bool has_loss_ = false;
};

std::string format_duration(double seconds);  // "1:02:03", "0:00:05"

struct Series {
  std::string name;
  std::vector<double> x, y;
};

enum class Scale { Linear, Log };

// A line chart written as a standalone SVG file (atomically). NaN and infinite points
// are left out.
class LineChart {
 public:
  LineChart(std::string title, std::string x_label, std::string y_label, Scale x_scale = Scale::Linear)
      : title_(std::move(title)), x_label_(std::move(x_label)), y_label_(std::move(y_label)), x_scale_(x_scale) {}
  void add(Series s) { series_.push_back(std::move(s)); }
  // A vertical marker line (e.g. the suggested learning rate).
  void mark(double x, std::string label) {
    marker_x_ = x;
    marker_label_ = std::move(label);
    has_marker_ = true;
  }
  std::string svg() const;
  void write(const std::string& path) const;

 private:
  std::string title_, x_label_, y_label_;
  Scale x_scale_;
  std::vector<Series> series_;
  bool has_marker_ = false;
  double marker_x_ = 0;
  std::string marker_label_;
};

struct BarSeries {
  std::string name;
  std::vector<double> values;  // one per category
};
// Grouped bars per category (log-scaled values), categories labelled vertically.
void write_bar_chart(const std::string& path, const std::string& title,
                     const std::vector<std::string>& categories, const std::vector<BarSeries>& series);

// The LR range test (as the original project ran it): the rate grows exponentially from
// start to end over `steps` batches; the loss is smoothed exponentially (each new loss
// weighs `smoothing`, 0.05 by default, with bias correction); the test stops when the
// smoothed loss exceeds 5x the best; the suggestion is one order of magnitude below the
// rate at the minimum smoothed loss.
struct LrFinderOptions {
  double start = 1e-6, end = 0.5;
  int steps = 500;
  double smoothing = 0.05;
  double divergence = 5.0;
};
class LrFinder {
 public:
  explicit LrFinder(LrFinderOptions o);
  double next_lr() const;
  // Records the loss at next_lr(); returns false when the test should stop.
  bool record(double loss);
  struct Point {
    double lr, loss, smoothed_loss;
  };
  const std::vector<Point>& history() const { return history_; }
  double suggestion() const;
  void write_plot(const std::string& path) const;

 private:
  LrFinderOptions o_;
  std::vector<Point> history_;
  double average_ = 0, best_ = 0;
};

}  // namespace caption::pipeline
