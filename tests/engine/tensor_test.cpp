// Tensor basics: creation, views sharing storage, copies, dtype conversion, errors.
#include <gtest/gtest.h>

#include <cmath>

#include "engine/engine.h"
#include "tests/harness/harness.h"

namespace caption {
namespace {

TEST(Tensor, CreationShapesAndValues) {
  Tensor z = Tensor::zeros({2, 3});
  EXPECT_EQ(z.shape(), (Shape{2, 3}));
  EXPECT_EQ(z.numel(), 6);
  EXPECT_EQ(z.dtype(), DType::F32);
  EXPECT_TRUE(z.device().is_cpu());
  EXPECT_EQ(z.to_vector<float>(), std::vector<float>(6, 0.0f));
  Tensor f = Tensor::full({4}, 2.5, DType::F64);
  EXPECT_EQ(f.to_vector<double>(), std::vector<double>(4, 2.5));
  Tensor s = Tensor::scalar(3.0);
  EXPECT_EQ(s.dim(), 0);
  EXPECT_EQ(s.numel(), 1);
  EXPECT_DOUBLE_EQ(s.item(), 3.0);
  Tensor e = Tensor::empty({0, 5});
  EXPECT_EQ(e.numel(), 0);
}

TEST(Tensor, DataIsAligned) {
  for (int i = 0; i < 10; ++i) {
    Tensor t = Tensor::empty({i * 3 + 1});
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t.raw_data()) % 64, 0u);
  }
}

TEST(Tensor, ViewsShareStorage) {
  Tensor t = Tensor::from_vector<float>({0, 1, 2, 3, 4, 5}, {2, 3});
  Tensor tt = t.transpose(0, 1);
  EXPECT_FALSE(tt.is_contiguous());
  EXPECT_EQ(tt.shape(), (Shape{3, 2}));
  EXPECT_EQ(tt.to_vector<float>(), (std::vector<float>{0, 3, 1, 4, 2, 5}));
  Tensor row = t.select(0, 1);
  EXPECT_EQ(row.to_vector<float>(), (std::vector<float>{3, 4, 5}));
  Tensor col = t.narrow(1, 1, 2);
  EXPECT_EQ(col.to_vector<float>(), (std::vector<float>{1, 2, 4, 5}));
  // Writing through a view changes the base.
  col.fill_(9);
  EXPECT_EQ(t.to_vector<float>(), (std::vector<float>{0, 9, 9, 3, 9, 9}));
  EXPECT_EQ(t.reshape({3, 2}).storage(), t.storage());
  EXPECT_EQ(t.reshape({-1}).shape(), (Shape{6}));
  // A non-contiguous reshape copies.
  Tensor r = tt.reshape({6});
  EXPECT_NE(r.storage(), t.storage());
  EXPECT_EQ(r.to_vector<float>(), (std::vector<float>{0, 3, 9, 9, 9, 9}));
  EXPECT_EQ(t.unsqueeze(0).shape(), (Shape{1, 2, 3}));
  EXPECT_EQ(t.unsqueeze(-1).squeeze(2).shape(), (Shape{2, 3}));
  Tensor p = Tensor::zeros({2, 3, 4}).permute({2, 0, 1});
  EXPECT_EQ(p.shape(), (Shape{4, 2, 3}));
  EXPECT_EQ(p.strides(), (Shape{1, 12, 4}));
}

TEST(Tensor, CopiesAndConversions) {
  Tensor t = Tensor::from_vector<float>({1.5f, -2.25f, 3}, {3});
  Tensor c = t.clone();
  EXPECT_NE(c.storage(), t.storage());
  c.fill_(0);
  EXPECT_EQ(t.to_vector<float>()[0], 1.5f);
  Tensor d = t.to(DType::F64);
  EXPECT_EQ(d.dtype(), DType::F64);
  EXPECT_EQ(d.to_vector<double>(), (std::vector<double>{1.5, -2.25, 3}));
  Tensor i = t.to(DType::I64);
  EXPECT_EQ(i.to_vector<int64_t>(), (std::vector<int64_t>{1, -2, 3}));
  Tensor dst = Tensor::zeros({3, 2});
  dst.transpose(0, 1).copy_(Tensor::from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3}));
  EXPECT_EQ(dst.to_vector<float>(), (std::vector<float>{1, 4, 2, 5, 3, 6}));
}

// bfloat16 is a storage type (engine/ops/nhwc.h): 2-byte elements, filled and converted
// through float32 with round-to-nearest-even, read back exactly.
TEST(Tensor, Bfloat16StorageFillsAndConverts) {
  const Tensor t = Tensor::full({3, 5}, 1.0 + 1.0 / 256, DType::BF16);  // a tie: rounds to 1
  EXPECT_EQ(t.nbytes(), 30u);
  for (float v : t.to_vector<float>()) EXPECT_EQ(v, 1.f);
  const Tensor f = Tensor::from_vector<float>({0.5f, -3.f, 1.f + 3.f / 256}, {3});
  EXPECT_EQ(f.to(DType::BF16).to(DType::F32).to_vector<float>(),
            (std::vector<float>{0.5f, -3.f, 1.f + 1.f / 64}));
  EXPECT_EQ(t.to(DType::BF16).dtype(), DType::BF16);
  // A strided copy moves 2-byte elements (a transposed view made contiguous).
  const Tensor b = Tensor::from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3}).to(DType::BF16);
  EXPECT_EQ(b.transpose(0, 1).contiguous().to_vector<float>(), (std::vector<float>{1, 4, 2, 5, 3, 6}));
}

TEST(Tensor, BadUseIsRefusedWithAClearMessage) {
  Tensor t = Tensor::zeros({2, 3});
  try {
    (void)t.reshape({4, 2});
    FAIL() << "reshape to a wrong size was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("reshape [2, 3]"), std::string::npos) << e.what();
  }
  EXPECT_THROW((void)t.narrow(1, 2, 2), Error);
  EXPECT_THROW((void)t.select(0, 2), Error);
  EXPECT_THROW((void)t.permute({0, 0}), Error);
  EXPECT_THROW((void)t.squeeze(0), Error);
  EXPECT_THROW((void)Tensor::empty({-1}), Error);
  EXPECT_THROW((void)t.data<double>(), Error);
  EXPECT_THROW((void)t.item(), Error);
  EXPECT_THROW((void)Tensor().shape(), Error);
  EXPECT_THROW(Tensor::from_vector<float>({1, 2, 3}, {2, 2}), Error);
  Tensor ids = Tensor::zeros({2}, DType::I64);
  EXPECT_THROW(ids.set_requires_grad(true), Error);
}

TEST(Device, ProbingWithoutAGpuReportsZeroNotACrash) {
  const int n = cuda_device_count();
  EXPECT_GE(n, 0);
  EXPECT_FALSE(cuda_probe_message().empty());
  EXPECT_TRUE(parse_device("cpu").is_cpu());
  EXPECT_EQ(parse_device("auto").is_cuda(), n > 0);
  EXPECT_THROW(parse_device("gpu"), Error);
  EXPECT_THROW(parse_device("cuda:x"), Error);
  if (n == 0) {
    try {
      parse_device("cuda");
      FAIL() << "cuda accepted without a GPU";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("no such CUDA device"), std::string::npos) << e.what();
    }
  }
}

TEST(Random, PhiloxMatchesTheReferenceVectors) {
  // Known-answer tests of Philox4x32-10 from the Random123 distribution (kat_vectors):
  // counter 0, key 0 -> 6627e8d5 e169c58d bc57ac4c 9b00dbd8.
  const kernels::Philox4 r = kernels::philox4x32_10(0, 0);
  EXPECT_EQ(r.v[0], 0x6627e8d5u);
  EXPECT_EQ(r.v[1], 0xe169c58du);
  EXPECT_EQ(r.v[2], 0xbc57ac4cu);
  EXPECT_EQ(r.v[3], 0x9b00dbd8u);
}

TEST(Random, StreamsDependOnlyOnSeedAndOffset) {
  Generator a(42), b(42), c(43);
  const Tensor ta = rand_uniform({100}, 0, 1, a);
  const Tensor tb = rand_uniform({100}, 0, 1, b);
  EXPECT_TRUE(testing::equal(ta, tb, "same seed"));
  EXPECT_FALSE(testing::equal(ta, rand_uniform({100}, 0, 1, c), "other seed"));
  EXPECT_EQ(a.offset(), 25u);  // 100 words = 25 counters
  Generator d(42);
  d.set_state(42, 25);
  EXPECT_EQ(d.uniform(), a.uniform());
  // Normal draws have the right moments.
  Generator g(7);
  const std::vector<double> n = rand_normal({20000}, 1.0, 2.0, g, DType::F64).to_vector<double>();
  double m = 0, v = 0;
  for (double x : n) m += x;
  m /= n.size();
  for (double x : n) v += (x - m) * (x - m);
  v /= n.size();
  EXPECT_NEAR(m, 1.0, 0.05);
  EXPECT_NEAR(std::sqrt(v), 2.0, 0.05);
}

}  // namespace
}  // namespace caption

namespace caption {
namespace {

// Error messages describe tensors by dtype, shape and device; bfloat16 included (its name
// used to be read past the end of the dtype names).
TEST(Tensor, DescribeNamesEveryDtype) {
  const Tensor x = Tensor::zeros({2, 3});
  EXPECT_EQ(x.describe(), "float32[2, 3] on cpu");
  EXPECT_EQ(x.to(DType::F64).describe(), "float64[2, 3] on cpu");
  EXPECT_EQ(x.to(DType::I32).describe(), "int32[2, 3] on cpu");
  EXPECT_EQ(x.to(DType::I64).describe(), "int64[2, 3] on cpu");
  EXPECT_EQ(x.to(DType::BF16).describe(), "bfloat16[2, 3] on cpu");
  EXPECT_EQ(Tensor().describe(), "undefined tensor");
}

TEST(Tensor, ToHostOfHostTensorsIsTheirContiguousValues) {
  const Tensor x = Tensor::from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3});
  const std::vector<Tensor> back = Tensor::to_host({x.permute({1, 0}), x});
  ASSERT_EQ(back.size(), 2u);
  EXPECT_TRUE(back[0].is_contiguous());
  EXPECT_EQ(back[0].to_vector<float>(), (std::vector<float>{1, 4, 2, 5, 3, 6}));
  EXPECT_EQ(back[1].to_vector<float>(), x.to_vector<float>());
  EXPECT_TRUE(Tensor::to_host({}).empty());
  EXPECT_THROW(Tensor::to_host({x, Tensor()}), Error);
}

}  // namespace
}  // namespace caption
