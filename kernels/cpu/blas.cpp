// OpenBLAS wrappers. Zero-sized products still honour beta (C = beta * C), which
// OpenBLAS may skip, so that callers can rely on "every element written". Also the choice
// of OpenBLAS's kernel set when the library is loaded (blas_core(), see blas.h).
#include "kernels/cpu/blas.h"

#include <cblas.h>

#include <cstdlib>
#include <stdexcept>
#include <string>
#include <strings.h>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#endif

#include "kernels/bf16.h"

namespace caption::kernels::cpu {

namespace {
CBLAS_TRANSPOSE to_cblas(Trans t) { return t == Trans::Yes ? CblasTrans : CblasNoTrans; }

template <typename T>
void scale_c(int64_t M, int64_t N, T beta, T* C, int64_t ldc) {
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) C[i * ldc + j] = beta == T(0) ? T(0) : C[i * ldc + j] * beta;
}
thread_local bool t_bf16_products = false;

// A stored rows x cols matrix (leading dimension ld), rounded to bfloat16, dense.
std::vector<float> rounded_copy(const float* A, int64_t rows, int64_t cols, int64_t ld) {
  std::vector<float> out(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) out[r * cols + c] = round_to_bf16(A[r * ld + c]);
  return out;
}
}  // namespace

Bf16Products::Bf16Products(bool on) : previous_(t_bf16_products) { t_bf16_products = on; }
Bf16Products::~Bf16Products() { t_bf16_products = previous_; }
bool bf16_products() { return t_bf16_products; }

namespace {
thread_local const std::vector<Bf16Shadow>* t_bf16_shadows = nullptr;
}  // namespace

Bf16ShadowScope::Bf16ShadowScope(const std::vector<Bf16Shadow>* shadows) : previous_(t_bf16_shadows) {
  t_bf16_shadows = shadows;
}
Bf16ShadowScope::~Bf16ShadowScope() { t_bf16_shadows = previous_; }

const uint16_t* bf16_shadow_of(const float* first, const float* last) {
  if (t_bf16_shadows == nullptr) return nullptr;
  for (const Bf16Shadow& s : *t_bf16_shadows)
    if (first >= s.source && last < s.source + s.numel) return s.copy + (first - s.source);
  return nullptr;
}

template <>
void gemm<float>(Trans ta, Trans tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                 int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  if (K == 0) return scale_c(M, N, beta, C, ldc);
  if (t_bf16_products) {
    // Stored shapes: A is M x K (K x M transposed), B is K x N (N x K transposed).
    const int64_t a_rows = ta == Trans::No ? M : K, a_cols = ta == Trans::No ? K : M;
    const int64_t b_rows = tb == Trans::No ? K : N, b_cols = tb == Trans::No ? N : K;
    const std::vector<float> a16 = rounded_copy(A, a_rows, a_cols, lda);
    const std::vector<float> b16 = rounded_copy(B, b_rows, b_cols, ldb);
    cblas_sgemm(CblasRowMajor, to_cblas(ta), to_cblas(tb), static_cast<int>(M),
                static_cast<int>(N), static_cast<int>(K), alpha, a16.data(),
                static_cast<int>(a_cols), b16.data(), static_cast<int>(b_cols), beta, C,
                static_cast<int>(ldc));
    return;
  }
  cblas_sgemm(CblasRowMajor, to_cblas(ta), to_cblas(tb), static_cast<int>(M), static_cast<int>(N),
              static_cast<int>(K), alpha, A, static_cast<int>(lda), B, static_cast<int>(ldb), beta,
              C, static_cast<int>(ldc));
}

template <>
void gemm<double>(Trans ta, Trans tb, int64_t M, int64_t N, int64_t K, double alpha,
                  const double* A, int64_t lda, const double* B, int64_t ldb, double beta,
                  double* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  if (K == 0) return scale_c(M, N, beta, C, ldc);
  cblas_dgemm(CblasRowMajor, to_cblas(ta), to_cblas(tb), static_cast<int>(M), static_cast<int>(N),
              static_cast<int>(K), alpha, A, static_cast<int>(lda), B, static_cast<int>(ldb), beta,
              C, static_cast<int>(ldc));
}

void set_blas_threads(int threads) { openblas_set_num_threads(threads); }
int blas_threads() { return openblas_get_num_threads(); }

}  // namespace caption::kernels::cpu

// OpenBLAS's thread pool (driver/others/blas_server.c): shutdown joins the workers; the next
// threaded product starts new ones, from the thread that calls it. Weak, as below.
extern "C" {
int blas_thread_shutdown_(void) __attribute__((weak));
}

namespace caption::kernels::cpu {

namespace {
#if defined(__x86_64__) || defined(__i386__)
constexpr unsigned kFlushToZero = 0x8000, kDenormalsAreZero = 0x0040;  // MXCSR bits
#endif
}  // namespace

void set_flush_denormals(bool on) {
#if defined(__x86_64__) || defined(__i386__)
  if (on == flush_denormals()) return;
  const unsigned bits = kFlushToZero | kDenormalsAreZero;
  _mm_setcsr(on ? (_mm_getcsr() | bits) : (_mm_getcsr() & ~bits));
  if (blas_thread_shutdown_ != nullptr) blas_thread_shutdown_();
#else
  (void)on;
#endif
}

bool flush_denormals() {
#if defined(__x86_64__) || defined(__i386__)
  const unsigned bits = kFlushToZero | kDenormalsAreZero;
  return (_mm_getcsr() & bits) == bits;
#else
  return false;
#endif
}

bool default_flush_denormals() {
  const char* v = std::getenv("CAPTION_FLUSH_DENORMALS");
  if (v == nullptr || std::string(v) == "1") return true;
  if (std::string(v) == "0") return false;
  throw std::invalid_argument(std::string("CAPTION_FLUSH_DENORMALS='") + v +
                              "' is not 0 (keep denormal numbers) or 1 (flush them to zero)");
}

}  // namespace caption::kernels::cpu

// A DYNAMIC_ARCH OpenBLAS exports these (driver/others/dynamic.c): quit forgets the kernel
// set, init chooses one again, reading OPENBLAS_CORETYPE first. Weak, so that a BLAS built
// for one processor (without them) still links; blas_core() then keeps what it has.
extern "C" {
void gotoblas_dynamic_init(void) __attribute__((weak));
void gotoblas_dynamic_quit(void) __attribute__((weak));
}

namespace caption::kernels::cpu {

namespace {
// 3: AVX-512 kernels, 2: AVX2 + FMA, 1: AVX, 0: SSE-only or unknown (OpenBLAS's names).
int core_level(const std::string& name) {
  const auto is = [&](const char* n) { return strcasecmp(name.c_str(), n) == 0; };
  if (is("SkylakeX") || is("Cooperlake") || is("SapphireRapids")) return 3;
  if (is("Haswell") || is("Zen")) return 2;
  if (is("Sandybridge") || is("Bulldozer") || is("Piledriver") || is("Steamroller") || is("Excavator"))
    return 1;
  return 0;
}

std::string current_core_name() {
  const char* name = openblas_get_corename();
  return name == nullptr ? std::string() : std::string(name);
}

BlasCore choose_blas_core() {
  BlasCore core;
  core.detected = current_core_name();
  core.running = core.detected;
  const char* forced = std::getenv("OPENBLAS_CORETYPE");
  const std::string better = better_blas_core(core.detected, forced, cpu_vector_units());
  if (better.empty()) {
    if (forced != nullptr && *forced != '\0') core.note = std::string("OPENBLAS_CORETYPE=") + forced;
    return core;
  }
  if (gotoblas_dynamic_init == nullptr || gotoblas_dynamic_quit == nullptr) {
    core.note = "OpenBLAS chose " + core.detected + " for this processor and cannot choose again (not a "
                "DYNAMIC_ARCH build); set OPENBLAS_CORETYPE=" + better;
    return core;
  }
  // No product has run yet (this runs when libcaption is loaded) and OpenBLAS's threads
  // are idle, so its kernel table can be swapped. The variable is set only for the
  // re-initialisation, so child processes choose for themselves.
  setenv("OPENBLAS_CORETYPE", better.c_str(), 1);
  gotoblas_dynamic_quit();
  gotoblas_dynamic_init();
  unsetenv("OPENBLAS_CORETYPE");
  core.running = current_core_name();
  if (strcasecmp(core.running.c_str(), better.c_str()) != 0) {
    core.note = "OpenBLAS chose " + core.detected + " for this processor and refused " + better;
    return core;
  }
  core.note = "OpenBLAS chose " + core.detected + " for this processor";
  return core;
}

// Chosen when libcaption is loaded, before any product (blas.h says why).
[[maybe_unused]] const BlasCore& g_core_at_load = blas_core();
}  // namespace

std::string better_blas_core(const std::string& detected, const char* forced, CpuVectorUnits cpu) {
  if (forced != nullptr && *forced != '\0') return {};
  if (core_level(detected) >= 2) return {};
  if (cpu.avx512) return "SkylakeX";
  if (cpu.avx2_fma) return "Haswell";
  return {};
}

CpuVectorUnits cpu_vector_units() {
  CpuVectorUnits u;
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  u.avx2_fma = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  u.avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd") &&
             __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
             __builtin_cpu_supports("avx512vl");
#endif
  return u;
}

const BlasCore& blas_core() {
  static const BlasCore core = choose_blas_core();
  return core;
}

std::string blas_core_now() { return current_core_name(); }

std::string blas_core_summary() {
  const BlasCore& c = blas_core();
  std::string s = "BLAS core " + (c.running.empty() ? std::string("unknown") : c.running);
  if (!c.note.empty()) s += " (" + c.note + ")";
  return s;
}

}  // namespace caption::kernels::cpu
