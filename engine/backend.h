// What the device-independent engine needs from the CUDA runtime, in plain C++ types.
// Implemented in engine/cuda/runtime.cpp when CUDA is compiled in; in a CPU-only build
// every function here throws "built without the CUDA backend" (they are only reached
// for CUDA tensors, which cannot be created there).
#pragma once

#include <cstddef>

#include "engine/allocator.h"
#include "engine/device.h"

namespace caption {

// cudaMalloc/cudaFree/cudaMemset/cudaMemcpy of one device, for its CachingAllocator.
BackingMemory cuda_backing_memory(int device);

// Copies bytes between any two devices (host-to-host included). Copies that involve a
// device are ordered on that device's current stream; a copy to the host returns when
// the data is there.
void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes);
// Sets bytes to zero on any device (on the current stream for CUDA).
void zero_bytes(void* dst, Device device, size_t bytes);
// Waits for all work queued on the device.
void synchronize(Device device);

}  // namespace caption
