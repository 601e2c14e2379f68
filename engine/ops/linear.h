// Matrix products: batched matmul with optional transposes, and linear layers.
#pragma once

#include "engine/tensor.h"
#include "kernels/cpu/blas.h"

namespace caption {

using kernels::cpu::Trans;

struct MatmulOptions {
  Trans a = Trans::No;  // use a's last two axes transposed
  Trans b = Trans::No;
};

// Resolved sizes of a (batched) product, shared by the CPU and CUDA kernels.
// Operand batch counts are either `batch` or 1 (a 2-D operand shared by all batches).
struct MatmulParams {
  Trans ta = Trans::No, tb = Trans::No;
  int64_t batch = 1, M = 0, N = 0, K = 0;
  bool a_batched = false, b_batched = false;
  bool bf16 = false;  // bfloat16 products (engine/autocast.h), forward and backward
};

// a: [..., M, K] (or [..., K, M] with options.a = Yes); b: [..., K, N] (or [..., N, K]).
// Batch axes must be equal, or one operand 2-D. Result [..., M, N].
Tensor matmul(const Tensor& a, const Tensor& b, MatmulOptions options = {});

struct LinearParams {
  int64_t rows = 0, in = 0, out = 0;
  bool bf16 = false;  // bfloat16 products (engine/autocast.h), forward and backward
};

// y = x W^T + b: x [..., in], weight [out, in], bias [out] (may be undefined).
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());

}  // namespace caption
