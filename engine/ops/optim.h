// Optimiser ops: in-place SGD and Adam/AdamW updates, the sum of squares for the global
// gradient norm, and in-place scaling for clipping. None is recorded by autograd (they
// have no backward); they work on contiguous buffers of any shape, so one call can
// update a whole parameter block (nn/parameters.h, nn/optim.h).
//
// Kernel convention (shared by the CPU and CUDA sides): tensors updated in place are
// passed as outputs, read and written; read-only tensors are inputs.
//   sgd_step        in = {grad}, out = {param, momentum_buf (undefined if momentum 0)}
//   adam_step       in = {grad}, out = {param, exp_avg, exp_avg_sq}
//   sum_of_squares  in = {x},    out = {total: a float64 scalar []}
//   scale           in = {} or {factor},  out = {x}
//   clip_coefficient in = {totals [K] float64}, out = {[2] float64: norm, factor}
//
// Scalars on the device: sgd_step and adam_step take an optional float64 tensor of the
// scalars that change from step to step (SGD {lr}; Adam {lr, 1 - beta1^step,
// sqrt(1 - beta2^step)}), and scale_by a float64 factor, read when the kernel runs. A
// recorded graph (engine/graph.h) replays them with whatever the host last wrote there,
// so one recording serves every step; the result is the host-scalar update bit for bit.
// With such a tensor the kernels' in = {grad, dynamic} (updates) or {factor} (scale).
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "engine/tensor.h"
#include "kernels/cpu/optim.h"

namespace caption {

using kernels::cpu::Nesterov;
using kernels::cpu::WeightDecayMode;

// torch.optim.SGD's options; `step` is 1-based (step 1 initialises the momentum buffer
// to the gradient, as PyTorch does when the buffer is None).
struct SgdOptions {
  double lr = 0.01;
  double momentum = 0.0;
  double dampening = 0.0;
  double weight_decay = 0.0;
  Nesterov nesterov = Nesterov::No;
  int64_t step = 1;
};

// torch.optim.Adam (mode L2) and AdamW (mode Decoupled); `step` is 1-based and sets the
// bias corrections.
struct AdamOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  WeightDecayMode mode = WeightDecayMode::L2;
  int64_t step = 1;
};

// Kernel parameter structs: the per-step scalars, resolved on the host.
using SgdStepParams = kernels::cpu::SgdScalars;
using AdamStepParams = kernels::cpu::AdamScalars;
struct ScaleParams {
  double factor = 1.0;
};

// param, grad, momentum_buf: same shape; param and momentum_buf contiguous (updated in
// place). momentum_buf is required when momentum != 0 and ignored otherwise.
// dynamic: undefined, or float64 [1] = {lr} on param's device (options.lr is then ignored;
// options.step still decides whether the buffer is initialised).
void sgd_step(const Tensor& param, const Tensor& grad, const Tensor& momentum_buf,
              const SgdOptions& options, const Tensor& dynamic = Tensor());

// param, grad, exp_avg, exp_avg_sq: same shape; all but grad contiguous (in place).
// dynamic: undefined, or float64 [3] = adam_dynamic_scalars(lr, step) on param's device
// (options.lr and options.step are then ignored).
void adam_step(const Tensor& param, const Tensor& grad, const Tensor& exp_avg,
               const Tensor& exp_avg_sq, const AdamOptions& options, const Tensor& dynamic = Tensor());
// {lr, bias_correction1, bias_correction2_sqrt} for a 1-based step, as adam_step
// computes them from its options.
std::array<double, 3> adam_dynamic_scalars(const AdamOptions& options);

// sum of x[i]^2 as a float64 scalar [] on x's device (accumulated in double).
Tensor sum_of_squares(const Tensor& x);

// x *= factor, in place (x contiguous).
void scale(const Tensor& x, double factor);
// x *= factor[0] (one float64 on x's device, read when the kernel runs), in place.
void scale_by(const Tensor& x, const Tensor& factor);

// clip_grad_norm's arithmetic on the device: from the sums of squares of the clipped
// runs (float64 scalars, added in order from 0), float64 [2] = {norm, min(1, max_norm /
// (norm + 1e-6))}. Scaling by the second is clipping: by exactly 1 below the threshold.
Tensor clip_coefficient(const std::vector<Tensor>& sums_of_squares, double max_norm);

}  // namespace caption
