// The CUDA runtime API of the host emulator: devices, memory, copies, streams, events
// and errors. Device memory is host memory from aligned_alloc; the emulator keeps the
// set of live blocks so that copies and frees can be checked the way the driver checks
// them (a "device" pointer that is not in a live block is an error, and so is a
// host-to-device copy whose destination is not device memory).
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "cuda_runtime.h"
#include "emu_internal.h"

namespace caption_emu {
namespace {

thread_local cudaError_t t_last_error = cudaSuccess;
thread_local int t_device = 0;

std::mutex g_mutex;
std::map<uintptr_t, size_t>& blocks() {
  static auto* m = new std::map<uintptr_t, size_t>();
  return *m;
}
std::set<cudaStream_t>& streams() {
  static auto* s = new std::set<cudaStream_t>();
  return *s;
}

// Streams being captured, with what they recorded so far.
struct Capture {
  cudaStreamCaptureMode mode;
  bool invalidated = false;
  std::vector<std::function<void()>> tasks;
};
std::map<cudaStream_t, Capture>& captures() {
  static auto* m = new std::map<cudaStream_t, Capture>();
  return *m;
}

int device_count() {
  static const int n = [] {
    const char* v = std::getenv("CAPTION_EMU_DEVICES");
    return v == nullptr ? 1 : std::atoi(v);
  }();
  return n;
}

cudaError_t fail(cudaError_t e) {
  t_last_error = e;
  return e;
}

// A call that a capture forbids: every active capture is invalidated (a GPU's are when
// the call would synchronise with them) and the call fails.
cudaError_t forbidden_in_capture(const char* call, cudaError_t error) {
  std::lock_guard lock(g_mutex);
  if (captures().empty()) return cudaSuccess;
  for (auto& [stream, capture] : captures()) capture.invalidated = true;
  std::fprintf(stderr, "cuda emulator: %s during a stream capture (the capture is invalidated)\n",
               call);
  t_last_error = error;
  return error;
}

bool any_strict_capture() {
  std::lock_guard lock(g_mutex);
  for (const auto& [stream, capture] : captures())
    if (capture.mode != cudaStreamCaptureModeRelaxed) return true;
  return false;
}

}  // namespace

// Transfers from pinned host memory (cudaHostAlloc) are the one kind of work the emulator
// leaves running after the call returns, as a GPU's copy engine does: they wait here and
// run, in order, before the next stream work of any kind, at every synchronisation, and
// before memory they read or write is freed. A host that writes a staging buffer again
// before its transfer ran (before an event recorded after it reports completion) sends
// the new bytes instead of the old: the bug a GPU would show, now visible without one.
std::deque<std::function<void()>>& pending() {
  static auto* q = new std::deque<std::function<void()>>();
  return *q;
}
uint64_t g_transfers_deferred = 0, g_transfers_run = 0;  // under g_mutex
std::map<uintptr_t, size_t>& pinned() {
  static auto* m = new std::map<uintptr_t, size_t>();
  return *m;
}
// Whether [p, p + bytes) lies inside one live cudaHostAlloc block (g_mutex held).
bool is_pinned_locked(const void* p, size_t bytes) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  auto it = pinned().upper_bound(a);
  if (it == pinned().begin()) return false;
  --it;
  return a >= it->first && a + bytes <= it->first + it->second;
}

void enqueue(cudaStream_t stream, std::function<void()> task) {
  {
    std::lock_guard lock(g_mutex);
    auto it = captures().find(stream);
    if (it != captures().end()) {
      it->second.tasks.push_back(std::move(task));
      return;
    }
  }
  run_pending_transfers();
  task();
}

void run_pending_transfers() {
  for (;;) {
    std::function<void()> transfer;
    {
      std::lock_guard lock(g_mutex);
      if (pending().empty()) return;
      transfer = std::move(pending().front());
      pending().pop_front();
    }
    transfer();
    std::lock_guard lock(g_mutex);
    ++g_transfers_run;
  }
}

bool stream_capturing(cudaStream_t stream) {
  std::lock_guard lock(g_mutex);
  return captures().count(stream) != 0;
}

void set_launch_error(cudaError_t error, const std::string& message) {
  std::fprintf(stderr, "cuda emulator: %s\n", message.c_str());
  t_last_error = error;
}

bool stream_is_valid(cudaStream_t stream) {
  if (stream == nullptr) return true;
  std::lock_guard lock(g_mutex);
  return streams().count(stream) != 0;
}

std::atomic<bool> g_any_device_memory{false};

bool device_range_once_allocated(const void* p, size_t bytes) {
  return !g_any_device_memory || is_device_range(p, bytes);
}

bool is_device_range(const void* p, size_t bytes) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  std::lock_guard lock(g_mutex);
  auto it = blocks().upper_bound(a);
  if (it == blocks().begin()) return false;
  --it;
  return a >= it->first && a + bytes <= it->first + it->second;
}

}  // namespace caption_emu

using caption_emu::fail;

const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInitializationError: return "cudaErrorInitializationError";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevicePointer: return "cudaErrorInvalidDevicePointer";
    case cudaErrorInvalidMemcpyDirection: return "cudaErrorInvalidMemcpyDirection";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorIllegalAddress: return "cudaErrorIllegalAddress";
    case cudaErrorLaunchOutOfResources: return "cudaErrorLaunchOutOfResources";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
    case cudaErrorNotSupported: return "cudaErrorNotSupported";
    case cudaErrorIllegalState: return "cudaErrorIllegalState";
    case cudaErrorStreamCaptureUnsupported: return "cudaErrorStreamCaptureUnsupported";
    case cudaErrorStreamCaptureInvalidated: return "cudaErrorStreamCaptureInvalidated";
    case cudaErrorStreamCaptureUnmatched: return "cudaErrorStreamCaptureUnmatched";
    case cudaErrorStreamCaptureImplicit: return "cudaErrorStreamCaptureImplicit";
    default: return "cudaErrorUnknown";
  }
}

const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevicePointer: return "invalid device pointer";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorLaunchFailure: return "unspecified launch failure (see the emulator's message above)";
    case cudaErrorStreamCaptureUnsupported: return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureInvalidated: return "operation failed due to a previous error during capture";
    case cudaErrorStreamCaptureImplicit: return "operation would make the legacy stream depend on a capturing blocking stream";
    default: return cudaGetErrorName(e);
  }
}

cudaError_t cudaGetLastError() {
  const cudaError_t e = caption_emu::t_last_error;
  caption_emu::t_last_error = cudaSuccess;
  return e;
}
cudaError_t cudaPeekAtLastError() { return caption_emu::t_last_error; }

cudaError_t cudaGetDeviceCount(int* count) {
  *count = caption_emu::device_count();
  return *count > 0 ? cudaSuccess : fail(cudaErrorNoDevice);
}
cudaError_t cudaGetDevice(int* device) {
  *device = caption_emu::t_device;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) {
  if (device < 0 || device >= caption_emu::device_count()) return fail(cudaErrorInvalidDevice);
  caption_emu::t_device = device;
  return cudaSuccess;
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  if (device < 0 || device >= caption_emu::device_count()) return fail(cudaErrorInvalidDevice);
  std::memset(prop, 0, sizeof *prop);
  std::snprintf(prop->name, sizeof prop->name, "caption CUDA host emulator");
  prop->totalGlobalMem = size_t{16} << 30;
  prop->sharedMemPerBlock = 48 * 1024;
  prop->regsPerBlock = 65536;
  prop->warpSize = 32;
  prop->maxThreadsPerBlock = 1024;
  prop->maxThreadsDim[0] = prop->maxThreadsDim[1] = 1024;
  prop->maxThreadsDim[2] = 64;
  prop->maxGridSize[0] = 2147483647;
  prop->maxGridSize[1] = prop->maxGridSize[2] = 65535;
  prop->major = 9;
  prop->minor = 0;
  prop->multiProcessorCount = 1;
  prop->l2CacheSize = 50 << 20;
  return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize() {
  if (const cudaError_t e = caption_emu::forbidden_in_capture("cudaDeviceSynchronize",
                                                              cudaErrorStreamCaptureUnsupported))
    return e;
  caption_emu::run_pending_transfers();
  return cudaSuccess;
}

cudaError_t cudaMalloc(void** ptr, size_t size) {
  *ptr = nullptr;
  if (caption_emu::any_strict_capture())
    return caption_emu::forbidden_in_capture("cudaMalloc outside relaxed capture mode",
                                             cudaErrorStreamCaptureUnsupported);
  if (size == 0) return cudaSuccess;
  const size_t rounded = (size + 255) / 256 * 256;
  void* p = std::aligned_alloc(256, rounded);
  if (p == nullptr) return fail(cudaErrorMemoryAllocation);
  std::lock_guard lock(caption_emu::g_mutex);
  caption_emu::blocks()[reinterpret_cast<uintptr_t>(p)] = size;
  caption_emu::g_any_device_memory = true;
  *ptr = p;
  return cudaSuccess;
}

cudaError_t cudaFree(void* ptr) {
  if (ptr == nullptr) return cudaSuccess;
  if (const cudaError_t e = caption_emu::forbidden_in_capture("cudaFree", cudaErrorStreamCaptureUnsupported))
    return e;
  caption_emu::run_pending_transfers();  // one may still write the block
  {
    std::lock_guard lock(caption_emu::g_mutex);
    auto it = caption_emu::blocks().find(reinterpret_cast<uintptr_t>(ptr));
    if (it == caption_emu::blocks().end()) return fail(cudaErrorInvalidDevicePointer);
    caption_emu::blocks().erase(it);
  }
  std::free(ptr);
  return cudaSuccess;
}

namespace {
// The driver refuses a copy whose "device" side is not device memory; the emulator
// checks both sides against the live blocks.
cudaError_t check_copy(void* dst, const void* src, size_t n, cudaMemcpyKind kind) {
  if (n == 0) return cudaSuccess;
  if (dst == nullptr || src == nullptr) return fail(cudaErrorInvalidValue);
  const bool dst_dev = caption_emu::is_device_range(dst, n);
  const bool src_dev = caption_emu::is_device_range(src, n);
  switch (kind) {
    case cudaMemcpyHostToHost:
      return cudaSuccess;
    case cudaMemcpyHostToDevice:
      return dst_dev && !src_dev ? cudaSuccess : fail(cudaErrorInvalidValue);
    case cudaMemcpyDeviceToHost:
      return src_dev && !dst_dev ? cudaSuccess : fail(cudaErrorInvalidValue);
    case cudaMemcpyDeviceToDevice:
      return src_dev && dst_dev ? cudaSuccess : fail(cudaErrorInvalidValue);
    case cudaMemcpyDefault:
      return cudaSuccess;
  }
  return fail(cudaErrorInvalidMemcpyDirection);
}
}  // namespace

cudaError_t cudaMemcpy(void* dst, const void* src, size_t count, cudaMemcpyKind kind) {
  if (const cudaError_t f = caption_emu::forbidden_in_capture("cudaMemcpy (synchronous)",
                                                              cudaErrorStreamCaptureImplicit))
    return f;
  const cudaError_t e = check_copy(dst, src, count, kind);
  if (e != cudaSuccess) return e;
  caption_emu::run_pending_transfers();  // the synchronous copy waits for all stream work
  if (count != 0) std::memmove(dst, src, count);
  return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t count, cudaMemcpyKind kind,
                            cudaStream_t stream) {
  if (!caption_emu::stream_is_valid(stream)) return fail(cudaErrorInvalidValue);
  const cudaError_t e = check_copy(dst, src, count, kind);
  if (e != cudaSuccess || count == 0) return e;
  if (caption_emu::stream_capturing(stream)) {
    // A graph replays copies between device buffers; host memory has no place in it.
    if (!caption_emu::is_device_range(dst, count) || !caption_emu::is_device_range(src, count))
      return caption_emu::forbidden_in_capture("cudaMemcpyAsync with host memory",
                                               cudaErrorStreamCaptureUnsupported);
  }
  {
    std::lock_guard lock(caption_emu::g_mutex);
    if (kind != cudaMemcpyDeviceToHost && !caption_emu::captures().count(stream) &&
        caption_emu::is_pinned_locked(src, count)) {
      caption_emu::pending().push_back([dst, src, count] { std::memmove(dst, src, count); });
      ++caption_emu::g_transfers_deferred;
      return cudaSuccess;
    }
  }
  caption_emu::enqueue(stream, [dst, src, count] { std::memmove(dst, src, count); });
  return cudaSuccess;
}
cudaError_t cudaMemcpyPeerAsync(void* dst, int dst_device, const void* src, int src_device,
                                size_t count, cudaStream_t stream) {
  if (dst_device < 0 || dst_device >= caption_emu::device_count() || src_device < 0 ||
      src_device >= caption_emu::device_count())
    return fail(cudaErrorInvalidDevice);
  return cudaMemcpyAsync(dst, src, count, cudaMemcpyDeviceToDevice, stream);
}
cudaError_t cudaMemset(void* ptr, int value, size_t count) {
  if (const cudaError_t f = caption_emu::forbidden_in_capture("cudaMemset (synchronous)",
                                                              cudaErrorStreamCaptureImplicit))
    return f;
  if (count == 0) return cudaSuccess;
  if (!caption_emu::is_device_range(ptr, count)) return fail(cudaErrorInvalidValue);
  caption_emu::run_pending_transfers();
  std::memset(ptr, value, count);
  return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void* ptr, int value, size_t count, cudaStream_t stream) {
  if (!caption_emu::stream_is_valid(stream)) return fail(cudaErrorInvalidValue);
  if (count == 0) return cudaSuccess;
  if (!caption_emu::is_device_range(ptr, count)) return fail(cudaErrorInvalidValue);
  caption_emu::enqueue(stream, [ptr, value, count] { std::memset(ptr, value, count); });
  return cudaSuccess;
}

cudaError_t cudaStreamCreate(cudaStream_t* stream) { return cudaStreamCreateWithFlags(stream, 0); }
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned) {
  *stream = reinterpret_cast<cudaStream_t>(new char[1]);
  std::lock_guard lock(caption_emu::g_mutex);
  caption_emu::streams().insert(*stream);
  return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  std::lock_guard lock(caption_emu::g_mutex);
  if (caption_emu::streams().erase(stream) == 0) return fail(cudaErrorInvalidValue);
  delete[] reinterpret_cast<char*>(stream);
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  if (!caption_emu::stream_is_valid(stream)) return fail(cudaErrorInvalidValue);
  if (const cudaError_t e = caption_emu::forbidden_in_capture("cudaStreamSynchronize",
                                                              cudaErrorStreamCaptureUnsupported))
    return e;
  caption_emu::run_pending_transfers();
  return cudaSuccess;
}

// Events hold the host time at which they were recorded (every stream is synchronous).
struct CUevent_st {
  std::chrono::steady_clock::time_point at;
  uint64_t transfers = 0;  // deferred transfers queued before the record
};
cudaError_t cudaEventCreate(cudaEvent_t* event) {
  *event = new CUevent_st{};
  return cudaSuccess;
}
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned) { return cudaEventCreate(event); }
cudaError_t cudaEventQuery(cudaEvent_t event) {
  if (event == nullptr) return fail(cudaErrorInvalidValue);
  std::lock_guard lock(caption_emu::g_mutex);
  return caption_emu::g_transfers_run >= event->transfers ? cudaSuccess : cudaErrorNotReady;
}

// Page-locked host memory: host memory the emulator knows, so that transfers from it can
// be left pending (above).
cudaError_t cudaHostAlloc(void** ptr, size_t size, unsigned) {
  *ptr = nullptr;
  if (caption_emu::any_strict_capture())
    return caption_emu::forbidden_in_capture("cudaHostAlloc outside relaxed capture mode",
                                             cudaErrorStreamCaptureUnsupported);
  if (size == 0) return cudaSuccess;
  void* p = std::aligned_alloc(64, (size + 63) / 64 * 64);
  if (p == nullptr) return fail(cudaErrorMemoryAllocation);
  std::lock_guard lock(caption_emu::g_mutex);
  caption_emu::pinned()[reinterpret_cast<uintptr_t>(p)] = size;
  *ptr = p;
  return cudaSuccess;
}
cudaError_t cudaFreeHost(void* ptr) {
  if (ptr == nullptr) return cudaSuccess;
  caption_emu::run_pending_transfers();  // one may still read it
  {
    std::lock_guard lock(caption_emu::g_mutex);
    if (caption_emu::pinned().erase(reinterpret_cast<uintptr_t>(ptr)) == 0)
      return fail(cudaErrorInvalidValue);
  }
  std::free(ptr);
  return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t event) {
  delete event;
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t) {
  event->at = std::chrono::steady_clock::now();
  std::lock_guard lock(caption_emu::g_mutex);
  event->transfers = caption_emu::g_transfers_deferred;
  return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t) {
  if (const cudaError_t e = caption_emu::forbidden_in_capture("cudaEventSynchronize",
                                                              cudaErrorStreamCaptureUnsupported))
    return e;
  caption_emu::run_pending_transfers();
  return cudaSuccess;
}
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  *ms = std::chrono::duration<float, std::milli>(end->at - start->at).count();
  return cudaSuccess;
}

namespace caption_emu {
// For the header-only parts of the emulator (cub).
bool device_range(const void* p, size_t bytes) { return is_device_range(p, bytes); }
}  // namespace caption_emu

// ---- capture and graphs -------------------------------------------------------------

struct CUgraph_st {
  std::vector<std::function<void()>> tasks;
};
struct CUgraphExec_st {
  std::vector<std::function<void()>> tasks;
};

cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode mode) {
  if (stream == nullptr || !caption_emu::stream_is_valid(stream))
    return fail(cudaErrorStreamCaptureUnsupported);  // the legacy stream cannot be captured
  std::lock_guard lock(caption_emu::g_mutex);
  if (caption_emu::captures().count(stream) != 0) return fail(cudaErrorIllegalState);
  caption_emu::captures()[stream] = caption_emu::Capture{mode, false, {}};
  return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* graph) {
  *graph = nullptr;
  std::lock_guard lock(caption_emu::g_mutex);
  auto it = caption_emu::captures().find(stream);
  if (it == caption_emu::captures().end()) return fail(cudaErrorIllegalState);
  const bool invalidated = it->second.invalidated;
  auto tasks = std::move(it->second.tasks);
  caption_emu::captures().erase(it);
  if (invalidated) return fail(cudaErrorStreamCaptureInvalidated);
  *graph = new CUgraph_st{std::move(tasks)};
  return cudaSuccess;
}

cudaError_t cudaStreamIsCapturing(cudaStream_t stream, cudaStreamCaptureStatus* status) {
  std::lock_guard lock(caption_emu::g_mutex);
  auto it = caption_emu::captures().find(stream);
  *status = it == caption_emu::captures().end() ? cudaStreamCaptureStatusNone
            : it->second.invalidated          ? cudaStreamCaptureStatusInvalidated
                                              : cudaStreamCaptureStatusActive;
  return cudaSuccess;
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph, unsigned long long) {
  if (graph == nullptr) return fail(cudaErrorInvalidValue);
  *exec = new CUgraphExec_st{graph->tasks};
  return cudaSuccess;
}

cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream) {
  if (exec == nullptr || !caption_emu::stream_is_valid(stream)) return fail(cudaErrorInvalidValue);
  caption_emu::enqueue(stream, [exec] {
    for (const auto& task : exec->tasks) task();
  });
  return cudaSuccess;
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
  delete exec;
  return cudaSuccess;
}

cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
  delete graph;
  return cudaSuccess;
}
