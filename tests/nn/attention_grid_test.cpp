// Attending over the distinct cells of a repeated encoder map (nn::AttentionGrid) is
// the general path's arithmetic with less work: encode_distinct's features expand to
// exactly encode()'s; the decoder's logits, alphas (reported on the full grid), loss and
// every gradient, and greedy and beam decoding, agree with the full-grid features to
// float32 rounding; grids that do not divide keep the general path; position counts
// that fit no grid are refused by name.
#include <gtest/gtest.h>

#include <cmath>

#include "nn/caption_model.h"
#include "tests/harness/expect_error.h"

namespace caption::nn {
namespace {

// image 64 -> a 2x2 ResNet map; encoder_size 4 repeats each cell 2x2.
ModelConfig grid_config(int encoder_size) {
  ModelConfig c;
  c.encoder = "resnet18";
  c.encoder_size = encoder_size;
  c.image_size = 64;
  c.vocab_size = 13;
  c.embed_dim = 8;
  c.decoder_dim = 12;
  c.attention_dim = 10;
  c.dropout = 0.0;
  c.max_decode_len = 6;
  c.text = {{"lowercase", true}};
  return c;
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  EXPECT_EQ(a.shape(), b.shape());
  const std::vector<float> x = a.contiguous().to_vector<float>(), y = b.contiguous().to_vector<float>();
  double m = 0;
  for (size_t i = 0; i < x.size() && i < y.size(); ++i) m = std::max(m, std::abs(double{x[i]} - y[i]));
  return m;
}

CaptionBatch batch3() {
  CaptionBatch b;
  b.captions = Tensor::from_vector<int64_t>({1, 5, 6, 7, 8, 2, 1, 9, 4, 2, 0, 0, 1, 12, 2, 0, 0, 0}, {3, 6});
  b.lengths = {6, 4, 3};
  return b;
}

TEST(AttentionGrid, ClassifiesPositionCounts) {
  EXPECT_FALSE(AttentionGrid::of(196, 14).compact());
  const AttentionGrid g = AttentionGrid::of(49, 14);
  EXPECT_TRUE(g.compact());
  EXPECT_EQ(g.repeat(), 2);
  EXPECT_EQ(AttentionGrid::of(4, 14).repeat(), 7);
  EXPECT_EQ(AttentionGrid::of(1, 14).repeat(), 14);
  EXPECT_ERROR_WITH(AttentionGrid::of(25, 14), "neither the 14x14 grid");  // 5 does not divide 14
  EXPECT_ERROR_WITH(AttentionGrid::of(50, 14), "features hold 50 positions");
  // One alpha row: each distinct value spread over its r x r cells, divided by r*r.
  const std::vector<float> row{0.1f, 0.2f, 0.3f, 0.4f};
  const std::vector<float> full = AttentionGrid::of(4, 4).expand(row.data());
  ASSERT_EQ(full.size(), 16u);
  EXPECT_FLOAT_EQ(full[0], 0.025f);
  EXPECT_FLOAT_EQ(full[5], 0.025f);
  EXPECT_FLOAT_EQ(full[2], 0.05f);
  EXPECT_FLOAT_EQ(full[15], 0.1f);
  float total = 0;
  for (float v : full) total += v;
  EXPECT_NEAR(total, 1.0f, 1e-6);
}

TEST(AttentionGrid, DistinctFeaturesAreTheRepeatedCells) {
  Generator g(1);
  CaptionModel m(grid_config(4), g);
  m.eval();
  const Tensor images = rand_normal({2, 3, 64, 64}, 0, 1, g);
  NoGradGuard ng;
  const Tensor full = m.encode(images);              // [2, 16, 512]
  const Tensor distinct = m.encode_distinct(images);  // [2, 4, 512]
  ASSERT_EQ(full.shape(), (Shape{2, 16, 512}));
  ASSERT_EQ(distinct.shape(), (Shape{2, 4, 512}));
  const std::vector<float> f = full.to_vector<float>(), d = distinct.to_vector<float>();
  for (int b = 0; b < 2; ++b)
    for (int p = 0; p < 16; ++p) {
      const int q = (p / 4 / 2) * 2 + (p % 4) / 2;
      for (int k = 0; k < 512; k += 37)
        ASSERT_EQ(f[(b * 16 + p) * 512 + k], d[(b * 4 + q) * 512 + k]) << b << "," << p << "," << k;
    }
  // A grid the map does not divide (3 of 2) and the identity grid keep the general path.
  Generator g3(1);
  CaptionModel m3(grid_config(3), g3);
  m3.eval();
  EXPECT_EQ(m3.encode_distinct(images).shape(), (Shape{2, 9, 512}));
  Generator g2(1);
  CaptionModel m2(grid_config(2), g2);
  m2.eval();
  EXPECT_EQ(max_abs_diff(m2.encode_distinct(images), m2.encode(images)), 0.0);
}

TEST(AttentionGrid, DecoderForwardLossAndGradientsMatchTheFullGrid) {
  Generator g(2);
  CaptionModel m(grid_config(4), g);
  m.eval();
  const Tensor images = rand_normal({3, 3, 64, 64}, 0, 1, g);
  Tensor full, distinct;
  {
    NoGradGuard ng;
    full = m.encode(images);
    distinct = m.encode_distinct(images);
  }
  auto run = [&](const Tensor& features) {
    for (const auto& r : m.named_parameters()) r.tensor->zero_grad();
    Generator gen(0);
    DecoderOutput out = m.decoder.forward(features, batch3(), 1.0, gen);
    LossParts loss = caption_loss(out, 1.0);
    loss.total.backward();
    std::vector<Tensor> grads;
    for (const auto& r : m.decoder.named_parameters("decoder")) grads.push_back(r.tensor->grad().clone());
    return std::make_tuple(out, loss.total.item(), grads);
  };
  auto [out_full, loss_full, grads_full] = run(full);
  auto [out_distinct, loss_distinct, grads_distinct] = run(distinct);
  EXPECT_EQ(out_distinct.alphas.shape(), (Shape{3, 5, 16}));  // reported on the full grid
  EXPECT_LT(max_abs_diff(out_distinct.logits, out_full.logits), 1e-5);
  EXPECT_LT(max_abs_diff(out_distinct.alphas, out_full.alphas), 1e-6);
  EXPECT_NEAR(loss_distinct, loss_full, 1e-5 * std::abs(loss_full));
  ASSERT_EQ(grads_full.size(), grads_distinct.size());
  const auto params = m.decoder.named_parameters("decoder");
  for (size_t i = 0; i < grads_full.size(); ++i) {
    const std::vector<float> a = grads_full[i].to_vector<float>();
    double scale = 1e-30;
    for (float v : a) scale = std::max(scale, double{std::abs(v)});
    EXPECT_LT(max_abs_diff(grads_distinct[i], grads_full[i]), 1e-4 * scale + 1e-7) << params[i].name;
  }
}

TEST(AttentionGrid, DecodingMatchesTheFullGrid) {
  Generator g(3);
  CaptionModel m(grid_config(4), g);
  m.eval();
  const Tensor images = rand_normal({3, 3, 64, 64}, 0, 1, g);
  NoGradGuard ng;
  const Tensor full = m.encode(images), distinct = m.encode_distinct(images);
  for (const DecodeOptions& o : {DecodeOptions{6, 1, 0.0}, DecodeOptions{6, 3, 0.0}}) {
    const auto a = decode(m.decoder, full, o), b = decode(m.decoder, distinct, o);
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) {
      EXPECT_EQ(b[i].tokens, a[i].tokens);
      EXPECT_NEAR(b[i].score, a[i].score, 1e-5 * (1 + std::abs(a[i].score)));
      ASSERT_EQ(b[i].attention.size(), a[i].attention.size());
      for (size_t w = 0; w < a[i].attention.size(); ++w) {
        ASSERT_EQ(b[i].attention[w].size(), 16u);
        for (size_t p = 0; p < 16; ++p) EXPECT_NEAR(b[i].attention[w][p], a[i].attention[w][p], 1e-6);
      }
    }
  }
}

TEST(AttentionGrid, FeaturesThatFitNoGridAreRefused) {
  Generator g(4);
  CaptionModel m(grid_config(4), g);
  const Tensor features = rand_normal({3, 5, 512}, 0, 1, g);
  Generator gen(0);
  EXPECT_ERROR_WITH(m.decoder.forward(features, batch3(), 1.0, gen), "features hold 5 positions");
  EXPECT_ERROR_WITH(m.decoder.init_state(features), "features hold 5 positions");
}

}  // namespace
}  // namespace caption::nn
