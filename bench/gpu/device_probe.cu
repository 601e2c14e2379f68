// The GPU machine's two ceilings, measured once per check (docs: bench/gpu/README.md):
// device memory bandwidth (a large device-to-device copy, bytes read plus bytes written)
// and the matrix-product rate through cuBLAS (FP32 SGEMM, TF32 tensor cores, and BF16
// with FP32 accumulation). Standalone on purpose (nvcc + cuBLAS only), so that the
// numbers come back even when the engine's build fails.
//
// Method (as in ENGINEERING.md, "Speed"): random inputs (never zeros), outputs poisoned
// with NaN before a checked run and then scanned for unwritten elements, a sample of
// outputs compared with a float64 CPU product, warm-up first, CUDA events around each
// repetition, the median reported. Buffers are far larger than the L2 cache.
//
// Build: nvcc -O2 -std=c++17 -arch=sm_90 bench/gpu/device_probe.cu -lcublas -o device_probe
// Output: a table, then one "RESULT <name> <value> <unit> <check>" line per measurement.
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#define CK(stmt)                                                                         \
  do {                                                                                   \
    cudaError_t e_ = (stmt);                                                             \
    if (e_ != cudaSuccess) {                                                             \
      std::fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #stmt,           \
                   cudaGetErrorString(e_));                                              \
      std::exit(1);                                                                      \
    }                                                                                    \
  } while (0)
#define CKB(stmt)                                                                        \
  do {                                                                                   \
    cublasStatus_t s_ = (stmt);                                                          \
    if (s_ != CUBLAS_STATUS_SUCCESS) {                                                   \
      std::fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #stmt,           \
                   cublasGetStatusString(s_));                                           \
      std::exit(1);                                                                      \
    }                                                                                    \
  } while (0)
#define CK_LAUNCH() CK(cudaGetLastError())

namespace {

__host__ __device__ inline float uniform_pm1(uint64_t seed, uint64_t i) {
  uint64_t z = seed + 0x9E3779B97F4A7C15ull * (i + 1);  // splitmix64
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return static_cast<float>(z >> 40) * (2.0f / 16777216.0f) - 1.0f;  // [-1, 1)
}

__global__ void fill_f32(float* p, size_t n, uint64_t seed) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    p[i] = uniform_pm1(seed, i);
}
__global__ void fill_bf16(__nv_bfloat16* p, size_t n, uint64_t seed) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    p[i] = __float2bfloat16(uniform_pm1(seed, i));
}
template <typename T>
__device__ inline float to_f(T v);
template <>
__device__ inline float to_f<float>(float v) { return v; }
template <>
__device__ inline float to_f<__nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }
template <typename T>
__global__ void count_nonfinite(const T* p, size_t n, unsigned long long* count) {
  unsigned long long local = 0;
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    local += !isfinite(to_f(p[i]));
  if (local) atomicAdd(count, local);
}
// A plain copy kernel, 16 bytes per thread per step, for comparison with cudaMemcpy.
__global__ void copy_f4(const float4* __restrict__ src, float4* __restrict__ dst, size_t n4) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n4; i += size_t(gridDim.x) * blockDim.x)
    dst[i] = src[i];
}

int g_blocks = 0;  // 4 blocks of 256 per multiprocessor for grid-stride kernels

template <typename T>
unsigned long long nonfinite(const T* p, size_t n) {
  unsigned long long* d = nullptr;
  unsigned long long h = 0;
  CK(cudaMalloc(&d, sizeof(*d)));
  CK(cudaMemset(d, 0, sizeof(*d)));
  count_nonfinite<<<g_blocks, 256>>>(p, n, d);
  CK_LAUNCH();
  CK(cudaMemcpy(&h, d, sizeof(h), cudaMemcpyDeviceToHost));
  CK(cudaFree(d));
  return h;
}

// Median milliseconds of `reps` runs of fn after `warm` untimed runs, one event pair each.
template <typename F>
double median_ms(int warm, int reps, F fn) {
  for (int i = 0; i < warm; ++i) fn();
  CK(cudaDeviceSynchronize());
  cudaEvent_t a, b;
  CK(cudaEventCreate(&a));
  CK(cudaEventCreate(&b));
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    CK(cudaEventRecord(a));
    fn();
    CK(cudaEventRecord(b));
    CK(cudaEventSynchronize(b));
    float ms = 0;
    CK(cudaEventElapsedTime(&ms, a, b));
    t.push_back(ms);
  }
  CK(cudaEventDestroy(a));
  CK(cudaEventDestroy(b));
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

struct Row {
  std::string name, unit, check;
  double value;
};
std::vector<Row> g_rows;
int g_failures = 0;

float bf16_round(float x) { return __bfloat162float(__float2bfloat16(x)); }

// One product C = A B (column-major, M = N = K = n) through cublasGemmEx, timed and
// checked. in_type: CUDA_R_32F or CUDA_R_16BF (A, B and C alike); the reference rounds
// the inputs as the device saw them and accumulates in double.
void gemm_case(cublasHandle_t h, const char* name, int n, cudaDataType_t type,
               cublasComputeType_t compute, double tol) {
  const size_t nn = size_t(n) * n;
  const size_t esz = type == CUDA_R_32F ? 4 : 2;
  void *A, *B, *C;
  CK(cudaMalloc(&A, nn * esz));
  CK(cudaMalloc(&B, nn * esz));
  CK(cudaMalloc(&C, nn * esz));
  if (type == CUDA_R_32F) {
    fill_f32<<<g_blocks, 256>>>(static_cast<float*>(A), nn, 11);
    fill_f32<<<g_blocks, 256>>>(static_cast<float*>(B), nn, 12);
  } else {
    fill_bf16<<<g_blocks, 256>>>(static_cast<__nv_bfloat16*>(A), nn, 11);
    fill_bf16<<<g_blocks, 256>>>(static_cast<__nv_bfloat16*>(B), nn, 12);
  }
  CK_LAUNCH();
  const float one = 1.0f, zero = 0.0f;
  auto run = [&] {
    CKB(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &one, A, type, n, B, type, n, &zero,
                     C, type, n, compute, CUBLAS_GEMM_DEFAULT));
  };
  // Checked run: poison C (all-ones bytes are NaN in float32 and bfloat16), run, scan.
  CK(cudaMemset(C, 0xFF, nn * esz));
  run();
  CK(cudaDeviceSynchronize());
  unsigned long long bad = type == CUDA_R_32F ? nonfinite(static_cast<float*>(C), nn)
                                              : nonfinite(static_cast<__nv_bfloat16*>(C), nn);
  // Sampled reference: 64 elements, inputs regenerated on the host (same generator).
  double num = 0, den = 0;
  for (int s = 0; s < 64; ++s) {
    const int i = int((uint64_t(s) * 2654435761u) % n), j = int((uint64_t(s) * 40503u + 7) % n);
    double ref = 0;
    for (int k = 0; k < n; ++k) {
      float a = uniform_pm1(11, size_t(k) * n + i), b = uniform_pm1(12, size_t(j) * n + k);
      if (type != CUDA_R_32F) { a = bf16_round(a); b = bf16_round(b); }
      ref += double(a) * double(b);
    }
    float got;
    if (type == CUDA_R_32F) {
      CK(cudaMemcpy(&got, static_cast<float*>(C) + size_t(j) * n + i, 4, cudaMemcpyDeviceToHost));
    } else {
      __nv_bfloat16 g;
      CK(cudaMemcpy(&g, static_cast<__nv_bfloat16*>(C) + size_t(j) * n + i, 2, cudaMemcpyDeviceToHost));
      got = __bfloat162float(g);
    }
    num += (got - ref) * (got - ref);
    den += ref * ref;
  }
  const double rel = std::sqrt(num / den);
  const bool ok = bad == 0 && std::isfinite(rel) && rel <= tol;
  if (!ok) ++g_failures;
  const double ms = median_ms(3, 10, run);
  const double tflops = 2.0 * n * double(n) * n / (ms * 1e-3) / 1e12;
  char check[160];
  std::snprintf(check, sizeof check, "%s rel_err=%.2e (tol %.0e) unwritten=%llu",
                ok ? "ok" : "FAIL", rel, tol, bad);
  g_rows.push_back({name, "TFLOP/s", check, tflops});
  CK(cudaFree(A));
  CK(cudaFree(B));
  CK(cudaFree(C));
}

}  // namespace

int main(int argc, char** argv) {
  const int n = argc > 1 ? std::atoi(argv[1]) : 8192;        // matrix size
  const size_t copy_bytes = size_t(1) << 30;                 // 1 GiB per buffer
  int dev = 0;
  CK(cudaGetDevice(&dev));
  cudaDeviceProp p{};
  CK(cudaGetDeviceProperties(&p, dev));
  int drv = 0, rt = 0;
  CK(cudaDriverGetVersion(&drv));
  CK(cudaRuntimeGetVersion(&rt));
  g_blocks = 4 * p.multiProcessorCount;
  std::printf("device: %s, sm_%d%d, %d multiprocessors, L2 %.0f MB, %.1f GiB, driver %d, runtime %d\n",
              p.name, p.major, p.minor, p.multiProcessorCount, p.l2CacheSize / 1e6,
              p.totalGlobalMem / double(1 << 30), drv, rt);

  // ---- copy bandwidth (bytes read + bytes written) ----
  {
    float *src, *dst;
    CK(cudaMalloc(&src, copy_bytes));
    CK(cudaMalloc(&dst, copy_bytes));
    const size_t nf = copy_bytes / 4;
    fill_f32<<<g_blocks, 256>>>(src, nf, 1);
    CK_LAUNCH();
    CK(cudaMemset(dst, 0xFF, copy_bytes));
    const double ms_memcpy = median_ms(3, 20, [&] {
      CK(cudaMemcpyAsync(dst, src, copy_bytes, cudaMemcpyDeviceToDevice));
    });
    // Check one run of the copy kernel wrote everything (dst poisoned again first).
    CK(cudaMemset(dst, 0xFF, copy_bytes));
    copy_f4<<<g_blocks, 256>>>(reinterpret_cast<const float4*>(src), reinterpret_cast<float4*>(dst), nf / 4);
    CK_LAUNCH();
    CK(cudaDeviceSynchronize());
    const unsigned long long bad = nonfinite(dst, nf);
    if (bad) ++g_failures;
    const double ms_kernel = median_ms(3, 20, [&] {
      copy_f4<<<g_blocks, 256>>>(reinterpret_cast<const float4*>(src), reinterpret_cast<float4*>(dst), nf / 4);
    });
    CK_LAUNCH();
    const double gb = 2.0 * copy_bytes / 1e9;
    g_rows.push_back({"copy cudaMemcpy D2D 1 GiB", "GB/s", "ok (read+write)", gb / (ms_memcpy * 1e-3)});
    char check[96];
    std::snprintf(check, sizeof check, "%s unwritten=%llu", bad ? "FAIL" : "ok", bad);
    g_rows.push_back({"copy kernel float4 1 GiB", "GB/s", check, gb / (ms_kernel * 1e-3)});
    CK(cudaFree(src));
    CK(cudaFree(dst));
  }

  // ---- matrix products ----
  cublasHandle_t h;
  CKB(cublasCreate(&h));
  const std::string sz = std::to_string(n);
  // FP32: tolerance from float32 accumulation over n terms of size ~1.
  gemm_case(h, ("sgemm fp32 " + sz + "^3").c_str(), n, CUDA_R_32F, CUBLAS_COMPUTE_32F, 1e-4);
  gemm_case(h, ("sgemm tf32 " + sz + "^3").c_str(), n, CUDA_R_32F, CUBLAS_COMPUTE_32F_FAST_TF32, 3e-3);
  // BF16 in and out, FP32 accumulation: the output's rounding (2^-9) dominates.
  gemm_case(h, ("gemm bf16 " + sz + "^3").c_str(), n, CUDA_R_16BF, CUBLAS_COMPUTE_32F, 1e-2);
  CKB(cublasDestroy(h));

  std::printf("\n%-30s %12s %-9s %s\n", "measurement", "value", "unit", "check");
  for (const auto& r : g_rows)
    std::printf("%-30s %12.1f %-9s %s\n", r.name.c_str(), r.value, r.unit.c_str(), r.check.c_str());
  for (const auto& r : g_rows) {
    std::string key = r.name;
    std::replace(key.begin(), key.end(), ' ', '_');
    std::printf("RESULT %s %.2f %s %s\n", key.c_str(), r.value, r.unit.c_str(),
                r.check.rfind("ok", 0) == 0 ? "ok" : "FAIL");
  }
  if (g_failures) std::fprintf(stderr, "device_probe: %d check(s) failed\n", g_failures);
  return g_failures ? 1 : 0;
}
