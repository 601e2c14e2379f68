// The CUDA kernels of the foundation ops are in the op table wherever the CUDA backend
// is compiled (no GPU needed: registration happens when the library loads). Without
// the backend the test reports itself skipped, with the reason.
#include <gtest/gtest.h>

#include "engine/op_table.h"

namespace caption {
namespace {

// Every op with CUDA kernels in engine/cuda/{elementwise,reduce,linear,softmax,
// indexing,lstm,attention,conv,norm,pool,nhwc}_cuda.cpp that have a backward: all of them.
constexpr OpId kCudaOps[] = {
    OpId::Add,  OpId::Sub,  OpId::Mul,     OpId::Div,    OpId::Relu,       OpId::Tanh,
    OpId::Sigmoid, OpId::Copy, OpId::Sum,  OpId::Mean,   OpId::Matmul,     OpId::Linear,
    OpId::Softmax, OpId::LogSoftmax, OpId::CrossEntropy,
    OpId::Embedding, OpId::Dropout, OpId::Concat, OpId::Slice, OpId::IndexSelect, OpId::Gather,
    OpId::LstmCell, OpId::LstmGates, OpId::AdditiveAttention, OpId::AttentionStep,
    OpId::Conv2d, OpId::BatchNorm2d, OpId::MaxPool2d, OpId::AdaptiveAvgPool2d,
    OpId::ConvNhwc, OpId::BatchNormNhwc, OpId::MaxPoolNhwc,
};

// Ops without a backward (the optimisers, engine/cuda/optim_cuda.cpp; decoding's arg-max
// and beam choice; the NHWC packing and folding, whose gradients, where they have any,
// are compositions of ops): a CUDA forward only.
constexpr OpId kCudaForwardOnlyOps[] = {
    OpId::SgdStep,  OpId::AdamStep,      OpId::SumOfSquares, OpId::Scale,
    OpId::ClipCoefficient, OpId::MaxLast, OpId::TopExtensions, OpId::NhwcPack,
    OpId::NhwcUnpack, OpId::FoldPackNhwc,
};

TEST(CudaBuild, FoundationOpsHaveCudaForwardAndBackward) {
  if (!cuda_compiled()) GTEST_SKIP() << "built without the CUDA backend (nvcc not found or CAPTION_CUDA=OFF)";
  for (OpId op : kCudaOps) {
    const OpKernels& k = op_info(op).kernels[static_cast<int>(DeviceType::CUDA)];
    EXPECT_NE(k.forward, nullptr) << "CUDA forward of " << op_name(op) << " is not registered";
    EXPECT_NE(k.backward, nullptr) << "CUDA backward of " << op_name(op) << " is not registered";
    // The CUDA side must not reuse a CPU entry by mistake.
    const OpKernels& cpu = op_info(op).kernels[static_cast<int>(DeviceType::CPU)];
    EXPECT_NE(k.forward, cpu.forward) << op_name(op);
  }
}

TEST(CudaBuild, OptimiserOpsHaveCudaForward) {
  if (!cuda_compiled()) GTEST_SKIP() << "built without the CUDA backend (nvcc not found or CAPTION_CUDA=OFF)";
  for (OpId op : kCudaForwardOnlyOps) {
    EXPECT_FALSE(op_info(op).has_backward) << op_name(op);
    const OpKernels& k = op_info(op).kernels[static_cast<int>(DeviceType::CUDA)];
    EXPECT_NE(k.forward, nullptr) << "CUDA forward of " << op_name(op) << " is not registered";
    const OpKernels& cpu = op_info(op).kernels[static_cast<int>(DeviceType::CPU)];
    EXPECT_NE(k.forward, cpu.forward) << op_name(op);
  }
}

TEST(CudaBuild, MissingListExcludesTheFoundationOps) {
  if (!cuda_compiled()) GTEST_SKIP() << "built without the CUDA backend (nvcc not found or CAPTION_CUDA=OFF)";
  const std::vector<std::string> missing = missing_kernels(DeviceType::CUDA);
  for (OpId op : kCudaOps)
    for (const std::string& m : missing)
      EXPECT_NE(m.rfind(std::string(op_name(op)) + " ", 0), 0u) << "listed missing: " << m;
  for (OpId op : kCudaForwardOnlyOps)
    for (const std::string& m : missing)
      EXPECT_NE(m.rfind(std::string(op_name(op)) + " ", 0), 0u) << "listed missing: " << m;
}

}  // namespace
}  // namespace caption
