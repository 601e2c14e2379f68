// The CUDA host emulator's kernel launches: built-in variables, grid-stride loops,
// static and dynamic shared memory with __syncthreads, warp shuffles, 2-D and 3-D
// configurations, and the errors a GPU would give (bad configurations) or that the
// emulator adds (divergent barriers, full-mask shuffles after lanes exit, failures
// inside a kernel), each reported through cudaGetLastError as a launch failure.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <stdexcept>
#include <vector>

namespace {

template <typename T>
struct DeviceBuffer {
  T* p = nullptr;
  size_t n = 0;
  explicit DeviceBuffer(size_t count) : n(count) {
    EXPECT_EQ(cudaMalloc(&p, sizeof(T) * n), cudaSuccess);
  }
  ~DeviceBuffer() { cudaFree(p); }
  std::vector<T> read() const {
    std::vector<T> v(n);
    EXPECT_EQ(cudaMemcpy(v.data(), p, sizeof(T) * n, cudaMemcpyDeviceToHost), cudaSuccess);
    return v;
  }
  void write(const std::vector<T>& v) {
    EXPECT_EQ(cudaMemcpy(p, v.data(), sizeof(T) * n, cudaMemcpyHostToDevice), cudaSuccess);
  }
};

__global__ void index_kernel(int64_t* out, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x)
    out[i] = i * 3 + 1;
}

TEST(CudaEmu, GridStrideLoopCoversEveryElementOnce) {
  DeviceBuffer<int64_t> out(1000);
  index_kernel<<<3, 64>>>(out.p, 1000);
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  const auto v = out.read();
  for (int64_t i = 0; i < 1000; ++i) ASSERT_EQ(v[static_cast<size_t>(i)], i * 3 + 1);
}

__global__ void coordinates_kernel(int* out) {
  const unsigned x = blockIdx.x * blockDim.x + threadIdx.x;
  const unsigned y = blockIdx.y * blockDim.y + threadIdx.y;
  const unsigned z = blockIdx.z * blockDim.z + threadIdx.z;
  const unsigned w = gridDim.x * blockDim.x, h = gridDim.y * blockDim.y;
  out[(z * h + y) * w + x] = static_cast<int>(x + 100 * y + 10000 * z);
}

TEST(CudaEmu, ThreeDimensionalGridsAndBlocks) {
  const dim3 grid(2, 3, 2), block(4, 2, 3);
  const unsigned w = 8, h = 6, d = 6;
  DeviceBuffer<int> out(w * h * d);
  coordinates_kernel<<<grid, block>>>(out.p);
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  const auto v = out.read();
  for (unsigned z = 0; z < d; ++z)
    for (unsigned y = 0; y < h; ++y)
      for (unsigned x = 0; x < w; ++x)
        ASSERT_EQ(v[(z * h + y) * w + x], static_cast<int>(x + 100 * y + 10000 * z));
}

// A block reduction through static shared memory: wrong barriers would read partial sums.
__global__ void block_sum_kernel(const float* x, float* out, int n) {
  __shared__ float partial[256];
  float s = 0;
  for (int i = threadIdx.x; i < n; i += blockDim.x) s += x[blockIdx.x * n + i];
  partial[threadIdx.x] = s;
  __syncthreads();
  for (unsigned stride = blockDim.x / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) partial[threadIdx.x] += partial[threadIdx.x + stride];
    __syncthreads();
  }
  if (threadIdx.x == 0) out[blockIdx.x] = partial[0];
}

TEST(CudaEmu, SharedMemoryAndBarriers) {
  const int rows = 5, n = 1000;
  std::vector<float> h(rows * n);
  for (size_t i = 0; i < h.size(); ++i) h[i] = static_cast<float>(i % 7);
  DeviceBuffer<float> x(h.size()), out(rows);
  x.write(h);
  for (int repeat = 0; repeat < 2; ++repeat) {  // the second launch uses what the first learnt
    block_sum_kernel<<<rows, 256>>>(x.p, out.p, n);
    ASSERT_EQ(cudaGetLastError(), cudaSuccess);
    const auto v = out.read();
    for (int r = 0; r < rows; ++r) {
      float want = 0;
      for (int i = 0; i < n; ++i) want += h[static_cast<size_t>(r * n + i)];
      EXPECT_EQ(v[static_cast<size_t>(r)], want) << "row " << r;
    }
  }
}

__global__ void shuffle_kernel(const float* x, float* down, float* butterfly, int* lanes) {
  const unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
  float v = x[i];
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
  if (threadIdx.x % 32 == 0) down[i / 32] = v;
  float b = x[i];
  for (int offset = 16; offset > 0; offset >>= 1) b += __shfl_xor_sync(0xffffffffu, b, offset);
  butterfly[i] = b;
  lanes[i] = __shfl_sync(0xffffffffu, static_cast<int>(threadIdx.x % 32), 5);
}

TEST(CudaEmu, WarpShuffles) {
  const int blocks = 2, threads = 128, n = blocks * threads;
  std::vector<float> h(n);
  std::iota(h.begin(), h.end(), 1.0f);
  DeviceBuffer<float> x(n), down(n / 32), butterfly(n);
  DeviceBuffer<int> lanes(n);
  x.write(h);
  shuffle_kernel<<<blocks, threads>>>(x.p, down.p, butterfly.p, lanes.p);
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  const auto d = down.read(), b = butterfly.read();
  const auto l = lanes.read();
  for (int w = 0; w < n / 32; ++w) {
    float want = 0;
    for (int i = 0; i < 32; ++i) want += h[static_cast<size_t>(w * 32 + i)];
    EXPECT_EQ(d[static_cast<size_t>(w)], want);
    for (int i = 0; i < 32; ++i) EXPECT_EQ(b[static_cast<size_t>(w * 32 + i)], want);
  }
  for (int v : l) EXPECT_EQ(v, 5);
}

__global__ void dynamic_shared_kernel(const float* x, float* out) {
  extern __shared__ float tile[];
  tile[threadIdx.x] = x[blockIdx.x * blockDim.x + threadIdx.x];
  __syncthreads();
  out[blockIdx.x * blockDim.x + threadIdx.x] = tile[blockDim.x - 1 - threadIdx.x];
}

__global__ void read_unwritten_shared_kernel(float* out) {
  extern __shared__ float tile[];
  out[threadIdx.x] = tile[threadIdx.x];
}

TEST(CudaEmu, DynamicSharedMemoryIsPerBlockAndStartsAsNaN) {
  const int blocks = 3, threads = 64;
  std::vector<float> h(blocks * threads);
  std::iota(h.begin(), h.end(), 0.0f);
  DeviceBuffer<float> x(h.size()), out(h.size());
  x.write(h);
  dynamic_shared_kernel<<<blocks, threads, threads * sizeof(float)>>>(x.p, out.p);
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  const auto v = out.read();
  for (int b = 0; b < blocks; ++b)
    for (int t = 0; t < threads; ++t)
      EXPECT_EQ(v[static_cast<size_t>(b * threads + t)], h[static_cast<size_t>(b * threads + threads - 1 - t)]);
  read_unwritten_shared_kernel<<<1, 32, 32 * sizeof(float)>>>(out.p);
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  const auto u = out.read();
  for (int t = 0; t < 32; ++t) EXPECT_TRUE(std::isnan(u[static_cast<size_t>(t)]));
}

TEST(CudaEmu, BadConfigurationsAreLaunchErrors) {
  DeviceBuffer<int64_t> out(4);
  index_kernel<<<0, 64>>>(out.p, 4);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);  // read once, then cleared
  index_kernel<<<1, 2048>>>(out.p, 4);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
  dynamic_shared_kernel<<<1, 32, 64 * 1024>>>(nullptr, nullptr);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
}

// Half the block waits at __syncthreads, the other half at a warp exchange that needs
// the first half: neither can open.
__global__ void divergent_barrier_kernel(float* out) {
  if (threadIdx.x < 16)
    __syncthreads();
  else
    out[threadIdx.x] = __shfl_down_sync(0xffffffffu, 1.0f, 1);
}

__global__ void early_exit_shuffle_kernel(float* out) {
  if (threadIdx.x >= 20) return;
  out[threadIdx.x] = __shfl_down_sync(0xffffffffu, 1.0f, 1);
}

__global__ void throwing_kernel(float* out) {
  if (threadIdx.x == 7) throw std::runtime_error("thread 7 failed");
  out[threadIdx.x] = 0.0f;
}

TEST(CudaEmu, BugsInKernelsAreLaunchFailures) {
  DeviceBuffer<float> out(64);
  // Two groups waiting at different barriers, neither complete: reported, not a hang.
  divergent_barrier_kernel<<<1, 32>>>(out.p);
  EXPECT_EQ(cudaGetLastError(), cudaErrorLaunchFailure);
  early_exit_shuffle_kernel<<<1, 32>>>(out.p);
  EXPECT_EQ(cudaGetLastError(), cudaErrorLaunchFailure);
  throwing_kernel<<<1, 32>>>(out.p);
  EXPECT_EQ(cudaGetLastError(), cudaErrorLaunchFailure);
  // The emulator recovers: the next launch runs.
  index_kernel<<<1, 32>>>(reinterpret_cast<int64_t*>(out.p), 8);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
}

TEST(CudaEmu, CopiesAreCheckedAgainstDeviceMemory) {
  DeviceBuffer<float> d(16);
  std::vector<float> h(16, 1.0f), back(16);
  EXPECT_EQ(cudaMemcpy(d.p, h.data(), 64, cudaMemcpyHostToDevice), cudaSuccess);
  // Host memory where the device side should be, and a copy past the block's end.
  EXPECT_EQ(cudaMemcpy(back.data(), h.data(), 64, cudaMemcpyHostToDevice), cudaErrorInvalidValue);
  EXPECT_EQ(cudaMemcpy(back.data(), d.p, 68, cudaMemcpyDeviceToHost), cudaErrorInvalidValue);
  EXPECT_EQ(cudaMemsetAsync(h.data(), 0, 64, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(cudaFree(h.data()), cudaErrorInvalidDevicePointer);
  cudaGetLastError();
  EXPECT_EQ(cudaMemcpy(back.data(), d.p, 64, cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_EQ(back, h);
}

}  // namespace

namespace {

__global__ void add_kernel(float* x, float v, int n) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) x[i] += v;
}

// A copy from pinned host memory is left pending, as a GPU's copy engine leaves it: the
// host may not write the buffer again until an event recorded after it completes. It runs
// before the next stream work, at a synchronisation, or before its memory is freed.
TEST(CudaEmu, TransfersFromPinnedMemoryArePendingUntilTheStreamMoves) {
  cudaStream_t s = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
  DeviceBuffer<float> d(16);
  float* pinned = nullptr;
  ASSERT_EQ(cudaHostAlloc(reinterpret_cast<void**>(&pinned), 64, cudaHostAllocDefault), cudaSuccess);
  cudaEvent_t e = nullptr;
  ASSERT_EQ(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), cudaSuccess);
  std::fill(pinned, pinned + 16, 1.f);
  ASSERT_EQ(cudaMemcpyAsync(d.p, pinned, 64, cudaMemcpyHostToDevice, s), cudaSuccess);
  ASSERT_EQ(cudaEventRecord(e, s), cudaSuccess);
  EXPECT_EQ(cudaEventQuery(e), cudaErrorNotReady);
  std::fill(pinned, pinned + 16, 2.f);  // too early: the transfer sends these
  add_kernel<<<1, 32, 0, s>>>(d.p, 0.5f, 16);  // runs the transfer first
  EXPECT_EQ(cudaEventQuery(e), cudaSuccess);
  EXPECT_EQ(d.read(), std::vector<float>(16, 2.5f));
  // Pending at a synchronisation, and at the buffer's release.
  std::fill(pinned, pinned + 16, 3.f);
  ASSERT_EQ(cudaMemcpyAsync(d.p, pinned, 64, cudaMemcpyHostToDevice, s), cudaSuccess);
  ASSERT_EQ(cudaEventRecord(e, s), cudaSuccess);
  EXPECT_EQ(cudaEventQuery(e), cudaErrorNotReady);
  ASSERT_EQ(cudaEventSynchronize(e), cudaSuccess);
  EXPECT_EQ(cudaEventQuery(e), cudaSuccess);
  EXPECT_EQ(d.read(), std::vector<float>(16, 3.f));
  std::fill(pinned, pinned + 16, 4.f);
  ASSERT_EQ(cudaMemcpyAsync(d.p, pinned, 64, cudaMemcpyHostToDevice, s), cudaSuccess);
  EXPECT_EQ(cudaFreeHost(pinned), cudaSuccess);
  EXPECT_EQ(d.read(), std::vector<float>(16, 4.f));
  EXPECT_EQ(cudaFreeHost(d.p), cudaErrorInvalidValue);  // not pinned memory
  cudaGetLastError();
  cudaEventDestroy(e);
  cudaStreamDestroy(s);
}

// A captured stream records kernels and device copies; each launch of the graph runs them
// again, in order, with the arguments of the capture.
TEST(CudaEmuGraphs, CaptureRecordsAndLaunchReplays) {
  cudaStream_t s = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
  DeviceBuffer<float> x(64), y(64);
  x.write(std::vector<float>(64, 1.0f));
  ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed), cudaSuccess);
  cudaStreamCaptureStatus status;
  ASSERT_EQ(cudaStreamIsCapturing(s, &status), cudaSuccess);
  EXPECT_EQ(status, cudaStreamCaptureStatusActive);
  add_kernel<<<1, 32, 0, s>>>(x.p, 2.0f, 64);
  ASSERT_EQ(cudaMemcpyAsync(y.p, x.p, 64 * sizeof(float), cudaMemcpyDeviceToDevice, s), cudaSuccess);
  cudaGraph_t graph = nullptr;
  ASSERT_EQ(cudaStreamEndCapture(s, &graph), cudaSuccess);
  EXPECT_EQ(x.read(), std::vector<float>(64, 1.0f)) << "captured work must not run at capture";
  cudaGraphExec_t exec = nullptr;
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
  for (int replay = 1; replay <= 3; ++replay) {
    ASSERT_EQ(cudaGraphLaunch(exec, s), cudaSuccess);
    EXPECT_EQ(y.read(), std::vector<float>(64, 1.0f + 2.0f * replay));
  }
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(s);
}

// What a capture forbids fails and invalidates it: synchronising, a synchronous copy, a
// copy with host memory, and cudaMalloc outside relaxed mode.
TEST(CudaEmuGraphs, ForbiddenCallsInvalidateTheCapture) {
  cudaStream_t s = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
  DeviceBuffer<float> x(16);
  std::vector<float> host(16, 0.0f);
  auto expect_invalidated = [&](auto&& forbidden, cudaStreamCaptureMode mode) {
    ASSERT_EQ(cudaStreamBeginCapture(s, mode), cudaSuccess);
    EXPECT_NE(forbidden(), cudaSuccess);
    cudaGraph_t graph = nullptr;
    EXPECT_EQ(cudaStreamEndCapture(s, &graph), cudaErrorStreamCaptureInvalidated);
    EXPECT_EQ(graph, nullptr);
    cudaGetLastError();
  };
  expect_invalidated([&] { return cudaStreamSynchronize(s); }, cudaStreamCaptureModeRelaxed);
  expect_invalidated([&] { return cudaMemcpy(host.data(), x.p, 64, cudaMemcpyDeviceToHost); },
                     cudaStreamCaptureModeRelaxed);
  expect_invalidated(
      [&] { return cudaMemcpyAsync(host.data(), x.p, 64, cudaMemcpyDeviceToHost, s); },
      cudaStreamCaptureModeRelaxed);
  expect_invalidated([&] {
    void* p = nullptr;
    return cudaMalloc(&p, 64);
  }, cudaStreamCaptureModeGlobal);
  // Relaxed mode allows cudaMalloc (a caching allocator's private pool relies on it).
  ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed), cudaSuccess);
  void* p = nullptr;
  EXPECT_EQ(cudaMalloc(&p, 64), cudaSuccess);
  cudaGraph_t graph = nullptr;
  EXPECT_EQ(cudaStreamEndCapture(s, &graph), cudaSuccess);
  cudaGraphDestroy(graph);
  cudaFree(p);
  // The legacy default stream cannot be captured.
  EXPECT_EQ(cudaStreamBeginCapture(nullptr, cudaStreamCaptureModeRelaxed),
            cudaErrorStreamCaptureUnsupported);
  cudaGetLastError();
  cudaStreamDestroy(s);
}

}  // namespace
