// The op table's storage and lookups. Names are written out here once; kernels arrive
// through register_kernels() from each family's source file.
#include "engine/op_table.h"

#include <array>

#include "engine/error.h"
#include "engine/profile.h"

namespace caption {

namespace {
std::array<OpInfo, kOpCount>& table() {
  static std::array<OpInfo, kOpCount> t = [] {
    std::array<OpInfo, kOpCount> init{};
    auto set = [&](OpId op, std::string_view name, bool has_backward) {
      init[static_cast<int>(op)].name = name;
      init[static_cast<int>(op)].has_backward = has_backward;
    };
    set(OpId::Matmul, "matmul", true);
    set(OpId::Linear, "linear", true);
    set(OpId::Add, "add", true);
    set(OpId::Sub, "sub", true);
    set(OpId::Mul, "mul", true);
    set(OpId::Div, "div", true);
    set(OpId::Sum, "sum", true);
    set(OpId::Mean, "mean", true);
    set(OpId::Relu, "relu", true);
    set(OpId::Tanh, "tanh", true);
    set(OpId::Sigmoid, "sigmoid", true);
    set(OpId::Copy, "copy", true);
    set(OpId::MaxLast, "max_last", false);
    set(OpId::TopExtensions, "top_extensions", false);
    set(OpId::Softmax, "softmax", true);
    set(OpId::LogSoftmax, "log_softmax", true);
    set(OpId::CrossEntropy, "cross_entropy", true);
    set(OpId::Conv2d, "conv2d", true);
    set(OpId::BatchNorm2d, "batch_norm2d", true);
    set(OpId::MaxPool2d, "max_pool2d", true);
    set(OpId::AdaptiveAvgPool2d, "adaptive_avg_pool2d", true);
    set(OpId::Embedding, "embedding", true);
    set(OpId::Dropout, "dropout", true);
    set(OpId::Concat, "concat", true);
    set(OpId::Slice, "slice", true);
    set(OpId::IndexSelect, "index_select", true);
    set(OpId::Gather, "gather", true);
    set(OpId::LstmCell, "lstm_cell", true);
    set(OpId::LstmGates, "lstm_gates", true);
    set(OpId::AdditiveAttention, "additive_attention", true);
    set(OpId::AttentionStep, "attention_step", true);
    set(OpId::SgdStep, "sgd_step", false);
    set(OpId::AdamStep, "adam_step", false);
    set(OpId::SumOfSquares, "sum_of_squares", false);
    set(OpId::Scale, "scale", false);
    set(OpId::ClipCoefficient, "clip_coefficient", false);
    set(OpId::NhwcPack, "nhwc_pack", false);
    set(OpId::NhwcUnpack, "nhwc_unpack", false);
    set(OpId::FoldPackNhwc, "fold_pack_nhwc", false);
    set(OpId::ConvNhwc, "conv_nhwc", true);
    set(OpId::MaxPoolNhwc, "max_pool_nhwc", true);
    set(OpId::BatchNormNhwc, "batch_norm_nhwc", true);
    return init;
  }();
  return t;
}

const char* device_word(DeviceType d) { return d == DeviceType::CPU ? "CPU" : "CUDA"; }
}  // namespace

const OpInfo& op_info(OpId op) {
  CAPTION_ASSERT(static_cast<int>(op) >= 0 && static_cast<int>(op) < kOpCount, "bad OpId");
  return table()[static_cast<int>(op)];
}

std::string_view op_name(OpId op) { return op_info(op).name; }

bool register_kernels(OpId op, DeviceType device, OpFn forward, OpFn backward) {
  OpKernels& k = table()[static_cast<int>(op)].kernels[static_cast<int>(device)];
  CAPTION_ASSERT(k.forward == nullptr && k.backward == nullptr, "kernels of ", op_name(op),
                 " registered twice for ", device_word(device));
  k.forward = forward;
  k.backward = backward;
  return true;
}

OpFn forward_kernel(OpId op, Device device) {
  const OpFn fn = op_info(op).kernels[static_cast<int>(device.type)].forward;
  CAPTION_CHECK(fn != nullptr, "op '", op_name(op), "' has no ", device_word(device.type),
                " forward kernel yet");
  return fn;
}

OpFn backward_kernel(OpId op, Device device) {
  const OpFn fn = op_info(op).kernels[static_cast<int>(device.type)].backward;
  CAPTION_CHECK(fn != nullptr, "op '", op_name(op), "' has no ", device_word(device.type),
                " backward kernel yet");
  return fn;
}

std::vector<std::string> missing_kernels(DeviceType device) {
  std::vector<std::string> missing;
  for (int i = 0; i < kOpCount; ++i) {
    const OpInfo& info = table()[i];
    const OpKernels& k = info.kernels[static_cast<int>(device)];
    if (k.forward == nullptr) missing.push_back(str(info.name, " forward"));
    if (info.has_backward && k.backward == nullptr) missing.push_back(str(info.name, " backward"));
  }
  return missing;
}

void run_forward(OpId op, Device device, const OpCall& call) {
  const OpFn fn = forward_kernel(op, device);
  if (!OpProfile::enabled()) return fn(call);
  const OpProfile::Scope timed(op, false, device);
  fn(call);
}
void run_backward_kernel(OpId op, Device device, const OpCall& call) {
  const OpFn fn = backward_kernel(op, device);
  if (!OpProfile::enabled()) return fn(call);
  const OpProfile::Scope timed(op, true, device);
  fn(call);
}

}  // namespace caption
