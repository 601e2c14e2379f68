// Autocast: products and convolutions in bfloat16 with everything else in float32 (the
// original project's --use_amp, as torch.autocast(dtype=torch.bfloat16) does for matmul,
// linear, conv2d and the LSTM cell). While an AutocastGuard is alive on a thread, the
// float32 products that thread records (matmul, linear, the LSTM cell's gate products,
// conv2d; forward and backward alike: the choice is kept in the op's params) round their
// operands to bfloat16 and accumulate in float32; a convolution's results (y before its
// bias, grad_x, grad_w) are rounded to bfloat16 too, as cuDNN stores them. Parameters,
// activations, gradients, softmax, the loss, attention sums, the cell state and
// optimiser state stay float32: there is no loss scaling to do, since bfloat16 keeps
// float32's exponent range.
//
// The CPU runs the same arithmetic (rounded operands, float32 sgemm, rounded results) as
// the reference of the GPU's tensor-core products and cuDNN bfloat16 convolutions.
#pragma once

namespace caption {

class AutocastGuard {
 public:
  explicit AutocastGuard(bool enabled = true);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  bool previous_;
};

bool autocast_enabled();  // on this thread

}  // namespace caption
