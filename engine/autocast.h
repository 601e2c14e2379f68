// Autocast: products in bfloat16 with everything else in float32 (the original
// project's --use_amp, as torch.autocast(dtype=torch.bfloat16) does for matmul, linear
// and the LSTM cell). While an AutocastGuard is alive on a thread, the float32 products
// that thread records (matmul, linear, the LSTM cell's gate products, forward and
// backward alike: the choice is kept in the op's params) round their operands to
// bfloat16 and accumulate in float32. Parameters, activations, gradients, softmax, the
// loss, attention sums, the cell state and optimiser state stay float32: there is no
// loss scaling to do, since bfloat16 keeps float32's exponent range.
//
// The CPU runs the same arithmetic (rounded operands, float32 sgemm) as the reference of
// the GPU's tensor-core products. Convolutions are not affected yet (cuDNN bfloat16
// wants NHWC; see bench/NOTES.md).
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
