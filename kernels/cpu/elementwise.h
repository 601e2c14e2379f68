// CPU kernels of the elementwise ops: binary ops with NumPy broadcasting, activations,
// strided copies. Raw pointers and sizes; templated on the element type (float for
// work, double for gradient checks).
#pragma once

#include <cstdint>

namespace caption::kernels::cpu {

inline constexpr int kMaxRank = 8;

enum class BinaryOp { Add, Sub, Mul, Div };
enum class UnaryOp { Relu, Tanh, Sigmoid };

// An output of `rank` axes (sizes `shape`) and, for each operand, its element stride
// along each output axis (0 where the operand is broadcast).
struct BroadcastLayout {
  int rank = 0;
  int64_t shape[kMaxRank] = {};
  int64_t a_stride[kMaxRank] = {};
  int64_t b_stride[kMaxRank] = {};
  int64_t numel() const;
};

template <typename T>
void binary_forward(BinaryOp op, const T* a, const T* b, T* out, const BroadcastLayout& layout);
// Gradients of a and b (either may be null: not needed), summed over broadcast axes.
// grad_a has the elements a addresses (zero-filled first), likewise grad_b.
template <typename T>
void binary_backward(BinaryOp op, const T* a, const T* b, const T* grad_out, T* grad_a,
                     int64_t a_numel, T* grad_b, int64_t b_numel, const BroadcastLayout& layout);

template <typename T>
void unary_forward(UnaryOp op, const T* x, T* y, int64_t n);
// Gradient from the forward output y (relu: y > 0; tanh: 1 - y^2; sigmoid: y(1 - y)).
template <typename T>
void unary_backward(UnaryOp op, const T* y, const T* grad_y, T* grad_x, int64_t n);

// dst[i] += src[i]
template <typename T>
void add_inplace(T* dst, const T* src, int64_t n);
// x[i] *= s
template <typename T>
void scale_inplace(T* x, T s, int64_t n);

// Copies a strided view into another (element size 2, 4 or 8 bytes; strides in elements).
void strided_copy(void* dst, const int64_t* dst_strides, const void* src,
                  const int64_t* src_strides, const int64_t* shape, int rank, int elem_size);

}  // namespace caption::kernels::cpu
