// CPU kernels of 2-D convolution (no groups: ResNet has none), NCHW, PyTorch semantics.
//
// The method is im2col + one gemm per image: the input patches of image b are laid out
// as a column matrix col [C*kh*kw, Ho*Wo] and y_b [O, Ho*Wo] = W [O, C*kh*kw] * col.
// A 1x1 convolution with stride 1 and no padding ("pointwise", most of ResNet-50's
// FLOPs outside the 3x3s) needs no im2col: the image itself is the column matrix.
// When one image's output plane is small (ResNet's deep layers: 7x7, 14x14 positions) the
// forward puts several images' column matrices side by side, up to 512 columns, and runs
// one product for them: OpenBLAS runs a product of 49 columns at about half the rate of
// one of 500 (bench/NOTES.md, eleventh session). Each output is still one dot product over
// K, but OpenBLAS may order its sums differently for another number of columns, so an
// image's output can differ in its last bits with the batch it comes in (as PyTorch's
// oneDNN convolutions do); a given batch gives the same bits every time.
// Backward reuses the same scratch buffer twice per image: first as im2col of x_b for
// grad_weight (gemm accumulated over the batch), then as grad_col = W^T * grad_y_b,
// which col2im scatters back into grad_x_b. The scratch buffer is the caller's (the op
// layer takes it from the engine's allocator), conv2d_workspace_elems() says its size.
// im2col/col2im are split over channels between a few threads when the buffer is
// large, since OpenBLAS parallelises the gemm but the copy would otherwise run alone.
#pragma once

#include <cstdint>

namespace caption::kernels::cpu {

// Sizes of one convolution, resolved by the op layer and shared with the CUDA side.
struct Conv2dGeometry {
  int64_t batch = 0, in_channels = 0, in_h = 0, in_w = 0;
  int64_t out_channels = 0, kernel_h = 0, kernel_w = 0;
  int64_t stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0, dilation_h = 1, dilation_w = 1;
  int64_t out_h = 0, out_w = 0;
  // Autocast (engine/autocast.h): operands rounded to bfloat16, float32 accumulation,
  // outputs (y before its bias, grad_x, grad_w) rounded to bfloat16, as cuDNN's bfloat16
  // convolution stores them. Read by the op adapters; the kernels below read it only to
  // keep such a convolution off Winograd (whose transforms would multiply other values
  // than the bfloat16 operands).
  bool bf16 = false;
  // The NHWC op (engine/ops/nhwc.h): x [B, H, W, C], w [O, kh, kw, C] and y [B, Ho, Wo, O]
  // in bfloat16 (bf16 is set too). Read by the CUDA side to describe them to cuDNN.
  bool nhwc = false;
  // The inference epilogue of OpId::Conv2d (engine/ops/conv.h, Conv2dEpilogue): ReLU of the
  // output after its bias and the residual (the op's fourth input, when given). Never set
  // on a recorded call: the op refuses an epilogue while differentiating.
  bool relu = false;

  int64_t patch_size() const { return in_channels * kernel_h * kernel_w; }  // gemm K
  int64_t out_plane() const { return out_h * out_w; }                      // gemm N
  // 1x1, stride 1, no padding: the input image is its own column matrix.
  bool is_pointwise() const {
    return kernel_h == 1 && kernel_w == 1 && stride_h == 1 && stride_w == 1 && pad_h == 0 &&
           pad_w == 0;
  }
};

// Which method the float32 forward takes. Stride-1 3x3 convolutions go through Winograd's
// F(2x2, 3x3) (kernels/cpu/winograd.h: 2.25x fewer multiply-adds, no im2col) when enough
// output positions share the cost of transforming the filters at each call (at least
// kWinogradMinPositions over the batch: at ResNet-50's 224-pixel input, layer1 and layer2
// at any batch, layer3 from batch 2, layer4 from batch 8), outside autocast (whose bfloat16 products are of
// the untransformed operands, as cuDNN's are), unless switched off; everything else, and
// float64, is im2col + gemm. The switch starts as the environment's CAPTION_CONV_WINOGRAD
// ("0": off) and is process-wide. Backward is always im2col + gemm.
constexpr int64_t kWinogradMinPositions = 384;
void set_conv_winograd(bool on);
bool conv_winograd();
bool conv2d_takes_winograd(const Conv2dGeometry& g);  // for float32, outside autocast

// Scratch elements (of the element type) that the kernels below need: 0 for pointwise.
int64_t conv2d_workspace_elems(const Conv2dGeometry& g);

// y [B, O, Ho, Wo] = conv(x [B, C, H, W], w [O, C, kh, kw]) + bias [O], then + residual
// [B, O, Ho, Wo], then ReLU where g.relu; bias and residual may be null (none). The
// epilogue runs on each image's output right after its product, while it is in cache, and
// rounds as the separate ops do: (the product with its bias, as without an epilogue) +
// residual, then v > 0 ? v : 0, the
// relu op's own test (kernels/cpu/elementwise.cpp), so the result is theirs bit for bit.
template <typename T>
void conv2d_forward(const Conv2dGeometry& g, const T* x, const T* w, const T* bias,
                    const T* residual, T* y, T* workspace);

// The epilogue alone, in place over n outputs that already hold their product and bias:
// y = y + residual (when given), then ReLU where g.relu (v > 0 ? v : 0). The forwards
// above (im2col and Winograd) apply it to each output block while it is in cache.
template <typename T>
void conv2d_epilogue(const Conv2dGeometry& g, T* y, const T* residual, int64_t n);

// Gradients for grad_y [B, O, Ho, Wo]; each of grad_x [B, C, H, W], grad_w [O, C, kh, kw],
// grad_bias [O] may be null (not needed) and is written (=) otherwise. x is needed only
// for grad_w, w only for grad_x.
template <typename T>
void conv2d_backward(const Conv2dGeometry& g, const T* x, const T* w, const T* grad_y, T* grad_x,
                     T* grad_w, T* grad_bias, T* workspace);

// One image: col [C*kh*kw, Ho*Wo] from x [C, H, W] (zeros where the patch is in the padding).
template <typename T>
void im2col(const Conv2dGeometry& g, const T* x, T* col);
// One image, the adjoint of im2col: x [C, H, W] = sum of col's entries over every patch
// position that reads each pixel (x is written, not accumulated into).
template <typename T>
void col2im(const Conv2dGeometry& g, const T* col, T* x);

}  // namespace caption::kernels::cpu
