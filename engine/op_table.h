// The op table: every compute op of the engine, with its forward and backward kernels
// on each device. There is exactly one table; tensor-level ops (engine/ops/) dispatch
// through it, the op harness (tests/harness/) runs every entry, and a test fails when
// an op lacks a CPU forward or backward (tests/engine/op_table_test.cpp). The list of
// missing CUDA kernels is printed by that test.
//
// Kernels share one calling convention, OpCall: contiguous input tensors, outputs
// allocated by the caller, and a pointer to the op's parameter struct (declared in the
// op family's header, shared by the CPU and CUDA sides). A backward call receives
//   in  = the tensors the forward saved, then the gradient of each forward output
//         (zeros where no gradient arrived),
//   out = one gradient per forward input, in input order; an undefined entry means
//         that input needs no gradient and the kernel must skip it.
// Each kernel writes (=) every element of every defined output.
//
// Implementations register themselves from their family's source file (a static
// initialiser in the shared library), so adding an op family touches no central file
// besides the OpId list below.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/device.h"
#include "engine/tensor.h"

namespace caption {

enum class OpId : int {
  // products
  Matmul, Linear,
  // elementwise and reductions
  Add, Sub, Mul, Div, Sum, Mean, MaxLast, TopExtensions, Relu, Tanh, Sigmoid, Copy,
  // normalised exponentials and losses
  Softmax, LogSoftmax, CrossEntropy,
  // images
  Conv2d, BatchNorm2d, MaxPool2d, AdaptiveAvgPool2d,
  // indexing and shaping
  Embedding, Dropout, Concat, Slice, IndexSelect, Gather,
  // the captioning model's fused ops
  LstmCell, LstmGates, AdditiveAttention, AttentionStep,
  // optimisers (no backward)
  SgdStep, AdamStep, SumOfSquares, Scale, ClipCoefficient,
  // NHWC bfloat16: layout packing, weight folding (no backward), convolution, max pooling,
  // training-mode batch norm with residual and ReLU
  NhwcPack, NhwcUnpack, FoldPackNhwc, ConvNhwc, MaxPoolNhwc, BatchNormNhwc,
  Count
};
inline constexpr int kOpCount = static_cast<int>(OpId::Count);

struct OpCall {
  std::span<const Tensor> in;
  std::span<Tensor> out;
  const void* params = nullptr;

  template <typename P>
  const P& get() const { return *static_cast<const P*>(params); }
};
using OpFn = void (*)(const OpCall&);

struct OpKernels {
  OpFn forward = nullptr;
  OpFn backward = nullptr;
};

struct OpInfo {
  std::string_view name;
  bool has_backward = true;
  OpKernels kernels[kDeviceTypeCount];
};

const OpInfo& op_info(OpId op);
std::string_view op_name(OpId op);

// Called from static initialisers; a second registration of the same slot is a bug.
bool register_kernels(OpId op, DeviceType device, OpFn forward, OpFn backward);

// The kernels for a device; throws naming the op and device when one is missing.
OpFn forward_kernel(OpId op, Device device);
OpFn backward_kernel(OpId op, Device device);

// "conv2d forward", "conv2d backward", ... for each kernel missing on a device.
std::vector<std::string> missing_kernels(DeviceType device);

// Convenience: look up and run a forward/backward kernel.
void run_forward(OpId op, Device device, const OpCall& call);
void run_backward_kernel(OpId op, Device device, const OpCall& call);

}  // namespace caption
