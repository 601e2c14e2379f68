// CUDA kernels of the elementwise ops, mirroring kernels/cpu/elementwise.h: binary ops
// with NumPy broadcasting (same BroadcastLayout), activations, strided copies, and a
// row fill used by linear's bias. float32 only; every function queues its work on
// `stream` and returns at once. Sizes of zero are allowed (nothing is launched).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cpu/elementwise.h"

namespace caption::kernels::cuda {

using cpu::BinaryOp;
using cpu::BroadcastLayout;
using cpu::UnaryOp;

// out = a op b over the layout's output; out may alias a or b when it has the same shape.
void binary_forward(BinaryOp op, const float* a, const float* b, float* out,
                    const BroadcastLayout& layout, cudaStream_t stream);
// Gradients of a and b (either may be null: not needed), each summed over the axes its
// operand is broadcast along, deterministically (no atomics). a and b may be null for
// Add and Sub, which do not read them. Every element of a non-null gradient is written.
void binary_backward(BinaryOp op, const float* a, const float* b, const float* grad_out,
                     float* grad_a, int64_t a_numel, float* grad_b, int64_t b_numel,
                     const BroadcastLayout& layout, cudaStream_t stream);

void unary_forward(UnaryOp op, const float* x, float* y, int64_t n, cudaStream_t stream);
// From the forward output y (relu: y > 0; tanh: 1 - y^2; sigmoid: y(1 - y)).
void unary_backward(UnaryOp op, const float* y, const float* grad_y, float* grad_x, int64_t n,
                    cudaStream_t stream);

// Copies a strided view into another (element size 2, 4 or 8 bytes; strides in elements;
// rank <= kMaxRank).
void strided_copy(void* dst, const int64_t* dst_strides, const void* src,
                  const int64_t* src_strides, const int64_t* shape, int rank, int elem_size,
                  cudaStream_t stream);

// y[r, c] = row[c] for r < rows, c < cols.
void fill_rows(const float* row, float* y, int64_t rows, int64_t cols, cudaStream_t stream);

// Each of n elements of `elem_size` bytes (4 or 8) set to the low elem_size bytes of
// `bits` (a value's bit pattern): a fill with no copy from the host, so it can be
// recorded in a device graph.
void fill_value(void* y, int64_t n, int elem_size, uint64_t bits, cudaStream_t stream);

}  // namespace caption::kernels::cuda
