// Harness cases: the image ops (conv2d, batch_norm2d, max_pool2d, adaptive_avg_pool2d)
// with awkward sizes: batch 1 and 3, odd and prime extents, rectangular kernels, strides,
// padding, dilation, 1x1 convolutions, H*W = 1, C = 1, up- and down-sampling pools.
// Max pooling draws a random permutation of evenly spaced values, so that no window
// holds a near-tie that the finite differences would straddle.
#include <algorithm>
#include <numeric>

#include "tests/harness/harness.h"

namespace caption::testing {
namespace {

using Mode = BatchNormOptions::Mode;

// Distinct values: a shuffled ramp in [-1, 1), steps of 2/numel (far above the
// gradcheck's eps of 1e-6).
Tensor distinct_tensor(const Shape& shape, Generator& g, DType t, Device d) {
  Tensor host = Tensor::empty(shape, DType::F64);
  const int64_t n = host.numel();
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), int64_t{0});
  for (int64_t i = n - 1; i > 0; --i)
    std::swap(order[static_cast<size_t>(i)], order[g.next_u32() % static_cast<uint32_t>(i + 1)]);
  double* p = host.data<double>();
  for (int64_t i = 0; i < n; ++i) p[i] = -1.0 + 2.0 * static_cast<double>(order[i]) / n;
  return host.to(t).to(d);
}

enum class Bias { No, Yes };

OpCase conv_case(std::string name, Shape x, Shape w, Bias bias, Conv2dOptions o) {
  OpCase c;
  c.name = std::move(name);
  c.op = OpId::Conv2d;
  c.inputs = [=](Generator& g, DType t, Device d) {
    std::vector<Tensor> v{random_tensor(x, g, t, d), random_tensor(w, g, t, d)};
    v.push_back(bias == Bias::Yes ? random_tensor({w[0]}, g, t, d) : Tensor());
    return v;
  };
  c.forward = [o](const std::vector<Tensor>& v) {
    return std::vector<Tensor>{conv2d(v[0], v[1], v[2], o)};
  };
  return c;
}

// The inference epilogue (forward only: conv2d refuses it while differentiating). The
// CUDA side runs the add and relu kernels after cuDNN's product, the CPU the same sums
// inside its loop over images, so the usual product tolerance applies.
OpCase conv_epilogue_case(std::string name, Shape x, Shape w, Bias bias, bool residual,
                          bool relu, Conv2dOptions o) {
  OpCase c;
  c.name = std::move(name);
  c.op = OpId::Conv2d;
  c.gradcheck = false;
  c.no_grad_inputs = {0, 1, 2, 3};
  const int64_t ho = conv_output_size(x[2], w[2], o.stride.h, o.padding.h, o.dilation.h);
  const int64_t wo = conv_output_size(x[3], w[3], o.stride.w, o.padding.w, o.dilation.w);
  c.inputs = [=](Generator& g, DType t, Device d) {
    std::vector<Tensor> v{random_tensor(x, g, t, d), random_tensor(w, g, t, d)};
    v.push_back(bias == Bias::Yes ? random_tensor({w[0]}, g, t, d) : Tensor());
    v.push_back(residual ? random_tensor({x[0], w[0], ho, wo}, g, t, d) : Tensor());
    return v;
  };
  c.forward = [o, relu](const std::vector<Tensor>& v) {
    return std::vector<Tensor>{conv2d(v[0], v[1], v[2], o, {.residual = v[3], .relu = relu})};
  };
  return c;
}

enum class Affine { No, Yes };
enum class Running { No, Yes };

OpCase bn_case(std::string name, Shape x, Mode mode, Affine affine, Running running,
               std::vector<int> no_grad = {}) {
  OpCase c;
  c.name = std::move(name);
  c.op = OpId::BatchNorm2d;
  const int64_t C = x[1];
  c.inputs = [=](Generator& g, DType t, Device d) {
    std::vector<Tensor> v{random_tensor(x, g, t, d, -2.0, 3.0)};
    v.push_back(affine == Affine::Yes ? random_tensor({C}, g, t, d, 0.5, 1.5) : Tensor());
    v.push_back(affine == Affine::Yes ? random_tensor({C}, g, t, d) : Tensor());
    v.push_back(running == Running::Yes ? random_tensor({C}, g, t, d, -0.5, 0.5) : Tensor());
    v.push_back(running == Running::Yes ? random_tensor({C}, g, t, d, 0.5, 2.0) : Tensor());
    return v;
  };
  c.forward = [mode](const std::vector<Tensor>& v) {
    BatchNormOptions o;
    o.mode = mode;
    return std::vector<Tensor>{batch_norm2d(v[0], v[1], v[2], v[3], v[4], o)};
  };
  // The running statistics are buffers: never differentiated.
  c.no_grad_inputs = std::move(no_grad);
  c.no_grad_inputs.push_back(3);
  c.no_grad_inputs.push_back(4);
  return c;
}

OpCase max_pool_case(std::string name, Shape x, MaxPool2dOptions o) {
  OpCase c;
  c.name = std::move(name);
  c.op = OpId::MaxPool2d;
  c.inputs = [=](Generator& g, DType t, Device d) {
    return std::vector<Tensor>{distinct_tensor(x, g, t, d)};
  };
  c.forward = [o](const std::vector<Tensor>& v) {
    return std::vector<Tensor>{max_pool2d(v[0], o)};
  };
  return c;
}

OpCase adaptive_case(std::string name, Shape x, Size2 out) {
  OpCase c;
  c.name = std::move(name);
  c.op = OpId::AdaptiveAvgPool2d;
  c.inputs = [=](Generator& g, DType t, Device d) {
    return std::vector<Tensor>{random_tensor(x, g, t, d)};
  };
  c.forward = [out](const std::vector<Tensor>& v) {
    return std::vector<Tensor>{adaptive_avg_pool2d(v[0], out)};
  };
  return c;
}

CAPTION_OP_CASES {
  return std::vector<OpCase>{
      // conv2d
      conv_case("conv2d/3x3_pad1_batch3", {3, 2, 5, 4}, {3, 2, 3, 3}, Bias::Yes,
                {.padding = {1, 1}}),
      conv_case("conv2d/3x3_stride2_pad1_odd", {1, 3, 7, 5}, {4, 3, 3, 3}, Bias::Yes,
                {.stride = {2, 2}, .padding = {1, 1}}),
      conv_case("conv2d/dilation2_no_bias", {2, 2, 7, 6}, {3, 2, 3, 3}, Bias::No,
                {.padding = {2, 1}, .dilation = {2, 2}}),
      conv_case("conv2d/1x1_pointwise_batch3", {3, 5, 3, 4}, {7, 5, 1, 1}, Bias::Yes, {}),
      conv_case("conv2d/1x1_stride2_no_bias", {2, 4, 5, 5}, {3, 4, 1, 1}, Bias::No,
                {.stride = {2, 2}}),
      conv_case("conv2d/7x7_stride2_pad3_stem", {1, 3, 11, 9}, {2, 3, 7, 7}, Bias::No,
                {.stride = {2, 2}, .padding = {3, 3}}),
      conv_case("conv2d/rect_kernel_mixed_options", {2, 3, 6, 7}, {2, 3, 2, 3}, Bias::Yes,
                {.stride = {2, 1}, .padding = {0, 1}, .dilation = {1, 2}}),
      conv_case("conv2d/kernel_larger_than_input", {1, 1, 3, 3}, {2, 1, 5, 5}, Bias::Yes,
                {.padding = {2, 2}}),
      conv_case("conv2d/one_channel_one_pixel_out", {3, 1, 3, 3}, {1, 1, 3, 3}, Bias::No, {}),
      conv_epilogue_case("conv2d/epilogue_residual_relu_3x3_batch3", {3, 4, 6, 5}, {5, 4, 3, 3},
                         Bias::Yes, true, true, {.padding = {1, 1}}),
      conv_epilogue_case("conv2d/epilogue_relu_only_1x1", {2, 6, 3, 7}, {3, 6, 1, 1}, Bias::Yes,
                         false, true, {}),
      conv_epilogue_case("conv2d/epilogue_residual_only_stride2_no_bias", {2, 3, 7, 7},
                         {4, 3, 1, 1}, Bias::No, true, false, {.stride = {2, 2}}),
      // batch_norm2d (inputs: x, weight, bias, running_mean, running_var)
      bn_case("batch_norm2d/train_batch3_c5", {3, 5, 4, 3}, Mode::Train, Affine::Yes,
              Running::Yes),
      bn_case("batch_norm2d/train_c1", {4, 1, 3, 5}, Mode::Train, Affine::Yes, Running::Yes),
      bn_case("batch_norm2d/train_hw1_batch5", {5, 3, 1, 1}, Mode::Train, Affine::Yes,
              Running::Yes),
      bn_case("batch_norm2d/train_batch1_c7", {1, 7, 3, 3}, Mode::Train, Affine::Yes,
              Running::Yes),
      bn_case("batch_norm2d/train_no_affine_untracked", {2, 3, 2, 3}, Mode::Train, Affine::No,
              Running::No),
      bn_case("batch_norm2d/eval_batch2_c3", {2, 3, 4, 5}, Mode::Eval, Affine::Yes, Running::Yes),
      bn_case("batch_norm2d/eval_c1_batch1", {1, 1, 5, 7}, Mode::Eval, Affine::Yes, Running::Yes),
      bn_case("batch_norm2d/eval_frozen_affine", {3, 5, 2, 3}, Mode::Eval, Affine::Yes,
              Running::Yes, {1, 2}),
      // max_pool2d
      max_pool_case("max_pool2d/stem_3x3_s2_p1_odd", {2, 3, 9, 7},
                    {.kernel = {3, 3}, .stride = Size2{2, 2}, .padding = {1, 1}}),
      max_pool_case("max_pool2d/2x2_default_stride_odd_width", {1, 2, 6, 5},
                    {.kernel = {2, 2}}),
      max_pool_case("max_pool2d/3x3_s1_p1_overlapping", {1, 2, 5, 5},
                    {.kernel = {3, 3}, .stride = Size2{1, 1}, .padding = {1, 1}}),
      max_pool_case("max_pool2d/dilation2", {1, 2, 7, 7},
                    {.kernel = {3, 3}, .stride = Size2{1, 1}, .padding = {1, 1},
                     .dilation = {2, 2}}),
      max_pool_case("max_pool2d/rect_window", {3, 1, 5, 6},
                    {.kernel = {3, 2}, .stride = Size2{1, 2}, .padding = {1, 1}}),
      // adaptive_avg_pool2d
      adaptive_case("adaptive_avg_pool2d/down_7_to_3", {2, 3, 7, 7}, {3, 3}),
      adaptive_case("adaptive_avg_pool2d/down_5_to_2", {1, 4, 5, 5}, {2, 2}),
      adaptive_case("adaptive_avg_pool2d/identity", {2, 2, 4, 5}, {4, 5}),
      adaptive_case("adaptive_avg_pool2d/up_3_to_7", {2, 3, 3, 3}, {7, 7}),
      adaptive_case("adaptive_avg_pool2d/up_7_to_14", {1, 2, 7, 7}, {14, 14}),
      adaptive_case("adaptive_avg_pool2d/mixed_6x1_to_4x3", {1, 3, 6, 1}, {4, 3}),
      adaptive_case("adaptive_avg_pool2d/to_1x1", {3, 2, 5, 3}, {1, 1}),
  };
}

}  // namespace
}  // namespace caption::testing
