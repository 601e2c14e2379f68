// CUDA kernels of the optimiser ops, mirroring kernels/cpu/optim.h: in-place SGD and
// Adam/AdamW updates over a flat buffer (one call per parameter block), the float64 sum
// of squares behind the global gradient norm, and in-place scaling. float32 buffers;
// the per-step scalars arrive in the CPU's structs (double) and are rounded to float
// once, exactly as the CPU kernels round them. Work is queued on `stream`; n == 0
// launches nothing (except sum_of_squares, which always writes its total).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cpu/optim.h"

namespace caption::kernels::cuda {

using cpu::AdamScalars;
using cpu::SgdScalars;

// The `dynamic` pointers (device float64, or null) carry the scalars that change from
// step to step, read when the kernel runs rather than when it is launched, so that a
// recorded graph (engine/graph.h) updates with the current ones: they replace the
// struct's fields, rounded to float exactly as from the struct.

// param [n], grad [n], momentum_buf [n] or null (momentum 0): see cpu::sgd_step.
// dynamic: {lr}.
void sgd_step(float* param, const float* grad, float* momentum_buf, int64_t n, const SgdScalars& s,
              const double* dynamic, cudaStream_t stream);

// param, grad, exp_avg, exp_avg_sq [n]: see cpu::adam_step. dynamic: {lr,
// bias_correction1, bias_correction2_sqrt}.
void adam_step(float* param, const float* grad, float* exp_avg, float* exp_avg_sq, int64_t n,
               const AdamScalars& s, const double* dynamic, cudaStream_t stream);

// Number of float64 partial sums sum_of_squares needs as scratch for n elements (a
// function of n alone, which is what makes the result reproducible).
int64_t sum_of_squares_partials(int64_t n);
// total[0] (float64, on the device) = sum of x[i]^2 accumulated in double. `partials`
// holds sum_of_squares_partials(n) doubles.
void sum_of_squares(const float* x, int64_t n, double* partials, double* total,
                    cudaStream_t stream);

// x[i] *= (float)factor, or (float)*factor_on_device when that is not null.
void scale(float* x, int64_t n, double factor, const double* factor_on_device, cudaStream_t stream);

// out[0] = sqrt(sum of totals[0..count)), out[1] = min(1, max_norm / (out[0] + 1e-6)):
// clip_grad_norm's norm and factor, on the device (float64 throughout).
void clip_coefficient(const double* totals, int64_t count, double max_norm, double* out,
                      cudaStream_t stream);

}  // namespace caption::kernels::cuda
