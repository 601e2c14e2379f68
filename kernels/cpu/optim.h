// CPU kernels of the optimiser ops: in-place SGD and Adam/AdamW updates of flat buffers
// (one call updates a whole contiguous parameter block), the sum of squares that the
// global gradient norm needs, and in-place scaling for clipping.
//
// The update rules are PyTorch's (torch.optim.SGD, Adam and AdamW as of 1.13,
// single-tensor path); the host computes the step's scalars (bias corrections) in
// double and passes them in, so the CPU and CUDA kernels see the same numbers.
#pragma once

#include <cstdint>

namespace caption::kernels::cpu {

enum class Nesterov { No, Yes };
enum class WeightDecayMode { L2, Decoupled };  // Adam's L2 in the gradient; AdamW's decay

struct SgdScalars {
  double lr = 0, momentum = 0, dampening = 0, weight_decay = 0;
  Nesterov nesterov = Nesterov::No;
  bool first_step = false;  // the momentum buffer is initialised to the gradient
};

// param [n], grad [n], momentum_buf [n] (null when momentum is 0). Per element:
//   d = grad + wd * param
//   buf = first_step ? d : momentum * buf + (1 - dampening) * d
//   d = nesterov ? d + momentum * buf : buf
//   param -= lr * d
template <typename T>
void sgd_step(T* param, const T* grad, T* momentum_buf, int64_t n, const SgdScalars& s);

struct AdamScalars {
  double lr = 0, beta1 = 0, beta2 = 0, eps = 0, weight_decay = 0;
  WeightDecayMode mode = WeightDecayMode::L2;
  double bias_correction1 = 1;       // 1 - beta1^step
  double bias_correction2_sqrt = 1;  // sqrt(1 - beta2^step)
};

// param [n], grad [n], exp_avg [n], exp_avg_sq [n]. Per element:
//   Decoupled: param *= 1 - lr * wd       L2: g = grad + wd * param
//   m = beta1 * m + (1 - beta1) * g;  v = beta2 * v + (1 - beta2) * g^2
//   param -= lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps)
template <typename T>
void adam_step(T* param, const T* grad, T* exp_avg, T* exp_avg_sq, int64_t n, const AdamScalars& s);

// sum_i x[i]^2, accumulated in double in index order (reproducible).
template <typename T>
double sum_of_squares(const T* x, int64_t n);

// x[i] *= s
template <typename T>
void scale(T* x, int64_t n, double s);

}  // namespace caption::kernels::cpu
