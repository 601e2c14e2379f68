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
//   scale           in = {},     out = {x}
#pragma once

#include <cstdint>

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
void sgd_step(const Tensor& param, const Tensor& grad, const Tensor& momentum_buf,
              const SgdOptions& options);

// param, grad, exp_avg, exp_avg_sq: same shape; all but grad contiguous (in place).
void adam_step(const Tensor& param, const Tensor& grad, const Tensor& exp_avg,
               const Tensor& exp_avg_sq, const AdamOptions& options);

// sum of x[i]^2 as a float64 scalar [] on x's device (accumulated in double).
Tensor sum_of_squares(const Tensor& x);

// x *= factor, in place (x contiguous).
void scale(const Tensor& x, double factor);

}  // namespace caption
