// Matrix products on the CPU through OpenBLAS (row-major), for float and double.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace caption::kernels::cpu {

enum class Trans { No, Yes };

// C[M, N] = alpha * op(A)[M, K] * op(B)[K, N] + beta * C, row-major with leading
// dimensions lda, ldb, ldc.
template <typename T>
void gemm(Trans ta, Trans tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
          const T* B, int64_t ldb, T beta, T* C, int64_t ldc);

// bfloat16 products (the engine's autocast): while a Bf16Products scope is open on a
// thread, every float32 gemm on that thread, here and in kernels/cuda/blas.h, rounds its
// A and B operands to bfloat16 (kernels/bf16.h) and multiplies them with float32
// accumulation; C stays float32. Products of bfloat16 values are exact in float32, so
// the CPU path (rounded copies, then sgemm) is the reference of the GPU's tensor-core
// path (bfloat16 operands, float32 compute) up to the order of the sums. Op adapters
// open a scope around their kernel calls when their params ask for it; double products
// are never affected.
class Bf16Products {
 public:
  explicit Bf16Products(bool on);
  ~Bf16Products();
  Bf16Products(const Bf16Products&) = delete;
  Bf16Products& operator=(const Bf16Products&) = delete;

 private:
  bool previous_;
};
bool bf16_products();  // whether a scope is open on this thread (the innermost says)

// bfloat16 copies made ahead of float32 device operands that stay constant for a while
// (a decoder's weights while it decodes: nn/step_graph.h). While a Bf16ShadowScope is
// open on a thread, an autocast product of kernels/cuda/blas.h on that thread whose A or
// B lies wholly inside one shadow's float32 range reads the copy at the same offset,
// leading dimension and stride instead of converting the operand into scratch memory:
// the same bfloat16 values (the copies come from the same rounding), without the
// conversion's read and write. Whoever opens the scope keeps the copies equal to their
// sources while it is open. The CPU's products ignore shadows.
struct Bf16Shadow {
  const float* source = nullptr;  // numel float32 values
  int64_t numel = 0;
  const uint16_t* copy = nullptr;  // their bfloat16 values, same layout
};
class Bf16ShadowScope {
 public:
  explicit Bf16ShadowScope(const std::vector<Bf16Shadow>* shadows);  // nullptr: none
  ~Bf16ShadowScope();
  Bf16ShadowScope(const Bf16ShadowScope&) = delete;
  Bf16ShadowScope& operator=(const Bf16ShadowScope&) = delete;

 private:
  const std::vector<Bf16Shadow>* previous_;
};
// The copy of [first, last] (float32 addresses) if one shadow holds all of it, else null.
const uint16_t* bf16_shadow_of(const float* first, const float* last);

// Sets the number of threads OpenBLAS uses (0 = its default).
void set_blas_threads(int threads);
int blas_threads();

// Which of OpenBLAS's kernel sets the products run. A DYNAMIC_ARCH OpenBLAS (Debian's)
// chooses its kernels when it is loaded, from the processor's family and model; a
// processor newer than the library (0.3.21 does not know Intel's Emerald Rapids) gets the
// generic SSE3 kernels ("Prescott"), about 9x slower than its AVX-512 ones (measured:
// sgemm 1024^3 on one core, 11 against 99 GFLOP/s). So, when libcaption is loaded: if
// OPENBLAS_CORETYPE is not set and OpenBLAS chose a kernel set below AVX2, and the processor
// (with the operating system's support) has AVX-512 F/CD/BW/DQ/VL or AVX2 + FMA, OpenBLAS is
// re-initialised with "SkylakeX" or "Haswell" kernels, the ones a newer OpenBLAS chooses for
// such processors. A choice OpenBLAS made at the AVX2 level or above is kept (it may be
// deliberate), and so is any OPENBLAS_CORETYPE (set it to choose by hand, "Prescott" too).
struct BlasCore {
  std::string detected;  // what OpenBLAS chose when it was loaded ("" unknown)
  std::string running;   // what it runs now
  std::string note;      // why they differ, or why a switch was not made; "" when none applies
};
const BlasCore& blas_core();
// What OpenBLAS reports running at this moment (openblas_get_corename).
std::string blas_core_now();
// "BLAS core SkylakeX (OpenBLAS chose Prescott for this processor)", for start-up logs.
std::string blas_core_summary();

// The decision of blas_core(), on its inputs: the kernel set to switch to, or "" to keep
// `detected`. `forced` is OPENBLAS_CORETYPE (nullptr when unset).
struct CpuVectorUnits {
  bool avx2_fma = false;
  bool avx512 = false;  // F, CD, BW, DQ and VL, with the OS saving the registers
};
std::string better_blas_core(const std::string& detected, const char* forced, CpuVectorUnits cpu);
// This processor's units (__builtin_cpu_supports, which checks the OS's support too).
CpuVectorUnits cpu_vector_units();

// Denormal numbers (float32 below 1.2e-38) make the processor's vector units take a slow
// microcode path, up to 50x slower per product (measured: 42 decoder-sized products, 70 ms
// against 3.9 s when half of one operand is denormal). Gradients flowing back through many
// steps of sigmoids and softmaxes underflow into that range, so a CPU training step can
// spend most of its time there. set_flush_denormals(true) sets the calling thread's
// MXCSR to flush denormal results to zero and read denormal operands as zero (FTZ and
// DAZ; what torch.set_flush_denormal(True) does), and restarts OpenBLAS's worker threads
// so that they inherit it: a thread starts with its creator's control register, and
// OpenBLAS's workers were made when the library loaded. Threads the caller starts
// afterwards inherit it too. The values it changes are below 1.2e-38 (2.2e-308 in
// double). Call it before other threads run products (the restart must not meet a product
// in flight): the programs call it first thing with default_flush_denormals(). No effect
// (and false) off x86.
void set_flush_denormals(bool on);
bool flush_denormals();  // the calling thread's setting
// CAPTION_FLUSH_DENORMALS: unset or 1: true; 0: false; another value is refused, naming
// the variable.
bool default_flush_denormals();

}  // namespace caption::kernels::cpu
