// The CUDA backend's one precision switch for float32 products (cuBLAS gemms and cuDNN
// convolutions alike): full float32 by default; CAPTION_TF32=1 lets both libraries use
// TF32 tensor cores (10-bit mantissa inputs, float32 accumulation). Read once, logged
// once, at the first product or convolution, so a run's log says which it used.
//
// bfloat16 products (autocast): an op adapter whose params ask for them opens a
// Bf16ProductScope around its kernel calls; the gemms inside convert their operands to
// bfloat16 in scratch blocks from the device's caching allocator (kept until the scope
// closes) and run on tensor cores with float32 accumulation.
#pragma once

#include <vector>

#include "engine/device.h"
#include "engine/tensor.h"
#include "kernels/cpu/blas.h"
#include "kernels/cuda/blas.h"

namespace caption::cuda {

bool tf32_enabled();

class Bf16ProductScope final : public kernels::cuda::Bf16Scratch {
 public:
  Bf16ProductScope(bool on, Device device);
  ~Bf16ProductScope() override;
  Bf16ProductScope(const Bf16ProductScope&) = delete;
  Bf16ProductScope& operator=(const Bf16ProductScope&) = delete;
  void* get(size_t bytes) override;

 private:
  kernels::cpu::Bf16Products products_;
  Device device_;
  kernels::cuda::Bf16Scratch* previous_;
  std::vector<Tensor> blocks_;
};

}  // namespace caption::cuda
