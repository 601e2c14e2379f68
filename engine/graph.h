// Device graphs: the work a function enqueues on a CUDA device, recorded once and
// replayed at the cost of one launch (CUDA graphs). What a replay does is exactly what
// the capture enqueued, on the same addresses: inputs are read from, and outputs written
// to, the tensors the captured function used, so a caller keeps those tensors and copies
// new inputs into them before each replay (nn/step_graph.h does this for the decoder).
//
// During a capture the device's caching allocator serves a private pool (allocator.h):
// blocks the captured work allocated and freed stay reserved for the graph until it is
// destroyed. Index tensors on the device are not range-checked on the host (that would
// synchronise). A capture fails, without harm, when the function synchronises with the
// device or copies to or from the host; capture() then returns false and the caller
// runs the work eagerly. CAPTION_CUDA_GRAPHS=0 turns graphs off.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "engine/device.h"

namespace caption {

class DeviceGraph {
 public:
  DeviceGraph() = default;
  ~DeviceGraph();
  DeviceGraph(const DeviceGraph&) = delete;
  DeviceGraph& operator=(const DeviceGraph&) = delete;

  // Whether graphs are used on `device`: a CUDA device, unless CAPTION_CUDA_GRAPHS=0 or
  // set_enabled(false) (process-wide, for tests that compare with and without).
  static bool enabled(Device device);
  static void set_enabled(bool on);

  // Records what fn enqueues on the device. Returns false when the capture failed, fn
  // threw included (the reason is in failure()); fn's device work was then not done and
  // must be redone eagerly.
  bool capture(Device device, const std::function<void()>& fn);
  // Runs the recorded work again (asynchronously, on the device's stream).
  void replay();
  bool captured() const { return graph_ != nullptr; }
  const std::string& failure() const { return failure_; }

 private:
  void release() noexcept;
  Device device_ = Device::cpu();
  void* graph_ = nullptr;
  uint64_t pool_ = 0;
  std::string failure_;
};

}  // namespace caption
