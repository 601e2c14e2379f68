// CPU kernels of 2-D batch normalisation (PyTorch's BatchNorm2d), NCHW.
//
// Choices:
// - Train mode normalises with the batch statistics (biased variance) and, in the same
//   forward kernel, updates the running statistics in place with the unbiased variance
//   n/(n-1) (n = B*H*W), as PyTorch does. This is the one forward kernel of the engine
//   that writes into inputs; the op layer hands it the caller's own running buffers.
// - The forward kernel also writes the per-channel mean and inverse standard deviation
//   it used (batch statistics in Train mode, running ones in Eval mode); the backward
//   kernel reads those instead of recomputing anything from the running buffers, which
//   may have moved on by then.
// - Per-channel sums accumulate in double for either element type: a channel can hold
//   B*112*112 values, where float sums would drift.
#pragma once

#include <cstdint>

namespace caption::kernels::cpu {

enum class BatchNormMode {
  Train,  // batch statistics; running statistics updated
  Eval,   // running statistics; nothing updated
};

// The params struct of OpId::BatchNorm2d (shared with the CUDA side).
struct BatchNorm2dParams {
  BatchNormMode mode = BatchNormMode::Train;
  double momentum = 0.1;  // running = (1 - momentum) * running + momentum * batch
  double eps = 1e-5;
  int64_t batch = 0, channels = 0, plane = 0;  // x is [batch, channels, plane = H*W]
};

// y [B, C, S] = (x - mean) * invstd * weight + bias. weight/bias [C] may be null (1 and 0).
// Train: mean/var from x; running_mean/running_var [C] (may be null: not tracked) are
// updated. Eval: mean/var are running_mean/running_var (not null).
// save_mean/save_invstd [C] receive the statistics used.
template <typename T>
void batch_norm2d_forward(const BatchNorm2dParams& p, const T* x, const T* weight, const T* bias,
                          T* running_mean, T* running_var, T* y, T* save_mean, T* save_invstd);

// Gradients for grad_y [B, C, S]; grad_x [B, C, S], grad_weight [C], grad_bias [C] may each
// be null (not needed) and are written (=) otherwise. Train mode differentiates through
// the batch statistics; Eval mode is the plain per-channel affine map.
template <typename T>
void batch_norm2d_backward(const BatchNorm2dParams& p, const T* x, const T* weight,
                           const T* save_mean, const T* save_invstd, const T* grad_y, T* grad_x,
                           T* grad_weight, T* grad_bias);

}  // namespace caption::kernels::cpu
