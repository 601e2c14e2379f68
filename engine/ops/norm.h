// 2-D batch normalisation (PyTorch's BatchNorm2d / F.batch_norm on NCHW input).
// Train mode normalises with the batch statistics and updates the running statistics in
// place (not recorded by autograd, unbiased variance, as PyTorch does); Eval mode uses the
// running statistics and leaves them alone. Both modes are differentiable in x, weight
// and bias; the running statistics never receive gradients. Kernels: kernels/cpu/norm.h.
#pragma once

#include "engine/tensor.h"
#include "kernels/cpu/norm.h"

namespace caption {

struct BatchNormOptions {
  using Mode = kernels::cpu::BatchNormMode;
  Mode mode = Mode::Train;
  double momentum = 0.1;  // running = (1 - momentum) * running + momentum * batch statistic
  double eps = 1e-5;
};

// The params struct of OpId::BatchNorm2d.
using BatchNorm2dParams = kernels::cpu::BatchNorm2dParams;

// x [B, C, H, W]; weight [C], bias [C] (either may be undefined: 1 and 0);
// running_mean [C], running_var [C]: required in Eval mode; in Train mode they may be
// undefined (statistics not tracked) and otherwise must be contiguous, since they are
// updated in place. Train mode needs more than one value per channel (B*H*W > 1).
// Returns y [B, C, H, W].
Tensor batch_norm2d(const Tensor& x, const Tensor& weight, const Tensor& bias,
                    const Tensor& running_mean, const Tensor& running_var,
                    BatchNormOptions options = {});

}  // namespace caption
