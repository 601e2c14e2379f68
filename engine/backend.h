// What the device-independent engine needs from the CUDA runtime, in plain C++ types.
// Implemented in engine/cuda/runtime.cpp when CUDA is compiled in; in a CPU-only build
// every function here throws "built without the CUDA backend" (they are only reached
// for CUDA tensors, which cannot be created there).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/allocator.h"
#include "engine/device.h"
#include "engine/staging.h"

namespace caption {

// cudaMalloc/cudaFree/cudaMemset/cudaMemcpy of one device, for its CachingAllocator.
BackingMemory cuda_backing_memory(int device);

// Copies bytes between any two devices (host-to-host included). Copies that involve a
// device are ordered on that device's current stream; a copy to the host returns when
// the data is there; a copy from the host returns once the host's buffer may be reused
// (through a pinned staging buffer, without waiting for the device, unless the stream
// is recording a graph or staging is off: CAPTION_CUDA_STAGING_MB=0; engine/staging.h).
void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes);
// What the device's staging ring (engine/staging.h) did so far: copies from the host go
// through pinned buffers and return without waiting for the device.
StagingStats cuda_staging_stats(int device);
// Copies several blocks of one device's memory to the host, returning when all are
// there: queued together into one pinned buffer and waited for once (each copy_bytes to
// the host waits once). Falls back to one copy_bytes each where it must (a capture is
// being recorded, more than 64 MiB in all, no pinned memory).
struct HostCopy {
  void* dst;        // host
  const void* src;  // on the device
  size_t bytes;
};
void copy_many_to_host(const std::vector<HostCopy>& copies, Device source);
// Sets bytes to zero on any device (on the current stream for CUDA).
void zero_bytes(void* dst, Device device, size_t bytes);
// Sets `count` elements of `elem_size` bytes (4 or 8) to the low bytes of `bits` on any
// device; on CUDA a kernel on the current stream (no copy from the host: recordable).
void fill_bytes(void* dst, Device device, int64_t count, int elem_size, uint64_t bits);
// fill_bytes on the host.
inline void fill_host_bytes(void* dst, int64_t count, int elem_size, uint64_t bits) {
  if (elem_size == 8)
    std::fill_n(static_cast<uint64_t*>(dst), count, bits);
  else
    std::fill_n(static_cast<uint32_t*>(dst), count, static_cast<uint32_t>(bits));
}
// Waits for all work queued on the device.
void synchronize(Device device);

// CUDA graphs (engine/graph.h uses these): capture what the device's stream is given
// between begin and end (relaxed mode: allocation is allowed, synchronisation is not),
// replay it, destroy it. end_capture returns nullptr after a failed capture (the reason
// is in the thrown error of a later call, or logged) and throws nothing itself.
void cuda_begin_capture(int device);
void* cuda_end_capture(int device, std::string* error);
void cuda_launch_graph(int device, void* graph);
void cuda_destroy_graph(void* graph) noexcept;

// Writes the bfloat16 values (kernels/bf16.h rounding) of n float32 values at src into
// dst (2n bytes), both in the device's memory, on its current stream: the copies of
// kernels/cpu/blas.h's Bf16Shadow.
void cuda_bf16_copy(int device, const float* src, int64_t n, uint16_t* dst);

// Timing events for engine/profile.h: an event (from a pool) recorded on the device's
// current stream; the milliseconds between two of them (waits for the second); the
// event's return to the pool.
void* cuda_event_record(int device);
double cuda_event_elapsed_ms(int device, void* start, void* end);
void cuda_event_release(int device, void* event) noexcept;

}  // namespace caption
