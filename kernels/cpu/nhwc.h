// CPU kernels of the NHWC bfloat16 inference ops (engine/ops/nhwc.h): packing NCHW
// float32 into NHWC bfloat16 and back, the convolution's epilogue (bias, residual, ReLU)
// and max pooling over NHWC. bfloat16 values travel as their uint16_t bit patterns and
// are rounded by kernels/bf16.h, the function the CUDA kernels run too.
#pragma once

#include <cstdint>

#include "kernels/cpu/conv.h"
#include "kernels/cpu/pool.h"

namespace caption::kernels::cpu {

// The params of OpId::NhwcPack and OpId::NhwcUnpack: [batch, channels, plane] (NCHW,
// plane = H * W) <-> [batch, plane, channels] (NHWC).
struct NhwcPackParams {
  int64_t batch = 0, channels = 0, plane = 0;
};

// The params of OpId::ConvNhwc: the geometry (bf16 and nhwc set) and the epilogue.
struct ConvNhwcParams {
  Conv2dGeometry g;
  bool relu = false;
};

// The params of OpId::MaxPoolNhwc: g.planes is the batch; channels the innermost axis.
struct MaxPoolNhwcParams {
  MaxPool2dParams g;
  int64_t channels = 0;
};

// y [B, P, C] bfloat16 = x [B, C, P] float32, rounded to nearest even.
void nchw_to_nhwc_bf16(const NhwcPackParams& p, const float* x, uint16_t* y);
// y [B, C, P] float32 = x [B, P, C] bfloat16 (exact).
void nhwc_bf16_to_nchw(const NhwcPackParams& p, const uint16_t* x, float* y);

// The convolution's epilogue, in place over y [rows, channels] (NHWC, rows = B * Ho * Wo),
// which holds the product already rounded to bfloat16 (as cuDNN stores it):
//   y = bf16(relu?((y + bias[c]) + residual))   (float32 arithmetic, one rounding)
// bias may be null (zero), residual may be null (none), relu optional. NaN passes ReLU.
void conv_nhwc_epilogue(uint16_t* y, const float* bias, const uint16_t* residual, int64_t rows,
                        int64_t channels, bool relu);

// y [B, Ho, Wo, C] = max over each window of x [B, H, W, C] (padding is -inf, a NaN in a
// window wins, as max_pool2d): max pooling's values without indices (no backward).
void max_pool_nhwc_bf16(const MaxPoolNhwcParams& p, const uint16_t* x, uint16_t* y);

}  // namespace caption::kernels::cpu
