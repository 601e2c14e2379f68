// The CUDA host emulator's cuda_runtime.h: the subset of the CUDA runtime API and of the
// device-side language that caption's CUDA backend uses, implemented on the host so
// that the backend (kernels/cuda, engine/cuda) compiles with a C++ compiler and runs on
// a machine without a GPU. See tools/cuda_emu/README.md for what is emulated and what
// is not.
//
// Device memory is host memory; every stream is synchronous (work runs when it is
// enqueued); a kernel launch runs its blocks one after another, each block's threads as
// cooperative fibers that switch at __syncthreads and at warp shuffles, so the kernels'
// barriers, shared memory and shuffles keep their CUDA meaning.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <tuple>
#include <type_traits>
#include <utility>

#define CAPTION_CUDA_EMULATION 1
#define CUDART_VERSION 13000

// ---- the language's qualifiers --------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __launch_bounds__(...)
#define __align__(n) alignas(n)
// Static shared memory: one copy per emulating OS thread, and one block runs at a time
// on that thread, so the block's threads share it exactly as on a GPU.
#define __shared__ static thread_local

// ---- types ------------------------------------------------------------------------
struct uint3 {
  unsigned x, y, z;
};
struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
};

// Vector types, with CUDA's alignment (a float4 load is one 16-byte access).
struct alignas(8) float2 {
  float x, y;
};
struct alignas(16) float4 {
  float x, y, z, w;
};
inline float2 make_float2(float x, float y) { return {x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }

enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInitializationError = 3,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInvalidDevicePointer = 17,
  cudaErrorInvalidMemcpyDirection = 21,
  cudaErrorNoDevice = 100,
  cudaErrorInvalidDevice = 101,
  cudaErrorIllegalState = 401,
  cudaErrorIllegalAddress = 700,
  cudaErrorLaunchOutOfResources = 701,
  cudaErrorLaunchFailure = 719,
  cudaErrorNotReady = 600,
  cudaErrorNotSupported = 801,
  cudaErrorStreamCaptureUnsupported = 900,
  cudaErrorStreamCaptureInvalidated = 901,
  cudaErrorStreamCaptureUnmatched = 903,
  cudaErrorStreamCaptureImplicit = 906,
  cudaErrorUnknown = 999,
};
typedef cudaError_t cudaError;

enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4,
};

typedef struct CUstream_st* cudaStream_t;
typedef struct CUevent_st* cudaEvent_t;
typedef struct CUgraph_st* cudaGraph_t;
typedef struct CUgraphExec_st* cudaGraphExec_t;

enum cudaStreamCaptureMode {
  cudaStreamCaptureModeGlobal = 0,
  cudaStreamCaptureModeThreadLocal = 1,
  cudaStreamCaptureModeRelaxed = 2,
};
enum cudaStreamCaptureStatus {
  cudaStreamCaptureStatusNone = 0,
  cudaStreamCaptureStatusActive = 1,
  cudaStreamCaptureStatusInvalidated = 2,
};
#define cudaHostAllocDefault 0x00
#define cudaHostAllocPortable 0x01
#define cudaEventDefault 0x00
#define cudaEventDisableTiming 0x02
#define cudaStreamDefault 0x00
#define cudaStreamNonBlocking 0x01

struct cudaDeviceProp {
  char name[256];
  size_t totalGlobalMem;
  size_t sharedMemPerBlock;
  int regsPerBlock;
  int warpSize;
  int maxThreadsPerBlock;
  int maxThreadsDim[3];
  int maxGridSize[3];
  int major;
  int minor;
  int multiProcessorCount;
  int l2CacheSize;
  int memoryBusWidth;
  int clockRate;
  int memoryClockRate;
};

// ---- runtime API (tools/cuda_emu/src/runtime.cpp) ----------------------------------
const char* cudaGetErrorString(cudaError_t error);
const char* cudaGetErrorName(cudaError_t error);
cudaError_t cudaGetLastError();
cudaError_t cudaPeekAtLastError();
cudaError_t cudaGetDeviceCount(int* count);
cudaError_t cudaGetDevice(int* device);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device);
cudaError_t cudaDeviceSynchronize();
cudaError_t cudaMalloc(void** ptr, size_t size);
template <typename T>
inline cudaError_t cudaMalloc(T** ptr, size_t size) {
  return cudaMalloc(reinterpret_cast<void**>(ptr), size);
}
cudaError_t cudaFree(void* ptr);
cudaError_t cudaMemcpy(void* dst, const void* src, size_t count, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t count, cudaMemcpyKind kind,
                            cudaStream_t stream = nullptr);
cudaError_t cudaMemcpyPeerAsync(void* dst, int dst_device, const void* src, int src_device,
                                size_t count, cudaStream_t stream = nullptr);
cudaError_t cudaMemset(void* ptr, int value, size_t count);
cudaError_t cudaMemsetAsync(void* ptr, int value, size_t count, cudaStream_t stream = nullptr);
cudaError_t cudaStreamCreate(cudaStream_t* stream);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t stream);
cudaError_t cudaStreamSynchronize(cudaStream_t stream);
cudaError_t cudaEventCreate(cudaEvent_t* event);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned flags);
cudaError_t cudaEventQuery(cudaEvent_t event);
cudaError_t cudaHostAlloc(void** ptr, size_t size, unsigned flags);
cudaError_t cudaFreeHost(void* ptr);
cudaError_t cudaEventDestroy(cudaEvent_t event);
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream = nullptr);
cudaError_t cudaEventSynchronize(cudaEvent_t event);
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end);
// Stream capture and graphs: work enqueued on a capturing stream is recorded instead of
// run, and a launched graph runs it again in order. Calls a capture forbids (a
// synchronisation, a synchronous copy, a free) fail and invalidate the capture.
cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode mode);
cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* graph);
cudaError_t cudaStreamIsCapturing(cudaStream_t stream, cudaStreamCaptureStatus* status);
cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph,
                                 unsigned long long flags = 0);
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream);
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec);
cudaError_t cudaGraphDestroy(cudaGraph_t graph);

// ---- the emulator's machinery (tools/cuda_emu/src/launch.cpp) ----------------------
namespace caption_emu {

// What the running emulated thread sees as its built-in variables.
struct ThreadState {
  uint3 thread_idx;
  uint3 block_idx;
  dim3 block_dim;
  dim3 grid_dim;
  unsigned lane;   // linear thread index % 32
  unsigned warp;   // linear thread index / 32
};
extern thread_local ThreadState* t_thread;

struct LaunchConfig {
  dim3 grid, block;
  size_t shared_bytes = 0;
  cudaStream_t stream = nullptr;
  const char* name = "kernel";
  LaunchConfig(dim3 g, dim3 b, size_t s = 0, cudaStream_t st = nullptr)
      : grid(g), block(b), shared_bytes(s), stream(st) {}
  LaunchConfig& named(const char* n) {
    name = n;
    return *this;
  }
};

// Runs `body` once per thread of the grid (body reads t_thread). `kernel` identifies the
// kernel (its address) for the emulator's bookkeeping and messages.
void run_grid(const LaunchConfig& config, const void* kernel, void (*body)(void*), void* closure);

void sync_block();          // __syncthreads
void sync_warp();           // the exchange points of warp shuffles
unsigned long long* warp_slots();  // 32 exchange slots of the current warp
void* dynamic_shared();     // extern __shared__ of the current block
void check_full_warp(unsigned mask, const char* what);

template <typename Kernel>
struct PendingLaunch {
  Kernel kernel;
  LaunchConfig config;
};

template <typename... Args>
struct KernelArgs {
  std::tuple<Args...> values;
};
template <typename... Args>
KernelArgs<std::decay_t<Args>...> args(Args&&... a) {
  return {std::tuple<std::decay_t<Args>...>(std::forward<Args>(a)...)};
}

// `kernel<<<g, b, s, st>>>(a...)` is rewritten by tools/cuda_emu/translate.py into
// `kernel ^ ::caption_emu::LaunchConfig(g, b, s, st).named("kernel") ^
//  ::caption_emu::args(a...)`.
template <typename R, typename... P>
PendingLaunch<R (*)(P...)> operator^(R (*kernel)(P...), const LaunchConfig& config) {
  return {kernel, config};
}
// Work for a stream: run now, or recorded when the stream is capturing (the task then
// owns copies of everything it needs).
void enqueue(cudaStream_t stream, std::function<void()> task);

template <typename R, typename... P, typename... A>
void operator^(const PendingLaunch<R (*)(P...)>& launch, const KernelArgs<A...>& a) {
  static_assert(sizeof...(P) == sizeof...(A), "kernel launched with the wrong number of arguments");
  struct Closure {
    R (*kernel)(P...);
    std::tuple<A...> values;
  };
  enqueue(launch.config.stream,
          [config = launch.config, closure = Closure{launch.kernel, a.values}]() mutable {
            run_grid(
                config, reinterpret_cast<const void*>(closure.kernel),
                [](void* c) {
                  auto* cl = static_cast<Closure*>(c);
                  std::apply([cl](const A&... v) { cl->kernel(static_cast<P>(v)...); }, cl->values);
                },
                &closure);
          });
}

template <typename T>
T* dynamic_shared_as() {
  return static_cast<T*>(dynamic_shared());
}

template <typename T>
T shuffle(unsigned mask, T v, int src_lane_of_mine(unsigned lane, int arg, int width), int arg,
          int width, const char* what) {
  static_assert(sizeof(T) <= sizeof(unsigned long long), "shuffle of a value wider than 8 bytes");
  check_full_warp(mask, what);
  unsigned long long* slots = warp_slots();
  const unsigned lane = t_thread->lane;
  unsigned long long bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  slots[lane] = bits;
  sync_warp();
  const int src = src_lane_of_mine(lane, arg, width);
  T r = v;
  if (src >= 0) std::memcpy(&r, &slots[src], sizeof(T));
  sync_warp();
  return r;
}

}  // namespace caption_emu

// ---- built-in variables ---------------------------------------------------------
#define threadIdx (::caption_emu::t_thread->thread_idx)
#define blockIdx (::caption_emu::t_thread->block_idx)
#define blockDim (::caption_emu::t_thread->block_dim)
#define gridDim (::caption_emu::t_thread->grid_dim)
inline constexpr int warpSize = 32;

// ---- device functions -------------------------------------------------------------
inline void __syncthreads() { ::caption_emu::sync_block(); }
inline void __syncwarp(unsigned mask = 0xffffffffu) {
  ::caption_emu::check_full_warp(mask, "__syncwarp");
  ::caption_emu::sync_warp();
}

template <typename T>
inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  return ::caption_emu::shuffle<T>(
      mask, v,
      [](unsigned lane, int d, int w) -> int {
        const int in_segment = static_cast<int>(lane) % w;
        return in_segment + d < w ? static_cast<int>(lane) + d : -1;
      },
      static_cast<int>(delta), width, "__shfl_down_sync");
}
template <typename T>
inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  return ::caption_emu::shuffle<T>(
      mask, v,
      [](unsigned lane, int d, int w) -> int {
        const int in_segment = static_cast<int>(lane) % w;
        return in_segment - d >= 0 ? static_cast<int>(lane) - d : -1;
      },
      static_cast<int>(delta), width, "__shfl_up_sync");
}
template <typename T>
inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
  return ::caption_emu::shuffle<T>(
      mask, v,
      [](unsigned lane, int m, int w) -> int {
        const int base = static_cast<int>(lane) / w * w;
        const int src = static_cast<int>(lane) ^ m;
        return src >= base && src < base + w ? src : static_cast<int>(lane);
      },
      lane_mask, width, "__shfl_xor_sync");
}
template <typename T>
inline T __shfl_sync(unsigned mask, T v, int src_lane, int width = 32) {
  return ::caption_emu::shuffle<T>(
      mask, v,
      [](unsigned lane, int s, int w) -> int { return static_cast<int>(lane) / w * w + s % w; },
      src_lane, width, "__shfl_sync");
}

// Correctly rounded single operations (the emulator's code is compiled with
// -ffp-contract=off, so none of these is fused with a neighbour, as the intrinsics
// guarantee on the GPU).
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fsqrt_rn(float a) { return std::sqrt(a); }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
inline float __expf(float a) { return std::exp(a); }
inline float __logf(float a) { return std::log(a); }
inline float __fdividef(float a, float b) { return a / b; }
inline float rsqrtf(float a) { return 1.0f / std::sqrt(a); }
inline unsigned __float_as_uint(float f) {
  unsigned u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}
inline float __uint_as_float(unsigned u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
inline int __float_as_int(float f) {
  int u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}
inline float __int_as_float(int u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
template <typename T>
inline T __ldg(const T* p) {
  return *p;
}
