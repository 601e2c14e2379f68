// The CUDA backend's one precision switch for float32 products (cuBLAS gemms and cuDNN
// convolutions alike): full float32 by default; CAPTION_TF32=1 lets both libraries use
// TF32 tensor cores (10-bit mantissa inputs, float32 accumulation). Read once, logged
// once, at the first product or convolution, so a run's log says which it used.
#pragma once

namespace caption::cuda {

bool tf32_enabled();

}  // namespace caption::cuda
