// The CUDA runtime facade (engine/backend.h), device probing, the per-device contexts
// and the error reporting of the check macros.
#include <algorithm>
#include <bit>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

#include "engine/backend.h"
#include "engine/cuda/check.h"
#include "engine/cuda/context.h"
#include "engine/device.h"
#include "engine/staging.h"
#include "kernels/cuda/elementwise.h"

namespace caption {

namespace cuda {

namespace {
int current_device_or(int fallback) {
  int d = fallback;
  if (cudaGetDevice(&d) != cudaSuccess) return fallback;
  return d;
}
}  // namespace

void throw_cuda_error(cudaError_t status, const char* stmt, const char* file, int line) {
  throw Error(str("CUDA error on cuda:", current_device_or(-1), ": ", cudaGetErrorString(status),
                  " (", cudaGetErrorName(status), ") in ", stmt, " at ", file, ":", line));
}

void throw_cublas_error(cublasStatus_t status, const char* stmt, const char* file, int line) {
  throw Error(str("cuBLAS error on cuda:", current_device_or(-1), ": ", cublasGetStatusString(status),
                  " in ", stmt, " at ", file, ":", line));
}

void throw_cudnn_error(cudnnStatus_t status, const char* stmt, const char* file, int line) {
  char detail[512] = {0};
  cudnnGetLastErrorString(detail, sizeof(detail));
  throw Error(str("cuDNN error on cuda:", current_device_or(-1), ": ", cudnnGetErrorString(status),
                  detail[0] ? str(" (", detail, ")") : std::string(), " in ", stmt, " at ", file,
                  ":", line));
}

bool sync_after_launch() {
  static const bool sync = [] {
    const char* v = std::getenv("CAPTION_CUDA_SYNC");
    return v != nullptr && std::strcmp(v, "1") == 0;
  }();
  return sync;
}

void launch_check(const char* what, const char* file, int line) {
  cudaError_t status = cudaGetLastError();
  if (status == cudaSuccess && sync_after_launch()) status = cudaDeviceSynchronize();
  if (status != cudaSuccess) throw_cuda_error(status, what, file, line);
}

DeviceContext& context(int device) {
  static std::mutex mutex;
  static auto* contexts = new std::vector<std::unique_ptr<DeviceContext>>();
  std::lock_guard lock(mutex);
  CAPTION_CHECK(device >= 0 && device < cuda_device_count(), "cuda:", device,
                " is not available (", cuda_probe_message(), ")");
  if (contexts->size() <= static_cast<size_t>(device)) contexts->resize(device + 1);
  auto& slot = (*contexts)[device];
  CAPTION_CUDA_CHECK(cudaSetDevice(device));
  if (!slot) {
    auto ctx = std::make_unique<DeviceContext>();
    ctx->device = device;
    CAPTION_CUDA_CHECK(cudaStreamCreateWithFlags(&ctx->stream, cudaStreamNonBlocking));
    CAPTION_CUBLAS_CHECK(cublasCreate(&ctx->cublas));
    CAPTION_CUBLAS_CHECK(cublasSetStream(ctx->cublas, ctx->stream));
    CAPTION_CUDNN_CHECK(cudnnCreate(&ctx->cudnn));
    CAPTION_CUDNN_CHECK(cudnnSetStream(ctx->cudnn, ctx->stream));
    slot = std::move(ctx);
  }
  return *slot;
}

}  // namespace cuda

namespace {
struct Probe {
  int count = 0;
  std::string message;
};
const Probe& probe() {
  static const Probe p = [] {
    Probe r;
    const cudaError_t status = cudaGetDeviceCount(&r.count);
    if (status != cudaSuccess) {
      r.count = 0;
      r.message = str(cudaGetErrorString(status), " (", cudaGetErrorName(status), ")");
      cudaGetLastError();  // clear the sticky error so later calls are not confused
      return r;
    }
    if (r.count == 0) {
      r.message = "no CUDA device found";
      return r;
    }
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess) {
      r.message = str(r.count, " device(s); cuda:0 is ", prop.name, " (sm_", prop.major,
                      prop.minor, ", ", prop.totalGlobalMem >> 20, " MiB)");
    }
    return r;
  }();
  return p;
}
}  // namespace

bool cuda_compiled() { return true; }
int cuda_device_count() { return probe().count; }
std::string cuda_probe_message() { return probe().message; }

BackingMemory cuda_backing_memory(int device) {
  BackingMemory b;
  b.name = str("cuda:", device);
  b.allocate = [device](size_t n) -> void* {
    CAPTION_CUDA_CHECK(cudaSetDevice(device));
    void* p = nullptr;
    if (cudaMalloc(&p, n) != cudaSuccess) {
      cudaGetLastError();
      return nullptr;
    }
    return p;
  };
  b.free = [device](void* p) {
    // Work queued on the stream may still use the block; the caching allocator only
    // reaches here from empty_cache(), so wait for the device first.
    cudaSetDevice(device);
    cudaDeviceSynchronize();
    if (cudaFree(p) != cudaSuccess) cudaGetLastError();
  };
  b.fill = [device](void* p, unsigned char v, size_t n) {
    CAPTION_CUDA_CHECK(cudaMemsetAsync(p, v, n, cuda::context(device).stream));
  };
  b.read = [device](void* dst, const void* src, size_t n) {
    auto s = cuda::context(device).stream;
    CAPTION_CUDA_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToHost, s));
    CAPTION_CUDA_CHECK(cudaStreamSynchronize(s));
  };
  return b;
}

namespace {
// The staging ring of a device (engine/staging.h): CAPTION_CUDA_STAGING_MB of pinned host
// memory at most (default 1024, taken only as uploads need it; 0 turns staging off, and
// every upload then waits for the device).
size_t staging_capacity() {
  static const size_t bytes = [] {
    const char* v = std::getenv("CAPTION_CUDA_STAGING_MB");
    if (v == nullptr || *v == '\0') return size_t{1024} << 20;
    char* end = nullptr;
    const long mb = std::strtol(v, &end, 10);
    CAPTION_CHECK(end != v && *end == '\0' && mb >= 0 && mb <= (1 << 20),
                  "CAPTION_CUDA_STAGING_MB must be a whole number of MiB from 0 to 1048576, got '",
                  v, "'");
    return static_cast<size_t>(mb) << 20;
  }();
  return bytes;
}

StagingBacking staging_backing(int device) {
  StagingBacking b;
  b.allocate = [](size_t n) -> void* {
    void* p = nullptr;
    if (cudaHostAlloc(&p, n, cudaHostAllocPortable) != cudaSuccess) {  // pinned for every device
      cudaGetLastError();
      return nullptr;
    }
    return p;
  };
  b.free = [](void* p) {
    if (cudaFreeHost(p) != cudaSuccess) cudaGetLastError();
  };
  b.make_event = []() -> void* {
    cudaEvent_t e = nullptr;
    CAPTION_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    return e;
  };
  b.destroy_event = [](void* e) {
    if (cudaEventDestroy(static_cast<cudaEvent_t>(e)) != cudaSuccess) cudaGetLastError();
  };
  b.record = [device](void* e) {
    CAPTION_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(e), cuda::context(device).stream));
  };
  b.finished = [](void* e) {
    const cudaError_t status = cudaEventQuery(static_cast<cudaEvent_t>(e));
    if (status == cudaErrorNotReady) {
      cudaGetLastError();
      return false;
    }
    CAPTION_CUDA_CHECK(status);
    return true;
  };
  b.wait = [](void* e) { CAPTION_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(e))); };
  b.transfer = [device](void* dst, const void* staged, size_t n) {
    CAPTION_CUDA_CHECK(cudaMemcpyAsync(dst, staged, n, cudaMemcpyHostToDevice, cuda::context(device).stream));
  };
  return b;
}

// The device's ring, made on first use; nullptr when staging is off.
StagingRing* staging_ring(int device) {
  static std::mutex mutex;
  static auto* rings = new std::vector<std::unique_ptr<StagingRing>>();  // kept for the process
  if (staging_capacity() == 0) return nullptr;
  std::lock_guard lock(mutex);
  if (rings->size() <= static_cast<size_t>(device)) rings->resize(device + 1);
  auto& slot = (*rings)[device];
  if (!slot) slot = std::make_unique<StagingRing>(staging_backing(device), staging_capacity());
  return slot.get();
}

// Whether the device's stream is recording a graph (a copy from the host must then fail
// the capture as before, not be recorded reading a staging buffer that changes).
bool capturing(cudaStream_t s) {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  CAPTION_CUDA_CHECK(cudaStreamIsCapturing(s, &status));
  return status != cudaStreamCaptureStatusNone;
}
}  // namespace

StagingStats cuda_staging_stats(int device) {
  StagingRing* ring = staging_ring(device);
  return ring ? ring->stats() : StagingStats{};
}

void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes) {
  if (bytes == 0) return;
  if (dst_device.is_cpu() && src_device.is_cpu()) {
    std::memcpy(dst, src, bytes);
    return;
  }
  const Device d = dst_device.is_cuda() ? dst_device : src_device;
  cudaStream_t s = cuda::stream(d);
  if (dst_device.is_cuda() && src_device.is_cuda() && dst_device.index != src_device.index) {
    CAPTION_CUDA_CHECK(cudaStreamSynchronize(cuda::stream(src_device)));
    CAPTION_CUDA_CHECK(cudaMemcpyPeerAsync(dst, dst_device.index, src, src_device.index, bytes, s));
    CAPTION_CUDA_CHECK(cudaStreamSynchronize(s));
    return;
  }
  if (src_device.is_cpu() && !capturing(s)) {
    StagingRing* ring = staging_ring(dst_device.index);
    if (ring != nullptr && ring->upload(dst, src, bytes)) return;  // no wait for the device
  }
  CAPTION_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, s));
  // The host side may reuse or read its buffer as soon as we return.
  if (dst_device.is_cpu() || src_device.is_cpu()) CAPTION_CUDA_CHECK(cudaStreamSynchronize(s));
}

void copy_many_to_host(const std::vector<HostCopy>& copies, Device source) {
  auto one_by_one = [&] {
    for (const HostCopy& c : copies) copy_bytes(c.dst, Device::cpu(), c.src, source, c.bytes);
  };
  if (source.is_cpu() || copies.size() < 2) return one_by_one();
  constexpr size_t kAlign = 256, kMax = size_t{64} << 20;
  size_t total = 0;
  for (const HostCopy& c : copies) total += (c.bytes + kAlign - 1) / kAlign * kAlign;
  const cudaStream_t s = cuda::stream(source);
  if (total > kMax || capturing(s)) return one_by_one();
  // One pinned buffer per device, grown as needed; free again when this call returns.
  struct Download {
    std::mutex mutex;
    void* data = nullptr;
    size_t size = 0;
  };
  static std::mutex downloads_mutex;
  static auto* downloads = new std::vector<std::unique_ptr<Download>>();  // kept for the process
  Download* d = nullptr;
  {
    std::lock_guard lock(downloads_mutex);
    if (downloads->size() <= static_cast<size_t>(source.index)) downloads->resize(source.index + 1);
    auto& slot = (*downloads)[source.index];
    if (!slot) slot = std::make_unique<Download>();
    d = slot.get();
  }
  std::lock_guard lock(d->mutex);
  if (d->size < total) {
    if (d->data != nullptr && cudaFreeHost(d->data) != cudaSuccess) cudaGetLastError();
    d->data = nullptr;
    d->size = 0;
    const size_t want = std::max(std::bit_ceil(total), size_t{64} << 10);
    if (cudaHostAlloc(&d->data, want, cudaHostAllocPortable) != cudaSuccess) {
      cudaGetLastError();
      d->data = nullptr;
      return one_by_one();
    }
    d->size = want;
  }
  auto* buffer = static_cast<unsigned char*>(d->data);
  size_t offset = 0;
  for (const HostCopy& c : copies) {
    if (c.bytes != 0)
      CAPTION_CUDA_CHECK(cudaMemcpyAsync(buffer + offset, c.src, c.bytes, cudaMemcpyDeviceToHost, s));
    offset += (c.bytes + kAlign - 1) / kAlign * kAlign;
  }
  CAPTION_CUDA_CHECK(cudaStreamSynchronize(s));
  offset = 0;
  for (const HostCopy& c : copies) {
    if (c.bytes != 0) std::memcpy(c.dst, buffer + offset, c.bytes);
    offset += (c.bytes + kAlign - 1) / kAlign * kAlign;
  }
}

void zero_bytes(void* dst, Device device, size_t bytes) {
  if (bytes == 0) return;
  if (device.is_cpu()) {
    std::memset(dst, 0, bytes);
    return;
  }
  CAPTION_CUDA_CHECK(cudaMemsetAsync(dst, 0, bytes, cuda::stream(device)));
}

void fill_bytes(void* dst, Device device, int64_t count, int elem_size, uint64_t bits) {
  if (count == 0) return;
  if (device.is_cpu()) return fill_host_bytes(dst, count, elem_size, bits);
  kernels::cuda::fill_value(dst, count, elem_size, bits, cuda::stream(device));
}

void synchronize(Device device) {
  if (device.is_cuda()) CAPTION_CUDA_CHECK(cudaStreamSynchronize(cuda::stream(device)));
}

}  // namespace caption
