// Elementwise ops: binary arithmetic with NumPy broadcasting, activations, and the
// in-place helpers used by autograd and optimisers (not recorded).
#pragma once

#include "engine/tensor.h"
#include "kernels/cpu/elementwise.h"

namespace caption {

struct BinaryParams {
  kernels::cpu::BinaryOp op;
  Shape a_shape;  // shapes of the operands (the output shape is their broadcast)
  Shape b_shape;
};
struct UnaryParams {
  kernels::cpu::UnaryOp op;
};

Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, double s);  // by a constant
Tensor add(const Tensor& a, double s);
Tensor relu(const Tensor& x);
Tensor tanh(const Tensor& x);
Tensor sigmoid(const Tensor& x);

// The broadcast shape of two shapes (NumPy rules); the message names `what`.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* what);

// Not recorded by autograd:
void add_into(Tensor& dst, const Tensor& src);  // dst += src (same shape, contiguous dst)
void scale_(Tensor& x, double s);               // x *= s (contiguous)
void strided_copy(Tensor& dst, const Tensor& src);  // same shape, same device, any layouts

}  // namespace caption
