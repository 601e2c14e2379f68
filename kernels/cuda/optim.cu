// CUDA optimiser kernels (see optim.h).
//
// Updates (SGD, Adam/AdamW, scale) are one fused pass over the block: each element is
// read and written once. When every pointer involved is 16-byte aligned the body runs on
// float4 (the last n % 4 elements in a scalar tail of the same kernel); otherwise it is
// scalar throughout. The arithmetic is written with the round-to-nearest intrinsics
// (__fmul_rn, __fadd_rn, __fdiv_rn, __fsqrt_rn), which nvcc never contracts into FMAs,
// in the CPU kernel's operation order: with the scalars rounded to float the same way,
// the CUDA update is the CPU update bit for bit (the CPU build compiles ISO C++ without
// contraction).
//
// sum_of_squares is a deterministic two-pass reduction: a grid whose size depends on n
// alone, each thread summing a fixed strided subset in double, each block combining its
// threads by the fixed tree of block_sum_all into one partial; then one block sums the
// partials in double the same way. No atomics: the same n gives the same bits every run
// (not the CPU's sequential rounding, but well within its float64 accuracy).
#include "kernels/cuda/optim.h"

#include "kernels/cuda/common.cuh"

namespace caption::kernels::cuda {

namespace {

constexpr int64_t kMaxPartials = 1024;

bool aligned16(const void* p) { return p == nullptr || reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// ---- SGD ----------------------------------------------------------------------------------

struct SgdF {
  float lr, momentum, wd, keep;
  bool decay, nesterov, first_step;
};

__device__ __forceinline__ void sgd_one(float& param, float grad, float* buf, const SgdF& s) {
  float d = grad;
  if (s.decay) d = __fadd_rn(d, __fmul_rn(s.wd, param));
  if (buf) {
    *buf = s.first_step ? d : __fadd_rn(__fmul_rn(s.momentum, *buf), __fmul_rn(s.keep, d));
    d = s.nesterov ? __fadd_rn(d, __fmul_rn(s.momentum, *buf)) : *buf;
  }
  param = __fsub_rn(param, __fmul_rn(s.lr, d));
}

template <bool VEC>
__global__ void sgd_kernel(float* param, const float* grad, float* buf, int64_t n, SgdF s,
                           const double* dynamic) {
  if (dynamic != nullptr) s.lr = static_cast<float>(dynamic[0]);
  int64_t tail = 0;
  if constexpr (VEC) {
    const int64_t n4 = n / 4;
    auto* p4 = reinterpret_cast<float4*>(param);
    auto* g4 = reinterpret_cast<const float4*>(grad);
    auto* b4 = reinterpret_cast<float4*>(buf);
    for (int64_t i = global_thread(); i < n4; i += grid_threads()) {
      float4 p = p4[i];
      const float4 g = g4[i];
      if (buf) {
        float4 b = b4[i];
        sgd_one(p.x, g.x, &b.x, s);
        sgd_one(p.y, g.y, &b.y, s);
        sgd_one(p.z, g.z, &b.z, s);
        sgd_one(p.w, g.w, &b.w, s);
        b4[i] = b;
      } else {
        sgd_one(p.x, g.x, nullptr, s);
        sgd_one(p.y, g.y, nullptr, s);
        sgd_one(p.z, g.z, nullptr, s);
        sgd_one(p.w, g.w, nullptr, s);
      }
      p4[i] = p;
    }
    tail = n4 * 4;
  }
  for (int64_t i = tail + global_thread(); i < n; i += grid_threads())
    sgd_one(param[i], grad[i], buf ? buf + i : nullptr, s);
}

// ---- Adam / AdamW -------------------------------------------------------------------------

struct AdamF {
  float b1, b2, eps, wd, one_minus_b1, one_minus_b2, decay, step_size, bc2_sqrt;
  bool decoupled, l2;
};

__device__ __forceinline__ void adam_one(float& param, float grad, float& m, float& v,
                                         const AdamF& s) {
  float g = grad;
  if (s.decoupled)
    param = __fmul_rn(param, s.decay);
  else if (s.l2)
    g = __fadd_rn(g, __fmul_rn(s.wd, param));
  m = __fadd_rn(__fmul_rn(m, s.b1), __fmul_rn(s.one_minus_b1, g));
  v = __fadd_rn(__fmul_rn(v, s.b2), __fmul_rn(__fmul_rn(s.one_minus_b2, g), g));
  const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(v), s.bc2_sqrt), s.eps);
  param = __fsub_rn(param, __fmul_rn(s.step_size, __fdiv_rn(m, denom)));
}

// The scalars that depend on the step, from the device: dynamic = {lr, bias_correction1,
// bias_correction2_sqrt}, combined in double and rounded once, as the host does.
__device__ __forceinline__ void adam_dynamic(AdamF& s, const double* dynamic, double wd) {
  const double lr = dynamic[0];
  s.decay = static_cast<float>(1.0 - lr * wd);
  s.step_size = static_cast<float>(lr / dynamic[1]);
  s.bc2_sqrt = static_cast<float>(dynamic[2]);
}

template <bool VEC>
__global__ void adam_kernel(float* param, const float* grad, float* m, float* v, int64_t n,
                            AdamF s, const double* dynamic, double wd) {
  if (dynamic != nullptr) adam_dynamic(s, dynamic, wd);
  int64_t tail = 0;
  if constexpr (VEC) {
    const int64_t n4 = n / 4;
    auto* p4 = reinterpret_cast<float4*>(param);
    auto* g4 = reinterpret_cast<const float4*>(grad);
    auto* m4 = reinterpret_cast<float4*>(m);
    auto* v4 = reinterpret_cast<float4*>(v);
    for (int64_t i = global_thread(); i < n4; i += grid_threads()) {
      float4 p = p4[i], mm = m4[i], vv = v4[i];
      const float4 g = g4[i];
      adam_one(p.x, g.x, mm.x, vv.x, s);
      adam_one(p.y, g.y, mm.y, vv.y, s);
      adam_one(p.z, g.z, mm.z, vv.z, s);
      adam_one(p.w, g.w, mm.w, vv.w, s);
      p4[i] = p;
      m4[i] = mm;
      v4[i] = vv;
    }
    tail = n4 * 4;
  }
  for (int64_t i = tail + global_thread(); i < n; i += grid_threads())
    adam_one(param[i], grad[i], m[i], v[i], s);
}

// ---- scale ----------------------------------------------------------------------------------

template <bool VEC>
__global__ void scale_kernel(float* x, int64_t n, float f, const double* factor) {
  if (factor != nullptr) f = static_cast<float>(*factor);
  int64_t tail = 0;
  if constexpr (VEC) {
    const int64_t n4 = n / 4;
    auto* x4 = reinterpret_cast<float4*>(x);
    for (int64_t i = global_thread(); i < n4; i += grid_threads()) {
      float4 v = x4[i];
      v.x = __fmul_rn(v.x, f);
      v.y = __fmul_rn(v.y, f);
      v.z = __fmul_rn(v.z, f);
      v.w = __fmul_rn(v.w, f);
      x4[i] = v;
    }
    tail = n4 * 4;
  }
  for (int64_t i = tail + global_thread(); i < n; i += grid_threads()) x[i] = __fmul_rn(x[i], f);
}

// ---- sum of squares -------------------------------------------------------------------------

// Pass 1: partials[blockIdx.x] = this block's share (grid-stride over x).
__global__ void sum_squares_partial_kernel(const float* x, int64_t n, double* partials) {
  __shared__ double scratch[32];
  double acc = 0.0;
  for (int64_t i = global_thread(); i < n; i += grid_threads()) {
    const double v = static_cast<double>(x[i]);
    acc += v * v;  // exact product of two floats in double; fused or not, same value
  }
  const double total = block_sum_all(acc, scratch);
  if (threadIdx.x == 0) partials[blockIdx.x] = total;
}

// Pass 2 (one block): total[0] = sum of the partials.
__global__ void sum_squares_total_kernel(const double* partials, int64_t count, double* total) {
  __shared__ double scratch[32];
  double acc = 0.0;
  for (int64_t i = threadIdx.x; i < count; i += blockDim.x) acc += partials[i];
  const double t = block_sum_all(acc, scratch);
  if (threadIdx.x == 0) total[0] = t;
}

// ---- clipping coefficient --------------------------------------------------------------------

// One thread: out = {norm, min(1, max_norm / (norm + 1e-6))} from the runs' sums of
// squares, added in order from 0 as clip_grad_norm adds them on the host.
__global__ void clip_coefficient_kernel(const double* totals, int64_t count, double max_norm,
                                        double* out) {
  if (threadIdx.x != 0 || blockIdx.x != 0) return;
  double sum = 0.0;
  for (int64_t i = 0; i < count; ++i) sum += totals[i];
  const double norm = sqrt(sum);
  const double coef = max_norm / (norm + 1e-6);
  out[0] = norm;
  out[1] = coef < 1.0 ? coef : 1.0;
}

}  // namespace

void clip_coefficient(const double* totals, int64_t count, double max_norm, double* out,
                      cudaStream_t stream) {
  clip_coefficient_kernel<<<1, 32, 0, stream>>>(totals, count, max_norm, out);
  CAPTION_CUDA_LAUNCH_CHECK("clip_coefficient_kernel");
}

void sgd_step(float* param, const float* grad, float* momentum_buf, int64_t n, const SgdScalars& s,
              const double* dynamic, cudaStream_t stream) {
  if (n == 0) return;
  // The CPU's scalars: T(lr), T(momentum), T(weight_decay), T(1 - dampening).
  SgdF f;
  f.lr = static_cast<float>(s.lr);
  f.momentum = static_cast<float>(s.momentum);
  f.wd = static_cast<float>(s.weight_decay);
  f.keep = static_cast<float>(1.0 - s.dampening);
  f.decay = s.weight_decay != 0;
  f.nesterov = s.nesterov == cpu::Nesterov::Yes;
  f.first_step = s.first_step;
  if (aligned16(param) && aligned16(grad) && aligned16(momentum_buf) && n >= 4) {
    sgd_kernel<true><<<grid_for(n / 4), kBlock, 0, stream>>>(param, grad, momentum_buf, n, f, dynamic);
    CAPTION_CUDA_LAUNCH_CHECK("sgd_kernel<float4>");
  } else {
    sgd_kernel<false><<<grid_for(n), kBlock, 0, stream>>>(param, grad, momentum_buf, n, f, dynamic);
    CAPTION_CUDA_LAUNCH_CHECK("sgd_kernel<scalar>");
  }
}

void adam_step(float* param, const float* grad, float* exp_avg, float* exp_avg_sq, int64_t n,
               const AdamScalars& s, const double* dynamic, cudaStream_t stream) {
  if (n == 0) return;
  // The CPU's scalars, rounded from double once each.
  AdamF f;
  f.b1 = static_cast<float>(s.beta1);
  f.b2 = static_cast<float>(s.beta2);
  f.eps = static_cast<float>(s.eps);
  f.wd = static_cast<float>(s.weight_decay);
  f.one_minus_b1 = static_cast<float>(1.0 - s.beta1);
  f.one_minus_b2 = static_cast<float>(1.0 - s.beta2);
  f.decay = static_cast<float>(1.0 - s.lr * s.weight_decay);
  f.step_size = static_cast<float>(s.lr / s.bias_correction1);
  f.bc2_sqrt = static_cast<float>(s.bias_correction2_sqrt);
  f.decoupled = s.mode == cpu::WeightDecayMode::Decoupled;
  f.l2 = !f.decoupled && s.weight_decay != 0;
  if (aligned16(param) && aligned16(grad) && aligned16(exp_avg) && aligned16(exp_avg_sq) &&
      n >= 4) {
    adam_kernel<true>
        <<<grid_for(n / 4), kBlock, 0, stream>>>(param, grad, exp_avg, exp_avg_sq, n, f, dynamic,
                                                 s.weight_decay);
    CAPTION_CUDA_LAUNCH_CHECK("adam_kernel<float4>");
  } else {
    adam_kernel<false><<<grid_for(n), kBlock, 0, stream>>>(param, grad, exp_avg, exp_avg_sq, n, f,
                                                           dynamic, s.weight_decay);
    CAPTION_CUDA_LAUNCH_CHECK("adam_kernel<scalar>");
  }
}

int64_t sum_of_squares_partials(int64_t n) {
  if (n == 0) return 0;
  // About 8 elements per thread before the grid cap.
  const int64_t blocks = (n + kBlock * 8 - 1) / (kBlock * 8);
  return blocks < kMaxPartials ? blocks : kMaxPartials;
}

void sum_of_squares(const float* x, int64_t n, double* partials, double* total,
                    cudaStream_t stream) {
  const int64_t blocks = sum_of_squares_partials(n);
  if (blocks > 0) {
    sum_squares_partial_kernel<<<static_cast<unsigned>(blocks), kBlock, 0, stream>>>(x, n,
                                                                                     partials);
    CAPTION_CUDA_LAUNCH_CHECK("sum_squares_partial_kernel");
  }
  // Always runs, so the total is written (0 for an empty x).
  sum_squares_total_kernel<<<1, kBlock, 0, stream>>>(partials, blocks, total);
  CAPTION_CUDA_LAUNCH_CHECK("sum_squares_total_kernel");
}

void scale(float* x, int64_t n, double factor, const double* factor_on_device, cudaStream_t stream) {
  if (n == 0) return;
  const float f = static_cast<float>(factor);
  if (aligned16(x) && n >= 4) {
    scale_kernel<true><<<grid_for(n / 4), kBlock, 0, stream>>>(x, n, f, factor_on_device);
    CAPTION_CUDA_LAUNCH_CHECK("scale_kernel<float4>");
  } else {
    scale_kernel<false><<<grid_for(n), kBlock, 0, stream>>>(x, n, f, factor_on_device);
    CAPTION_CUDA_LAUNCH_CHECK("scale_kernel<scalar>");
  }
}

}  // namespace caption::kernels::cuda
