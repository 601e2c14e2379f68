// Progress lines, metrics log, SVG charts and the LR range test.
#include "pipeline/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "data/image/file_io.h"
#include "engine/error.h"

namespace caption::pipeline {

void MetricsLog::append(const nlohmann::json& record) const {
  std::ofstream out(path_, std::ios::app);
  CAPTION_CHECK(out, path_, ": cannot open the metrics log for appending");
  out << record.dump() << "\n";
  out.flush();
  CAPTION_CHECK(out, path_, ": writing the metrics log failed");
}

std::vector<nlohmann::json> MetricsLog::read(const std::string& path) {
  std::ifstream in(path);
  CAPTION_CHECK(in, path, ": cannot open the metrics log");
  std::vector<nlohmann::json> out;
  std::string line;
  for (size_t line_no = 1; std::getline(in, line); ++line_no) {
    if (line.empty()) continue;
    try {
      out.push_back(nlohmann::json::parse(line));
    } catch (const nlohmann::json::exception& e) {
      throw Error(str(path, ":", line_no, ": not a JSON record: ", e.what()));
    }
  }
  return out;
}

std::string format_duration(double seconds) {
  const long s = std::max(0L, std::lround(seconds));
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%ld:%02ld:%02ld", s / 3600, (s / 60) % 60, s % 60);
  return buf;
}

Progress::Progress(std::ostream& out, bool live, int every_steps, Clock clock)
    : out_(out), live_(live), every_(std::max(1, every_steps)), clock_(std::move(clock)) {
  if (!clock_) {
    clock_ = [] {
      return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
    };
  }
}

void Progress::start_epoch(int epoch, int epochs, long steps) {
  epoch_ = epoch;
  epochs_ = epochs;
  steps_ = steps;
  step_ = images_ = 0;
  has_loss_ = false;
  start_ = clock_();
}

void Progress::update(long step, double loss, double lr, long images) {
  step_ = step;
  images_ += images;
  lr_ = lr;
  // Smoothed for reading, as a moving average over roughly the last 20 batches.
  loss_ = has_loss_ ? 0.95 * loss_ + 0.05 * loss : loss;
  has_loss_ = true;
  if (live_) {
    out_ << "\r" << line() << "\033[K" << std::flush;
  } else if (step % every_ == 0 || step == steps_) {
    out_ << line() << "\n" << std::flush;
  }
}

void Progress::finish() {
  if (live_) out_ << "\n" << std::flush;
}

std::string Progress::line() const {
  const double elapsed = clock_() - start_;
  const double rate = elapsed > 0 ? static_cast<double>(images_) / elapsed : 0;
  const double eta = step_ > 0 ? elapsed / static_cast<double>(step_) * static_cast<double>(steps_ - step_) : 0;
  char buf[256];
  std::snprintf(buf, sizeof(buf), "epoch %d/%d  step %ld/%ld  loss %.4f  lr %.2e  %.0f img/s  ETA %s", epoch_,
                epochs_, step_, steps_, loss_, lr_, rate, format_duration(eta).c_str());
  return buf;
}

// ---- SVG ------------------------------------------------------------------------

namespace {

constexpr int kWidth = 760, kHeight = 440, kLeft = 70, kRight = 180, kTop = 40, kBottom = 60;
const char* kColours[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"};

std::string escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '<') o += "&lt;";
    else if (c == '>') o += "&gt;";
    else if (c == '&') o += "&amp;";
    else if (c == '"') o += "&quot;";
    else o += c;
  }
  return o;
}

std::string number(double v) {
  char buf[32];
  if (v != 0 && (std::abs(v) < 1e-3 || std::abs(v) >= 1e5)) std::snprintf(buf, sizeof(buf), "%.1e", v);
  else std::snprintf(buf, sizeof(buf), "%.4g", v);
  return buf;
}

}  // namespace

std::string LineChart::svg() const {
  auto tx = [&](double x) { return x_scale_ == Scale::Log ? std::log10(x) : x; };
  double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
  for (const auto& s : series_)
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i]) || (x_scale_ == Scale::Log && s.x[i] <= 0)) continue;
      x0 = std::min(x0, tx(s.x[i]));
      x1 = std::max(x1, tx(s.x[i]));
      y0 = std::min(y0, s.y[i]);
      y1 = std::max(y1, s.y[i]);
    }
  if (!std::isfinite(x0)) x0 = 0, x1 = 1, y0 = 0, y1 = 1;
  if (x1 == x0) x1 = x0 + 1;
  if (y1 == y0) y1 = y0 + 1;
  const double pw = kWidth - kLeft - kRight, ph = kHeight - kTop - kBottom;
  auto px = [&](double x) { return kLeft + (tx(x) - x0) / (x1 - x0) * pw; };
  auto py = [&](double y) { return kTop + (1 - (y - y0) / (y1 - y0)) * ph; };
  std::ostringstream o;
  o << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << kWidth << "\" height=\"" << kHeight
    << "\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  o << "<text x=\"" << kWidth / 2 << "\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">" << escape(title_)
    << "</text>\n";
  o << "<rect x=\"" << kLeft << "\" y=\"" << kTop << "\" width=\"" << pw << "\" height=\"" << ph
    << "\" fill=\"none\" stroke=\"#444\"/>\n";
  for (int i = 0; i <= 5; ++i) {
    const double fx = x0 + (x1 - x0) * i / 5, fy = y0 + (y1 - y0) * i / 5;
    const double gx = kLeft + pw * i / 5, gy = kTop + ph * (1 - i / 5.0);
    const double label_x = x_scale_ == Scale::Log ? std::pow(10.0, fx) : fx;
    o << "<line x1=\"" << gx << "\" y1=\"" << kTop << "\" x2=\"" << gx << "\" y2=\"" << kTop + ph
      << "\" stroke=\"#eee\"/>\n<text x=\"" << gx << "\" y=\"" << kTop + ph + 16 << "\" text-anchor=\"middle\">"
      << number(label_x) << "</text>\n";
    o << "<line x1=\"" << kLeft << "\" y1=\"" << gy << "\" x2=\"" << kLeft + pw << "\" y2=\"" << gy
      << "\" stroke=\"#eee\"/>\n<text x=\"" << kLeft - 6 << "\" y=\"" << gy + 4 << "\" text-anchor=\"end\">"
      << number(fy) << "</text>\n";
  }
  o << "<text x=\"" << kLeft + pw / 2 << "\" y=\"" << kHeight - 18 << "\" text-anchor=\"middle\">"
    << escape(x_label_) << "</text>\n";
  o << "<text transform=\"translate(16," << kTop + ph / 2 << ") rotate(-90)\" text-anchor=\"middle\">"
    << escape(y_label_) << "</text>\n";
  for (size_t k = 0; k < series_.size(); ++k) {
    const auto& s = series_[k];
    const char* colour = kColours[k % 6];
    o << "<polyline fill=\"none\" stroke=\"" << colour << "\" stroke-width=\"2\" points=\"";
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i]) || (x_scale_ == Scale::Log && s.x[i] <= 0)) continue;
      o << px(s.x[i]) << "," << py(s.y[i]) << " ";
    }
    o << "\"/>\n";
    const int ly = kTop + 14 + 18 * static_cast<int>(k);
    o << "<line x1=\"" << kWidth - kRight + 12 << "\" y1=\"" << ly - 4 << "\" x2=\"" << kWidth - kRight + 32
      << "\" y2=\"" << ly - 4 << "\" stroke=\"" << colour << "\" stroke-width=\"2\"/>\n<text x=\""
      << kWidth - kRight + 38 << "\" y=\"" << ly << "\">" << escape(s.name) << "</text>\n";
  }
  if (has_marker_ && std::isfinite(marker_x_) && (x_scale_ == Scale::Linear || marker_x_ > 0)) {
    const double mx = px(marker_x_);
    o << "<line x1=\"" << mx << "\" y1=\"" << kTop << "\" x2=\"" << mx << "\" y2=\"" << kTop + ph
      << "\" stroke=\"#888\" stroke-dasharray=\"5,4\"/>\n<text x=\"" << mx + 4 << "\" y=\"" << kTop + 14 << "\">"
      << escape(marker_label_) << "</text>\n";
  }
  o << "</svg>\n";
  return o.str();
}

void LineChart::write(const std::string& path) const { data::write_file_atomic(path, svg()); }

void write_bar_chart(const std::string& path, const std::string& title, const std::vector<std::string>& categories,
                     const std::vector<BarSeries>& series) {
  const int n = static_cast<int>(categories.size());
  const int width = std::max(600, 70 + 18 * n * static_cast<int>(std::max<size_t>(1, series.size())) + 40);
  const int height = 520, top = 40, plot = 240, bottom_label = 230;
  double lo = INFINITY, hi = -INFINITY;
  for (const auto& s : series)
    for (double v : s.values)
      if (v > 0 && std::isfinite(v)) lo = std::min(lo, std::log10(v)), hi = std::max(hi, std::log10(v));
  if (!std::isfinite(lo)) lo = -8, hi = 0;
  lo = std::floor(lo);
  hi = std::ceil(hi);
  if (hi == lo) hi = lo + 1;
  std::ostringstream o;
  o << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width << "\" height=\"" << height
    << "\" font-family=\"sans-serif\" font-size=\"10\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  o << "<text x=\"" << width / 2 << "\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">" << escape(title)
    << " (log scale)</text>\n";
  for (double e = lo; e <= hi; e += 1) {
    const double y = top + plot * (1 - (e - lo) / (hi - lo));
    o << "<line x1=\"60\" y1=\"" << y << "\" x2=\"" << width - 20 << "\" y2=\"" << y << "\" stroke=\"#eee\"/>"
      << "<text x=\"56\" y=\"" << y + 3 << "\" text-anchor=\"end\">1e" << e << "</text>\n";
  }
  const double group = (width - 90.0) / std::max(1, n);
  const double bar = group / (static_cast<double>(series.size()) + 1);
  for (int c = 0; c < n; ++c) {
    for (size_t k = 0; k < series.size(); ++k) {
      const double v = c < static_cast<int>(series[k].values.size()) ? series[k].values[c] : 0;
      if (!(v > 0) || !std::isfinite(v)) continue;
      const double h = plot * (std::log10(v) - lo) / (hi - lo);
      o << "<rect x=\"" << 70 + c * group + k * bar << "\" y=\"" << top + plot - h << "\" width=\"" << bar * 0.9
        << "\" height=\"" << h << "\" fill=\"" << kColours[k % 6] << "\"/>\n";
    }
    const double lx = 70 + c * group + group / 2;
    o << "<text transform=\"translate(" << lx << "," << top + plot + 8 << ") rotate(70)\">"
      << escape(categories[c]) << "</text>\n";
  }
  for (size_t k = 0; k < series.size(); ++k)
    o << "<rect x=\"" << width - 170 << "\" y=\"" << 34 + 16 * k << "\" width=\"12\" height=\"10\" fill=\""
      << kColours[k % 6] << "\"/><text x=\"" << width - 152 << "\" y=\"" << 43 + 16 * k << "\">"
      << escape(series[k].name) << "</text>\n";
  o << "</svg>\n";
  (void)bottom_label;
  data::write_file_atomic(path, o.str());
}

// ---- LR range test ------------------------------------------------------------------

LrFinder::LrFinder(LrFinderOptions o) : o_(o) {
  CAPTION_CHECK(o.start > 0 && o.end > o.start, "lr-find: need 0 < start < end, got ", o.start, " and ", o.end);
  CAPTION_CHECK(o.steps >= 2, "lr-find: need at least 2 steps, got ", o.steps);
  CAPTION_CHECK(o.smoothing > 0 && o.smoothing <= 1, "lr-find: smoothing must be in (0, 1]");
}

double LrFinder::next_lr() const {
  const double i = static_cast<double>(history_.size());
  return o_.start * std::pow(o_.end / o_.start, i / (o_.steps - 1));
}

bool LrFinder::record(double loss) {
  const double lr = next_lr();
  const double beta = 1.0 - o_.smoothing;
  average_ = beta * average_ + (1.0 - beta) * loss;
  const double smoothed = average_ / (1.0 - std::pow(beta, static_cast<double>(history_.size() + 1)));
  history_.push_back({lr, loss, smoothed});
  if (history_.size() == 1 || smoothed < best_) best_ = smoothed;
  if (!std::isfinite(loss) || smoothed > o_.divergence * best_) return false;
  return static_cast<int>(history_.size()) < o_.steps;
}

double LrFinder::suggestion() const {
  CAPTION_CHECK(!history_.empty(), "lr-find: no steps recorded");
  const auto best = std::min_element(history_.begin(), history_.end(),
                                     [](const Point& a, const Point& b) { return a.smoothed_loss < b.smoothed_loss; });
  return best->lr / 10.0;
}

void LrFinder::write_plot(const std::string& path) const {
  LineChart chart("Learning-rate range test", "learning rate", "smoothed loss", Scale::Log);
  Series s{"smoothed loss", {}, {}};
  for (const auto& p : history_) {
    s.x.push_back(p.lr);
    s.y.push_back(p.smoothed_loss);
  }
  chart.add(s);
  chart.mark(suggestion(), "suggested " + number(suggestion()));
  chart.write(path);
}

}  // namespace caption::pipeline
