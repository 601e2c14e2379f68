// The CUDA runtime facade of a CPU-only build: host paths work, device paths refuse.
#include "engine/backend.h"

#include <cstring>

#include "engine/error.h"

namespace caption {

#ifndef CAPTION_WITH_CUDA
namespace {
[[noreturn]] void no_cuda() { throw Error("this build of caption has no CUDA backend"); }
}  // namespace

BackingMemory cuda_backing_memory(int) { no_cuda(); }
void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes) {
  if (!dst_device.is_cpu() || !src_device.is_cpu()) no_cuda();
  if (bytes) std::memcpy(dst, src, bytes);
}
void copy_many_to_host(const std::vector<HostCopy>& copies, Device source) {
  for (const HostCopy& c : copies) copy_bytes(c.dst, Device::cpu(), c.src, source, c.bytes);
}
void zero_bytes(void* dst, Device device, size_t bytes) {
  if (!device.is_cpu()) no_cuda();
  if (bytes) std::memset(dst, 0, bytes);
}
void fill_bytes(void* dst, Device device, int64_t count, int elem_size, uint64_t bits) {
  if (!device.is_cpu()) no_cuda();
  fill_host_bytes(dst, count, elem_size, bits);
}
void synchronize(Device device) {
  if (!device.is_cpu()) no_cuda();
}
void cuda_begin_capture(int) { no_cuda(); }
void* cuda_end_capture(int, std::string*) { no_cuda(); }
void cuda_launch_graph(int, void*) { no_cuda(); }
void cuda_destroy_graph(void*) noexcept {}
void cuda_bf16_copy(int, const float*, int64_t, uint16_t*) { no_cuda(); }
StagingStats cuda_staging_stats(int) { no_cuda(); }
void* cuda_event_record(int) { no_cuda(); }
double cuda_event_elapsed_ms(int, void*, void*) { no_cuda(); }
void cuda_event_release(int, void*) noexcept {}
#endif

}  // namespace caption
