// CUDA adapters and table registration of the NHWC bfloat16 packing, weight folding, max
// pooling and training-mode batch norm (engine/ops/nhwc.h). The convolution's adapter lives with the other cuDNN convolutions
// in conv_cuda.cpp, whose plans it shares.
#include "engine/cuda/context.h"
#include "engine/op_table.h"
#include "engine/ops/nhwc.h"
#include "kernels/cuda/blas.h"
#include "kernels/cuda/nhwc.h"

namespace caption {

namespace {

namespace kcu = kernels::cuda;

void nhwc_pack_cuda(const OpCall& c) {
  const auto& p = c.get<NhwcPackParams>();
  kcu::nchw_to_nhwc_bf16(c.in[0].data<float>(), p.batch, p.channels, p.plane,
                         c.out[0].data<uint16_t>(), cuda::stream(c.in[0].device()), p.channels_out);
}

void nhwc_unpack_cuda(const OpCall& c) {
  const auto& p = c.get<NhwcPackParams>();
  kcu::nhwc_bf16_to_nchw(c.in[0].data<uint16_t>(), p.batch, p.channels, p.plane,
                         c.out[0].data<float>(), cuda::stream(c.in[0].device()));
}

// in = {w, conv_bias, gamma, beta, mean, var} (conv_bias, gamma, beta may be undefined),
// out = {w16, bias}.
void fold_pack_nhwc_cuda(const OpCall& c) {
  auto opt = [](const Tensor& t) { return t.defined() ? t.data<float>() : nullptr; };
  kcu::fold_pack_nhwc(c.get<FoldPackParams>(), c.in[0].data<float>(), opt(c.in[1]), opt(c.in[2]),
                      opt(c.in[3]), c.in[4].data<float>(), c.in[5].data<float>(),
                      c.out[0].data<uint16_t>(), c.out[1].data<float>(),
                      cuda::stream(c.in[0].device()));
}

// out = {y, indices (int32; undefined unless differentiated)}.
void max_pool_nhwc_cuda(const OpCall& c) {
  kcu::max_pool_nhwc_bf16(c.get<MaxPoolNhwcParams>(), c.in[0].data<uint16_t>(),
                          c.out[0].data<uint16_t>(),
                          c.out[1].defined() ? c.out[1].data<int32_t>() : nullptr,
                          cuda::stream(c.in[0].device()));
}

// Backward: in = {indices, grad_y}, out = {grad_x}.
void max_pool_nhwc_cuda_backward(const OpCall& c) {
  if (!c.out[0].defined()) return;
  kcu::max_pool_nhwc_backward(c.get<MaxPoolNhwcParams>(), c.in[0].data<int32_t>(),
                              c.in[1].data<uint16_t>(), c.out[0].data<uint16_t>(),
                              cuda::stream(c.in[1].device()));
}

Tensor bn_workspace(const BatchNormNhwcParams& p, Device dev) {
  const int64_t bytes = kcu::batch_norm_nhwc_workspace_bytes(p);
  return Tensor::empty({(bytes + 7) / 8}, DType::F64, dev);
}

uint16_t* bf16_or_null(const Tensor& t) { return t.defined() ? t.data<uint16_t>() : nullptr; }
float* f32_or_null(const Tensor& t) { return t.defined() ? t.data<float>() : nullptr; }

// in = {x, weight, bias, residual, running_mean, running_var} (all but x may be undefined),
// out = {y, save_mean, save_invstd}.
void batch_norm_nhwc_cuda(const OpCall& c) {
  const auto& p = c.get<BatchNormNhwcParams>();
  const Device dev = c.in[0].device();
  const Tensor ws = bn_workspace(p, dev);
  kcu::batch_norm_nhwc_forward(p, c.in[0].data<uint16_t>(), f32_or_null(c.in[1]),
                               f32_or_null(c.in[2]), bf16_or_null(c.in[3]), f32_or_null(c.in[4]),
                               f32_or_null(c.in[5]), c.out[0].data<uint16_t>(),
                               c.out[1].data<float>(), c.out[2].data<float>(), ws.raw_data(),
                               cuda::stream(dev));
}

// Backward: in = {x, weight, save_mean, save_invstd, y, grad_y}, out = {grad_x,
// grad_weight, grad_bias, grad_residual}, each may be undefined.
void batch_norm_nhwc_cuda_backward(const OpCall& c) {
  const auto& p = c.get<BatchNormNhwcParams>();
  const Device dev = c.in[0].device();
  const Tensor ws = bn_workspace(p, dev);
  kcu::batch_norm_nhwc_backward(p, c.in[0].data<uint16_t>(), c.in[4].data<uint16_t>(),
                                f32_or_null(c.in[1]), c.in[2].data<float>(), c.in[3].data<float>(),
                                c.in[5].data<uint16_t>(), bf16_or_null(c.out[0]),
                                f32_or_null(c.out[1]), f32_or_null(c.out[2]),
                                bf16_or_null(c.out[3]), ws.raw_data(), cuda::stream(dev));
}

[[maybe_unused]] const bool registered = [] {
  register_kernels(OpId::BatchNormNhwc, DeviceType::CUDA, batch_norm_nhwc_cuda,
                   batch_norm_nhwc_cuda_backward);
  register_kernels(OpId::NhwcPack, DeviceType::CUDA, nhwc_pack_cuda, nullptr);
  register_kernels(OpId::NhwcUnpack, DeviceType::CUDA, nhwc_unpack_cuda, nullptr);
  register_kernels(OpId::MaxPoolNhwc, DeviceType::CUDA, max_pool_nhwc_cuda,
                   max_pool_nhwc_cuda_backward);
  register_kernels(OpId::FoldPackNhwc, DeviceType::CUDA, fold_pack_nhwc_cuda, nullptr);
  return true;
}();

}  // namespace

}  // namespace caption
