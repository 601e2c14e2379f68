// Device graphs (see graph.h): the device-independent half, over engine/backend.h.
#include "engine/graph.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

#include "engine/allocator.h"
#include "engine/backend.h"
#include "engine/error.h"
#include "engine/ops/indexing.h"

namespace caption {

namespace {
std::atomic<bool>& graphs_on() {
  static std::atomic<bool> on = [] {
    const char* v = std::getenv("CAPTION_CUDA_GRAPHS");
    return v == nullptr || std::strcmp(v, "0") != 0;
  }();
  return on;
}
}  // namespace

bool DeviceGraph::enabled(Device device) { return graphs_on() && device.is_cuda(); }
void DeviceGraph::set_enabled(bool on) { graphs_on() = on; }

DeviceGraph::~DeviceGraph() { release(); }

void DeviceGraph::release() noexcept {
  if (graph_ != nullptr) cuda_destroy_graph(graph_);
  graph_ = nullptr;
  if (pool_ != 0) allocator_for(device_).release_pool(pool_);
  pool_ = 0;
}

bool DeviceGraph::capture(Device device, const std::function<void()>& fn) {
  CAPTION_CHECK(device.is_cuda(), "device graphs: ", device.to_string(), " is not a CUDA device");
  release();
  failure_.clear();
  device_ = device;
  CachingAllocator& alloc = allocator_for(device);
  cuda_begin_capture(device.index);
  pool_ = alloc.begin_pool();
  try {
    DeviceIndexChecksOff no_host_checks;
    fn();
  } catch (const std::exception& e) {
    // Typically a call the capture forbids (a synchronisation, a copy to the host),
    // which fails and invalidates the capture.
    failure_ = e.what();
    alloc.end_pool();
    cuda_destroy_graph(cuda_end_capture(device.index, nullptr));
    release();
    return false;
  }
  alloc.end_pool();
  graph_ = cuda_end_capture(device.index, &failure_);
  if (graph_ == nullptr) {
    release();
    return false;
  }
  return true;
}

void DeviceGraph::replay() {
  CAPTION_CHECK(graph_ != nullptr, "device graphs: replay of a graph that was not captured");
  cuda_launch_graph(device_.index, graph_);
}

}  // namespace caption
