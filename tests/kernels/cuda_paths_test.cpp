// CUDA against the CPU on shapes large enough to take the launch paths the small harness
// cases (tests/ops/*_cases.cpp) never reach: block-per-row softmax and cross-entropy
// (rows of 1,024 and more), warp- and block-per-element broadcast gradients, block
// reductions over thousands of terms, the tiled reductions with 8 thread rows. These
// cases are local to this test (not registered with the harness), so the double-
// precision gradient check does not run on them. Skipped without a GPU.
//
// Tolerance: atol 1e-4 instead of the harness's 1e-5, because sums of thousands of terms
// taken in another order than the CPU's differ by a few 1e-5 where they cancel; and at
// least 2e-5 of the result's largest magnitude, because that roundoff grows with the
// size of the terms: a convolution's weight gradient sums 3,136 products per element
// (values up to about 90), and on an H100 cuDNN's order differed from the CPU's by up to
// 2.8e-4 (3e-6 of the largest value) in elements near zero. An indexing fault errs by
// the values' own size; TF32 products where float32 is due, by some 3e-4 of the largest.
#include <algorithm>
#include <cmath>

#include "tests/harness/gpu.h"
#include "tests/harness/harness.h"

namespace caption::testing {
namespace {

constexpr Tolerance kLongSums{1e-4, 1e-4};

OpCase binary(std::string name, OpId op, Shape a, Shape b,
              Tensor (*fn)(const Tensor&, const Tensor&)) {
  OpCase c;
  c.name = std::move(name);
  c.op = op;
  c.inputs = [a, b](Generator& g, DType t, Device d) {
    return std::vector<Tensor>{random_tensor(a, g, t, d), random_tensor(b, g, t, d, -1.0, 1.0, 0.5)};
  };
  c.forward = [fn](const std::vector<Tensor>& x) { return std::vector<Tensor>{fn(x[0], x[1])}; };
  c.consistency = kLongSums;
  return c;
}

OpCase reduction(std::string name, OpId op, Shape s, std::vector<int64_t> axes) {
  OpCase c;
  c.name = std::move(name);
  c.op = op;
  c.inputs = [s](Generator& g, DType t, Device d) { return std::vector<Tensor>{random_tensor(s, g, t, d)}; };
  c.forward = [op, axes](const std::vector<Tensor>& x) {
    return std::vector<Tensor>{op == OpId::Sum ? sum(x[0], axes) : mean(x[0], axes)};
  };
  c.consistency = kLongSums;
  return c;
}

OpCase normalised(std::string name, OpId op, Shape s, int64_t axis, bool masked) {
  OpCase c;
  c.name = std::move(name);
  c.op = op;
  c.inputs = [s, masked](Generator& g, DType t, Device d) {
    std::vector<Tensor> v{random_tensor(s, g, t, d, -3.0, 3.0)};
    if (masked) {  // keep 3 of every 4 entries of the last axis, repeated over the rows
      std::vector<int32_t> m(s.back());
      for (size_t i = 0; i < m.size(); ++i) m[i] = i % 4 != 1;
      v.push_back(Tensor::from_vector<int32_t>(m, {s.back()}).to(d));
    }
    return v;
  };
  c.forward = [op, axis](const std::vector<Tensor>& x) {
    const Tensor mask = x.size() > 1 ? x[1] : Tensor();
    return std::vector<Tensor>{op == OpId::Softmax ? softmax(x[0], axis, mask)
                                                   : log_softmax(x[0], axis, mask)};
  };
  c.consistency = kLongSums;
  return c;
}

OpCase cross_entropy_rows(std::string name, int64_t n, int64_t v, DType target_dtype) {
  OpCase c;
  c.name = std::move(name);
  c.op = OpId::CrossEntropy;
  c.inputs = [=](Generator& g, DType t, Device d) {
    std::vector<int64_t> targets(n);
    for (int64_t r = 0; r < n; ++r) targets[r] = r % 3 == 1 ? -100 : (r * 7919) % v;
    return std::vector<Tensor>{random_tensor({n, v}, g, t, d, -2.0, 2.0),
                               Tensor::from_vector<int64_t>(targets, {n}).to(target_dtype).to(d)};
  };
  c.forward = [](const std::vector<Tensor>& x) {
    return std::vector<Tensor>{cross_entropy(x[0], x[1])};
  };
  c.consistency = kLongSums;
  return c;
}

// Image ops at ResNet sizes: cuDNN picks other algorithms for these than for the tiny
// harness cases, and the batch-norm channel reductions run over many blocks' worth.
OpCase conv_large(std::string name, Shape x, Shape w, bool bias, Conv2dOptions o) {
  OpCase c;
  c.name = std::move(name);
  c.op = OpId::Conv2d;
  c.inputs = [=](Generator& g, DType t, Device d) {
    return std::vector<Tensor>{random_tensor(x, g, t, d), random_tensor(w, g, t, d, -0.2, 0.2),
                               bias ? random_tensor({w[0]}, g, t, d) : Tensor()};
  };
  c.forward = [o](const std::vector<Tensor>& v) {
    return std::vector<Tensor>{conv2d(v[0], v[1], v[2], o)};
  };
  c.consistency = kLongSums;
  return c;
}

OpCase batch_norm_large(std::string name, Shape x, BatchNormOptions::Mode mode) {
  OpCase c;
  c.name = std::move(name);
  c.op = OpId::BatchNorm2d;
  const int64_t C = x[1];
  c.inputs = [=](Generator& g, DType t, Device d) {
    return std::vector<Tensor>{random_tensor(x, g, t, d, -2.0, 3.0),
                               random_tensor({C}, g, t, d, 0.5, 1.5), random_tensor({C}, g, t, d),
                               random_tensor({C}, g, t, d, -0.5, 0.5),
                               random_tensor({C}, g, t, d, 0.5, 2.0)};
  };
  c.forward = [mode](const std::vector<Tensor>& v) {
    BatchNormOptions o;
    o.mode = mode;
    return std::vector<Tensor>{batch_norm2d(v[0], v[1], v[2], v[3], v[4], o)};
  };
  c.no_grad_inputs = {3, 4};
  c.consistency = kLongSums;
  return c;
}

OpCase pool_large(std::string name, Shape x, bool max) {
  OpCase c;
  c.name = std::move(name);
  c.op = max ? OpId::MaxPool2d : OpId::AdaptiveAvgPool2d;
  c.inputs = [=](Generator& g, DType t, Device d) {
    return std::vector<Tensor>{random_tensor(x, g, t, d)};
  };
  c.forward = [max](const std::vector<Tensor>& v) {
    if (max) {
      MaxPool2dOptions o;
      o.kernel = {3, 3};
      o.stride = Size2{2, 2};
      o.padding = {1, 1};
      return std::vector<Tensor>{max_pool2d(v[0], o)};
    }
    return std::vector<Tensor>{adaptive_avg_pool2d(v[0], {14, 14})};
  };
  c.consistency = kLongSums;
  return c;
}

Tensor add_fn(const Tensor& a, const Tensor& b) { return add(a, b); }
Tensor mul_fn(const Tensor& a, const Tensor& b) { return mul(a, b); }
Tensor div_fn(const Tensor& a, const Tensor& b) { return div(a, b); }
Tensor sub_fn(const Tensor& a, const Tensor& b) { return sub(a, b); }

std::vector<OpCase> large_cases() {
  std::vector<OpCase> cases{
      binary("add/bias_rows_tiled8", OpId::Add, {2048, 96}, {96}, add_fn),
      binary("sub/column_warp_per_element", OpId::Sub, {2000, 40}, {2000, 1}, sub_fn),
      binary("mul/long_rows_block_per_element", OpId::Mul, {3, 5000}, {3, 1}, mul_fn),
      binary("mul/few_columns_many_rows", OpId::Mul, {8192, 4}, {4}, mul_fn),
      binary("div/scalar_of_large", OpId::Div, {300, 70}, {}, div_fn),
      binary("add/rank6_both_broadcast", OpId::Add, {2, 1, 3, 4, 1, 5}, {3, 1, 7, 5}, add_fn),
      reduction("sum/long_rows_block", OpId::Sum, {3, 5000}, {-1}),
      reduction("sum/many_rows_warp", OpId::Sum, {2000, 50}, {-1}),
      reduction("sum/columns_tiled8", OpId::Sum, {64, 40}, {0}),
      reduction("mean/few_long_columns", OpId::Mean, {5000, 3}, {0}),
      reduction("sum/everything_large", OpId::Sum, {257, 129}, {}),
      normalised("softmax/vocab_rows_block", OpId::Softmax, {4, 3001}, -1, false),
      normalised("log_softmax/masked_vocab_rows_block", OpId::LogSoftmax, {3, 1500}, -1, true),
      normalised("softmax/masked_short_rows_warp", OpId::Softmax, {700, 49}, -1, true),
      normalised("softmax/inner_axis_columns", OpId::Softmax, {3, 300, 40}, 1, false),
      // The vectorised rows (unmasked, a multiple of 4, at most 16,384).
      normalised("log_softmax/decode_step_64x10000_vec", OpId::LogSoftmax, {64, 10000}, -1, false),
      normalised("softmax/one_quad_per_thread_vec", OpId::Softmax, {5, 1024}, -1, false),
      cross_entropy_rows("cross_entropy/vocab_5003_int64", 6, 5003, DType::I64),
      cross_entropy_rows("cross_entropy/vocab_10000_int32", 40, 10000, DType::I32),
      cross_entropy_rows("cross_entropy/many_rows_small_vocab", 3000, 37, DType::I64),
      // The vectorised rows: exactly one float4 per thread; beyond the registers' 16,384
      // classes (the scalar path again).
      cross_entropy_rows("cross_entropy/vocab_1024_one_quad_per_thread", 7, 1024, DType::I64),
      cross_entropy_rows("cross_entropy/vocab_20000_beyond_registers", 4, 20000, DType::I64),
  };
  // Logits 4 bytes past a 16-byte boundary: the scalar path, not misaligned float4 loads.
  OpCase ce_offset;
  ce_offset.name = "cross_entropy/logits_not_16_byte_aligned";
  ce_offset.op = OpId::CrossEntropy;
  ce_offset.inputs = [](Generator& g, DType t, Device d) {
    const int64_t n = 5, v = 2048;
    std::vector<int64_t> targets(n);
    for (int64_t r = 0; r < n; ++r) targets[r] = r == 2 ? -100 : (r * 7919) % v;
    return std::vector<Tensor>{random_tensor({n * v + 1}, g, t, d, -2.0, 2.0),
                               Tensor::from_vector<int64_t>(targets, {n}).to(d)};
  };
  ce_offset.forward = [](const std::vector<Tensor>& x) {
    const int64_t n = x[1].size(0);
    const Tensor logits = x[0].narrow(0, 1, x[0].size(0) - 1).reshape({n, -1});
    return std::vector<Tensor>{cross_entropy(logits, x[1])};
  };
  ce_offset.consistency = kLongSums;
  cases.push_back(ce_offset);
  const Conv2dOptions same3{{1, 1}, {1, 1}, {1, 1}};
  cases.push_back(conv_large("conv2d/resnet_3x3_64", {4, 64, 28, 28}, {64, 64, 3, 3}, false, same3));
  cases.push_back(conv_large("conv2d/resnet_stem_7x7_s2", {2, 3, 112, 112}, {64, 3, 7, 7}, false,
                             Conv2dOptions{{2, 2}, {3, 3}, {1, 1}}));
  cases.push_back(conv_large("conv2d/downsample_1x1_s2", {2, 256, 28, 28}, {512, 256, 1, 1}, false,
                             Conv2dOptions{{2, 2}, {0, 0}, {1, 1}}));
  cases.push_back(conv_large("conv2d/bottleneck_1x1_bias", {3, 512, 14, 14}, {128, 512, 1, 1}, true,
                             Conv2dOptions{}));
  cases.push_back(batch_norm_large("batch_norm2d/train_64x56x56", {4, 64, 56, 56},
                                   BatchNormOptions::Mode::Train));
  cases.push_back(batch_norm_large("batch_norm2d/eval_2048x7x7", {8, 2048, 7, 7},
                                   BatchNormOptions::Mode::Eval));
  cases.push_back(pool_large("max_pool2d/resnet_stem", {2, 64, 112, 112}, true));
  cases.push_back(pool_large("adaptive_avg_pool2d/7_to_14", {4, 512, 7, 7}, false));
  OpCase lin;
  lin.name = "linear/bias_grad_tiled8";
  lin.op = OpId::Linear;
  lin.inputs = [](Generator& g, DType t, Device d) {
    return std::vector<Tensor>{random_tensor({300, 64}, g, t, d), random_tensor({33, 64}, g, t, d),
                               random_tensor({33}, g, t, d)};
  };
  lin.forward = [](const std::vector<Tensor>& v) { return std::vector<Tensor>{linear(v[0], v[1], v[2])}; };
  lin.consistency = kLongSums;
  cases.push_back(lin);
  OpCase shared_a;
  shared_a.name = "matmul/shared_a_batch_sum";
  shared_a.op = OpId::Matmul;
  shared_a.inputs = [](Generator& g, DType t, Device d) {
    return std::vector<Tensor>{random_tensor({17, 9}, g, t, d), random_tensor({6, 9, 11}, g, t, d)};
  };
  shared_a.forward = [](const std::vector<Tensor>& v) { return std::vector<Tensor>{matmul(v[0], v[1])}; };
  shared_a.consistency = kLongSums;
  cases.push_back(shared_a);
  OpCase shared_b_t;
  shared_b_t.name = "matmul/transposed_a_shared_b_batch_sum";
  shared_b_t.op = OpId::Matmul;
  shared_b_t.inputs = [](Generator& g, DType t, Device d) {
    return std::vector<Tensor>{random_tensor({5, 13, 7}, g, t, d), random_tensor({13, 10}, g, t, d)};
  };
  shared_b_t.forward = [](const std::vector<Tensor>& v) {
    return std::vector<Tensor>{matmul(v[0], v[1], {Trans::Yes, Trans::No})};
  };
  shared_b_t.consistency = kLongSums;
  cases.push_back(shared_b_t);
  OpCase copy;
  copy.name = "copy/large_rank4_permuted";
  copy.op = OpId::Copy;
  copy.inputs = [](Generator& g, DType t, Device d) {
    return std::vector<Tensor>{random_tensor({7, 33, 5, 64}, g, t, d)};
  };
  copy.forward = [](const std::vector<Tensor>& x) {
    return std::vector<Tensor>{x[0].permute({3, 1, 0, 2}).contiguous()};
  };
  cases.push_back(copy);
  return cases;
}

class CudaPaths : public ::testing::TestWithParam<size_t> {};

// The case's tolerance with atol raised to 2e-5 of the reference's largest magnitude.
Tolerance scaled(Tolerance t, const Tensor& ref) {
  double largest = 0;
  for (double v : ref.to(Device::cpu()).to(DType::F64).contiguous().to_vector<double>())
    largest = std::max(largest, std::abs(v));
  t.atol = std::max(t.atol, 2e-5 * largest);
  return t;
}

TEST_P(CudaPaths, CudaMatchesCpu) {
  CAPTION_REQUIRE_CUDA_OR_SKIP();
  const OpCase c = large_cases()[GetParam()];
  CaseRun cpu = run_case(c, 41, DType::F32, Device::cpu());
  CaseRun gpu = run_case(c, 41, DType::F32, Device::cuda(0));
  ASSERT_EQ(cpu.outputs.size(), gpu.outputs.size());
  for (size_t i = 0; i < cpu.outputs.size(); ++i)
    EXPECT_TRUE(allclose(gpu.outputs[i], cpu.outputs[i], scaled(c.consistency, cpu.outputs[i]),
                         str(c.name, " output ", i)));
  for (size_t i = 0; i < cpu.grads.size(); ++i) {
    if (!cpu.grads[i].defined()) continue;
    EXPECT_TRUE(allclose(gpu.grads[i], cpu.grads[i], scaled(c.consistency, cpu.grads[i]),
                         str(c.name, " gradient of input ", i)));
  }
}

std::string case_name(const ::testing::TestParamInfo<size_t>& info) {
  std::string n = large_cases()[info.param].name;
  for (char& ch : n)
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return n;
}

INSTANTIATE_TEST_SUITE_P(LargeShapes, CudaPaths, ::testing::Range<size_t>(0, large_cases().size()),
                         case_name);

// max_last with NaNs and ties, on rows longer than a block: a NaN is the maximum (the
// first NaN), equal maxima give the first index, exactly as on the CPU.
TEST(CudaMaxLast, NaNAndTiesAsOnTheCpu) {
  CAPTION_REQUIRE_CUDA_OR_SKIP();
  const int64_t rows = 6, cols = 3001;
  std::vector<float> v(rows * cols);
  for (int64_t i = 0; i < rows * cols; ++i) v[i] = static_cast<float>((i * 7919) % 13) - 6.0f;
  v[1 * cols + 2999] = std::nanf("");
  v[1 * cols + 5] = 100.0f;
  v[2 * cols + 7] = std::nanf("");
  v[2 * cols + 2000] = std::nanf("");
  v[3 * cols + 0] = 50.0f;
  v[3 * cols + 3000] = 50.0f;
  const Tensor x = Tensor::from_vector<float>(v, {rows, cols});
  const MaxResult cpu = max_last(x), gpu = max_last(x.to(Device::cuda(0)));
  EXPECT_EQ(gpu.indices.to_vector<int64_t>(), cpu.indices.to_vector<int64_t>());
  const std::vector<float> cv = cpu.values.to_vector<float>(), gv = gpu.values.to_vector<float>();
  for (int64_t r = 0; r < rows; ++r)
    EXPECT_TRUE(cv[r] == gv[r] || (std::isnan(cv[r]) && std::isnan(gv[r]))) << "row " << r;
  EXPECT_EQ(cpu.indices.to_vector<int64_t>()[1], 2999);
  EXPECT_EQ(cpu.indices.to_vector<int64_t>()[2], 7);
  EXPECT_EQ(cpu.indices.to_vector<int64_t>()[3], 0);
}

// bfloat16 tensors on the device (the NHWC ops' storage): a fill and a strided copy of
// 2-byte elements (a transposed NHWC map made contiguous).
TEST(CudaPaths, Bfloat16StorageFillsAndCopies) {
  CAPTION_REQUIRE_CUDA_OR_SKIP();
  const Device d = Device::cuda(0);
  const Tensor t = Tensor::full({3, 5}, -2.5, DType::BF16, d);
  for (float v : t.to_vector<float>()) EXPECT_EQ(v, -2.5f);
  const Tensor b = Tensor::from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3}).to(DType::BF16).to(d);
  const Tensor c = b.transpose(0, 1).contiguous();
  EXPECT_TRUE(c.device().is_cuda());
  EXPECT_EQ(c.to_vector<float>(), (std::vector<float>{1, 4, 2, 5, 3, 6}));
}

}  // namespace
}  // namespace caption::testing
