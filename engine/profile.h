// Per-op time: where a workload spends it, op by op (CAPTION_PROFILE=1, or
// OpProfile::enable). Every kernel call that goes through the op table (op_table.h's
// run_forward / run_backward_kernel) is timed: on the CPU as the host's wall time of the
// call; on a CUDA device as GPU time, between two events recorded on the device's stream
// around the call's launches, read when the report is made. While a device graph is being
// captured nothing is recorded (a replay runs as one launch, not op by op). Profiling
// costs two event records per CUDA op and keeps every pair until the next report or reset.
#pragma once

#include <string>

#include "engine/device.h"
#include "engine/op_table.h"

namespace caption {

class OpProfile {
 public:
  // Whether ops are being timed (CAPTION_PROFILE=1 at start-up, or enable()).
  static bool enabled();
  static void enable(bool on);
  // Forgets what was recorded.
  static void reset();
  // A table of what was recorded since the last reset: op and direction, device, calls,
  // total milliseconds, mean microseconds and share of the total, largest total first;
  // empty when nothing was recorded. Waits for the devices' recorded work to finish.
  static std::string report();
  // The total milliseconds recorded for one op and direction on one device type (tests).
  static double total_ms(OpId op, bool backward, DeviceType device);
  static long calls(OpId op, bool backward, DeviceType device);

  // Times one kernel call (used by the op table).
  class Scope {
   public:
    Scope(OpId op, bool backward, Device device);
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    OpId op_;
    bool backward_;
    Device device_;
    bool active_ = false;
    double host_start_ = 0;
    void* start_event_ = nullptr;
  };
};

}  // namespace caption
