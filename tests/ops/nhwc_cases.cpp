// Harness cases: the NHWC bfloat16 ops (nhwc_pack, nhwc_unpack, fold_pack_nhwc, conv_nhwc,
// max_pool_nhwc, batch_norm_nhwc, and add on bfloat16). They have no float64 kernels, so
// the cases run in the consistency (CUDA against the CPU) and guard modes only; the
// training cases (conv_nhwc without epilogue, batch_norm_nhwc, max_pool_nhwc, add) run
// their backward there too. Each case takes float32
// NCHW inputs, packs them, runs the op and unpacks its result, so that the harness compares
// float32 tensors (and the gradients of those float32 inputs).
// Shapes: odd channel counts (the epilogue's scalar path), even ones (its paired path),
// a 7x7 stride-2 stem, 1x1 projections with stride, padding and dilation, batch 1 and 3.
//
// Tolerance: both sides round the float32 product to bfloat16 and then round the
// epilogue's result again; the product's summation order differs (cuDNN against im2col +
// sgemm), so a value near a rounding boundary may land one bfloat16 step (2^-8 relative)
// apart, twice.
#include "tests/harness/harness.h"

namespace caption::testing {
namespace {

constexpr Tolerance kBf16Steps{2e-2, 1.6e-2};

std::vector<int> all_inputs(int n) {
  std::vector<int> v(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) v[static_cast<size_t>(i)] = i;
  return v;
}

OpCase pack_case(std::string name, Shape x, int64_t channel_multiple = 1) {
  OpCase c;
  c.name = std::move(name);
  c.op = OpId::NhwcPack;
  c.gradcheck = false;
  c.no_grad_inputs = all_inputs(1);
  c.inputs = [=](Generator& g, DType t, Device d) {
    return std::vector<Tensor>{random_tensor(x, g, t, d, -3.0, 3.0)};
  };
  // The packed values in their NHWC order (widened exactly by Tensor::to), and the round
  // trip back to NCHW.
  c.forward = [channel_multiple](const std::vector<Tensor>& v) {
    const Tensor packed = nhwc_pack(v[0], channel_multiple);
    if (channel_multiple > 1) return std::vector<Tensor>{packed.to(DType::F32)};
    return std::vector<Tensor>{packed.to(DType::F32), nhwc_unpack(packed)};
  };
  c.consistency = {0, 0};
  return c;
}

// The unpack op's own case: a packed tensor permuted back to NCHW, then unpacked.
OpCase unpack_case(std::string name, Shape x) {
  OpCase c = pack_case(std::move(name), x);
  c.op = OpId::NhwcUnpack;
  c.forward = [](const std::vector<Tensor>& v) {
    return std::vector<Tensor>{nhwc_unpack(nhwc_pack(v[0]))};
  };
  return c;
}

// A weight [O, C, kh, kw] folded with a batch norm's statistics and packed; `full` gives
// the convolution a bias and the batch norm its affine parameters.
OpCase fold_pack_case(std::string name, Shape w, bool full, int64_t channel_multiple) {
  OpCase c;
  c.name = std::move(name);
  c.op = OpId::FoldPackNhwc;
  c.gradcheck = false;
  c.no_grad_inputs = all_inputs(6);
  const int64_t O = w[0];
  c.inputs = [=](Generator& g, DType t, Device d) {
    return std::vector<Tensor>{random_tensor(w, g, t, d),
                               full ? random_tensor({O}, g, t, d) : Tensor(),
                               full ? random_tensor({O}, g, t, d, 0.5, 1.5) : Tensor(),
                               full ? random_tensor({O}, g, t, d) : Tensor(),
                               random_tensor({O}, g, t, d),
                               random_tensor({O}, g, t, d, 0.2, 3.0)};
  };
  c.forward = [channel_multiple](const std::vector<Tensor>& v) {
    const PackedConv k = fold_pack_nhwc(v[0], v[1], v[2], v[3], v[4], v[5], 1e-5, channel_multiple);
    return std::vector<Tensor>{k.weight.to(DType::F32), k.bias};
  };
  // Both sides compute each channel's scale in double and round the products and sums
  // explicitly (no fused multiply-add): the same bits.
  c.consistency = {0, 0};
  return c;
}

OpCase conv_case(std::string name, Shape x, Shape w, bool bias, bool residual, bool relu,
                 Conv2dOptions o) {
  OpCase c;
  c.name = std::move(name);
  c.op = OpId::ConvNhwc;
  c.gradcheck = false;
  c.no_grad_inputs = all_inputs(4);
  const int64_t ho = conv_output_size(x[2], w[2], o.stride.h, o.padding.h, o.dilation.h);
  const int64_t wo = conv_output_size(x[3], w[3], o.stride.w, o.padding.w, o.dilation.w);
  c.inputs = [=](Generator& g, DType t, Device d) {
    return std::vector<Tensor>{
        random_tensor(x, g, t, d), random_tensor(w, g, t, d),
        bias ? random_tensor({w[0]}, g, t, d) : Tensor(),
        residual ? random_tensor({x[0], w[0], ho, wo}, g, t, d) : Tensor()};
  };
  c.forward = [=](const std::vector<Tensor>& v) {
    const Tensor r = v[3].defined() ? nhwc_pack(v[3]) : Tensor();
    return std::vector<Tensor>{
        nhwc_unpack(conv_nhwc(nhwc_pack(v[0]), nhwc_pack(v[1]), v[2], r, {o, relu}))};
  };
  c.consistency = kBf16Steps;
  return c;
}

OpCase pool_case(std::string name, Shape x, MaxPool2dOptions o) {
  OpCase c;
  c.name = std::move(name);
  c.op = OpId::MaxPoolNhwc;
  c.gradcheck = false;
  c.no_grad_inputs = all_inputs(1);
  c.inputs = [=](Generator& g, DType t, Device d) {
    return std::vector<Tensor>{random_tensor(x, g, t, d)};
  };
  c.forward = [o](const std::vector<Tensor>& v) {
    return std::vector<Tensor>{nhwc_unpack(max_pool_nhwc(nhwc_pack(v[0]), o))};
  };
  c.consistency = {0, 0};  // a maximum of the same bfloat16 values
  return c;
}

// Training: the plain convolution, differentiated in x and w through the packing (whose
// gradients unpack, and whose unpacking's gradient packs: rounded to bfloat16).
OpCase conv_train_case(std::string name, Shape x, Shape w, Conv2dOptions o) {
  OpCase c;
  c.name = std::move(name);
  c.op = OpId::ConvNhwc;
  c.float64 = false;
  c.inputs = [=](Generator& g, DType t, Device d) {
    return std::vector<Tensor>{random_tensor(x, g, t, d), random_tensor(w, g, t, d)};
  };
  c.forward = [=](const std::vector<Tensor>& v) {
    return std::vector<Tensor>{
        nhwc_unpack(conv_nhwc(nhwc_pack(v[0]), nhwc_pack(v[1]), Tensor(), Tensor(), {o, false}))};
  };
  c.consistency = kBf16Steps;
  return c;
}

// Training-mode batch norm with the block's residual and ReLU: inputs {x, weight, bias,
// residual, running_mean, running_var}; outputs y and the updated running statistics.
OpCase bn_train_case(std::string name, Shape x, bool affine, bool residual, bool relu) {
  OpCase c;
  c.name = std::move(name);
  c.op = OpId::BatchNormNhwc;
  c.float64 = false;
  c.no_grad_inputs = {4, 5};
  const int64_t C = x[1];
  c.inputs = [=](Generator& g, DType t, Device d) {
    return std::vector<Tensor>{random_tensor(x, g, t, d, -2.0, 3.0),
                               affine ? random_tensor({C}, g, t, d, 0.5, 1.5) : Tensor(),
                               affine ? random_tensor({C}, g, t, d) : Tensor(),
                               residual ? random_tensor(x, g, t, d) : Tensor(),
                               random_tensor({C}, g, t, d),
                               random_tensor({C}, g, t, d, 0.5, 2.0)};
  };
  c.forward = [=](const std::vector<Tensor>& v) {
    const Tensor r = v[3].defined() ? nhwc_pack(v[3]) : Tensor();
    const Tensor y = batch_norm_nhwc(nhwc_pack(v[0]), v[1], v[2], v[4], v[5], r, {0.1, 1e-5, relu});
    return std::vector<Tensor>{nhwc_unpack(y), v[4].clone(), v[5].clone()};
  };
  c.consistency = kBf16Steps;
  return c;
}

// bfloat16 add of equal shapes (autograd's sum of an NHWC activation's two gradients),
// differentiated: both gradients are the incoming one.
OpCase add_case(std::string name, Shape x) {
  OpCase c;
  c.name = std::move(name);
  c.op = OpId::Add;
  c.float64 = false;
  c.inputs = [=](Generator& g, DType t, Device d) {
    return std::vector<Tensor>{random_tensor(x, g, t, d, -3.0, 3.0), random_tensor(x, g, t, d)};
  };
  c.forward = [](const std::vector<Tensor>& v) {
    return std::vector<Tensor>{nhwc_unpack(add(nhwc_pack(v[0]), nhwc_pack(v[1])))};
  };
  c.consistency = {0, 0};  // one float32 sum of the same values, rounded once
  return c;
}

// Training: max pooling differentiated (each window's gradient to its first maximum).
OpCase pool_train_case(std::string name, Shape x, MaxPool2dOptions o) {
  OpCase c = pool_case(std::move(name), x, o);
  c.gradcheck = true;
  c.float64 = false;
  c.no_grad_inputs = {};
  return c;
}

CAPTION_OP_CASES {
  const Conv2dOptions plain{};
  return {
      pack_case("nhwc_pack/3 images 5 channels 7x3", {3, 5, 7, 3}),
      pack_case("nhwc_pack/1 image 64 channels 1x1", {1, 64, 1, 1}),
      unpack_case("nhwc_unpack/2 images 33 channels 4x5", {2, 33, 4, 5}),
      pack_case("nhwc_pack/3 channels padded to 8 (the stem)", {2, 3, 5, 7}, 8),
      fold_pack_case("fold_pack_nhwc/3x3, conv bias and affine batch norm", {6, 5, 3, 3}, true, 1),
      fold_pack_case("fold_pack_nhwc/7x7 stem padded to 8 channels, bare batch norm", {4, 3, 7, 7},
                     false, 8),
      fold_pack_case("fold_pack_nhwc/1x1, 33 outputs", {33, 16, 1, 1}, true, 1),
      conv_case("conv_nhwc/3x3 pad 1 bias relu, odd channels", {2, 5, 7, 6}, {3, 5, 3, 3}, true,
                false, true, {{1, 1}, {1, 1}, {1, 1}}),
      conv_case("conv_nhwc/1x1 bias residual relu, even channels", {3, 8, 5, 4}, {16, 8, 1, 1},
                true, true, true, plain),
      conv_case("conv_nhwc/1x1 stride 2 projection, no bias, no relu", {1, 6, 7, 7}, {10, 6, 1, 1},
                false, false, false, {{2, 2}, {0, 0}, {1, 1}}),
      conv_case("conv_nhwc/7x7 stride 2 pad 3 stem, 3 input channels", {2, 3, 15, 13},
                {8, 3, 7, 7}, true, false, true, {{2, 2}, {3, 3}, {1, 1}}),
      conv_case("conv_nhwc/3x3 dilation 2 rectangular stride, residual only", {2, 4, 9, 8},
                {6, 4, 3, 3}, false, true, false, {{2, 1}, {2, 2}, {2, 2}}),
      conv_train_case("conv_nhwc/training 3x3 stride 2 pad 1", {2, 6, 7, 6}, {4, 6, 3, 3},
                      {{2, 2}, {1, 1}, {1, 1}}),
      conv_train_case("conv_nhwc/training 1x1 stride 2 projection, odd channels", {3, 5, 5, 5},
                      {7, 5, 1, 1}, {{2, 2}, {0, 0}, {1, 1}}),
      conv_train_case("conv_nhwc/training 1x1, 1 image", {1, 8, 4, 3}, {16, 8, 1, 1}, plain),
      bn_train_case("batch_norm_nhwc/affine, residual and relu, even channels", {2, 6, 3, 5},
                    true, true, true),
      bn_train_case("batch_norm_nhwc/affine and relu, odd channels", {3, 5, 4, 3}, true, false,
                    true),
      bn_train_case("batch_norm_nhwc/no affine, residual, no relu", {2, 4, 2, 3}, false, true,
                    false),
      bn_train_case("batch_norm_nhwc/64 channels, 200 rows (several row chunks)", {2, 64, 10, 10},
                    true, false, true),
      add_case("add/bfloat16, odd sizes", {3, 5, 7, 3}),
      pool_train_case("max_pool_nhwc/training 3x3 stride 2 pad 1 (the stem)", {2, 6, 9, 8},
                      {.kernel = {3, 3}, .stride = Size2{2, 2}, .padding = {1, 1}}),
      pool_train_case("max_pool_nhwc/training 2x2 stride 1, odd channels", {1, 5, 4, 5},
                      {.kernel = {2, 2}, .stride = Size2{1, 1}}),
      pool_case("max_pool_nhwc/3x3 stride 2 pad 1 (the stem)", {2, 6, 9, 8},
                {.kernel = {3, 3}, .stride = Size2{2, 2}, .padding = {1, 1}}),
      pool_case("max_pool_nhwc/2x3 dilation 2, 1 image", {1, 3, 7, 9},
                {.kernel = {2, 3}, .padding = {1, 1}, .dilation = {2, 2}}),
  };
}

}  // namespace
}  // namespace caption::testing
