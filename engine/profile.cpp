// See profile.h.
#include "engine/profile.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <tuple>
#include <vector>

#include "engine/allocator.h"
#include "engine/backend.h"
#include "engine/error.h"

namespace caption {

namespace {

std::atomic<bool>& flag() {
  static std::atomic<bool> on = [] {
    const char* v = std::getenv("CAPTION_PROFILE");
    return v != nullptr && std::strcmp(v, "1") == 0;
  }();
  return on;
}

double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

using Key = std::tuple<int /*op*/, bool /*backward*/, int /*device type*/>;

struct Totals {
  long calls = 0;
  double ms = 0;
};

// A CUDA op's two events, resolved into its totals at the next report.
struct Pending {
  Key key;
  int device;
  void* start;
  void* end;
};

struct State {
  std::mutex mutex;
  std::map<Key, Totals> totals;
  std::vector<Pending> pending;
};

State& state() {
  static State* s = new State();  // kept for the process: ops may run during exit
  return *s;
}

// Folds the pending CUDA intervals into the totals (waits for each end event).
void resolve_locked(State& s) {
  for (const Pending& p : s.pending) {
    Totals& t = s.totals[p.key];
    ++t.calls;
    t.ms += cuda_event_elapsed_ms(p.device, p.start, p.end);
    cuda_event_release(p.device, p.start);
    cuda_event_release(p.device, p.end);
  }
  s.pending.clear();
}

}  // namespace

bool OpProfile::enabled() { return flag().load(std::memory_order_relaxed); }
void OpProfile::enable(bool on) { flag().store(on); }

void OpProfile::reset() {
  State& s = state();
  std::lock_guard lock(s.mutex);
  for (const Pending& p : s.pending) {
    cuda_event_release(p.device, p.start);
    cuda_event_release(p.device, p.end);
  }
  s.pending.clear();
  s.totals.clear();
}

std::string OpProfile::report() {
  State& s = state();
  std::lock_guard lock(s.mutex);
  resolve_locked(s);
  if (s.totals.empty()) return "";
  std::vector<std::pair<Key, Totals>> rows(s.totals.begin(), s.totals.end());
  std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.second.ms > b.second.ms; });
  double all = 0;
  for (const auto& r : rows) all += r.second.ms;
  std::string out = str("op profile (", rows.size(), " op kinds, ", all, " ms in all)\n");
  char line[160];
  std::snprintf(line, sizeof line, "  %-32s %-6s %9s %11s %10s %7s\n", "op", "device", "calls",
                "total ms", "mean us", "share");
  out += line;
  for (const auto& [key, t] : rows) {
    const auto& [op, backward, device] = key;
    const std::string name = str(op_name(static_cast<OpId>(op)), backward ? " backward" : "");
    std::snprintf(line, sizeof line, "  %-32s %-6s %9ld %11.3f %10.2f %6.1f%%\n", name.c_str(),
                  device == static_cast<int>(DeviceType::CUDA) ? "cuda" : "cpu", t.calls, t.ms,
                  t.calls ? 1e3 * t.ms / t.calls : 0.0, all > 0 ? 100.0 * t.ms / all : 0.0);
    out += line;
  }
  return out;
}

double OpProfile::total_ms(OpId op, bool backward, DeviceType device) {
  State& s = state();
  std::lock_guard lock(s.mutex);
  resolve_locked(s);
  auto it = s.totals.find({static_cast<int>(op), backward, static_cast<int>(device)});
  return it == s.totals.end() ? 0.0 : it->second.ms;
}

long OpProfile::calls(OpId op, bool backward, DeviceType device) {
  State& s = state();
  std::lock_guard lock(s.mutex);
  resolve_locked(s);
  auto it = s.totals.find({static_cast<int>(op), backward, static_cast<int>(device)});
  return it == s.totals.end() ? 0 : it->second.calls;
}

OpProfile::Scope::Scope(OpId op, bool backward, Device device)
    : op_(op), backward_(backward), device_(device) {
  if (!enabled()) return;
  if (device.is_cuda()) {
    if (allocator_for(device).active_pool() != 0) return;  // a graph capture is under way
    start_event_ = cuda_event_record(device.index);
  } else {
    host_start_ = now_ms();
  }
  active_ = true;
}

OpProfile::Scope::~Scope() {
  if (!active_) return;
  State& s = state();
  const Key key{static_cast<int>(op_), backward_, static_cast<int>(device_.type)};
  if (device_.is_cuda()) {
    void* end = cuda_event_record(device_.index);
    std::lock_guard lock(s.mutex);
    s.pending.push_back({key, device_.index, start_event_, end});
    return;
  }
  const double ms = now_ms() - host_start_;
  std::lock_guard lock(s.mutex);
  Totals& t = s.totals[key];
  ++t.calls;
  t.ms += ms;
}

}  // namespace caption
