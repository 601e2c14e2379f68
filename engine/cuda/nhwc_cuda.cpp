// CUDA adapters and table registration of the NHWC bfloat16 packing, weight folding and
// max pooling
// (engine/ops/nhwc.h). The convolution's adapter lives with the other cuDNN convolutions
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

void max_pool_nhwc_cuda(const OpCall& c) {
  kcu::max_pool_nhwc_bf16(c.get<MaxPoolNhwcParams>(), c.in[0].data<uint16_t>(),
                          c.out[0].data<uint16_t>(), cuda::stream(c.in[0].device()));
}

[[maybe_unused]] const bool registered = [] {
  register_kernels(OpId::NhwcPack, DeviceType::CUDA, nhwc_pack_cuda, nullptr);
  register_kernels(OpId::NhwcUnpack, DeviceType::CUDA, nhwc_unpack_cuda, nullptr);
  register_kernels(OpId::MaxPoolNhwc, DeviceType::CUDA, max_pool_nhwc_cuda, nullptr);
  register_kernels(OpId::FoldPackNhwc, DeviceType::CUDA, fold_pack_nhwc_cuda, nullptr);
  return true;
}();

}  // namespace

}  // namespace caption
