// What the parts of the CUDA host emulator share (not part of the emulated API).
#pragma once

#include <string>

#include "cuda_runtime.h"

namespace caption_emu {

// Records a launch's failure as the runtime's sticky error (cudaGetLastError returns it)
// and prints the reason once on stderr, as a GPU's error would be found only later.
void set_launch_error(cudaError_t error, const std::string& message);
bool stream_is_valid(cudaStream_t stream);
// Whether [p, p + bytes) lies inside one live cudaMalloc block.
bool is_device_range(const void* p, size_t bytes);
// is_device_range, or true while no device memory was ever allocated (so the library
// emulations can be unit-tested on plain host buffers).
bool device_range_once_allocated(const void* p, size_t bytes);
// Whether work enqueued on `stream` is being recorded by a capture.
bool stream_capturing(cudaStream_t stream);
// Runs the transfers from pinned host memory still pending (see runtime.cpp): before any
// other stream work, at every synchronisation, and before memory they touch is freed.
void run_pending_transfers();

}  // namespace caption_emu
