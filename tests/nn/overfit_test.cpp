// The sanity check of the original project: a small decoder overfits one batch. The
// training loss must fall below 0.05 within a bounded number of AdamW steps, and greedy
// decoding must then reproduce the reference captions word for word.
#include <gtest/gtest.h>

#include "nn/caption_model.h"
#include "nn/optim.h"
#include "tests/harness/harness.h"

namespace caption::nn {
namespace {

TEST(Overfit, OneBatchIsLearnedAndDecodedBack) {
  ModelConfig c;
  c.encoder = "resnet18";
  c.encoder_size = 2;
  c.vocab_size = 14;
  c.embed_dim = 16;
  c.decoder_dim = 32;
  c.attention_dim = 16;
  c.dropout = 0.0;
  Generator g(123);
  AttentionDecoder decoder(c, g);
  ParameterStore store;
  for (auto& r : decoder.named_parameters("decoder")) store.add(r.name, *r.tensor);
  store.finalize();
  AdamWConfig opt_config;
  opt_config.lr = 3e-3;
  AdamW optimizer(store, opt_config);

  // Four images (random features) with captions of unequal length, longest first.
  const Tensor features = rand_normal({4, 4, 512}, 0, 1, g);
  const std::vector<std::vector<int64_t>> words{{4, 5, 6, 7, 8, 9}, {10, 11, 4, 12}, {13, 5, 9}, {6, 6}};
  CaptionBatch batch;
  std::vector<int64_t> flat;
  const int64_t L = 8;
  for (const auto& w : words) {
    std::vector<int64_t> row{kSosId};
    row.insert(row.end(), w.begin(), w.end());
    row.push_back(kEosId);
    batch.lengths.push_back(static_cast<int64_t>(row.size()));
    row.resize(L, kPadId);
    flat.insert(flat.end(), row.begin(), row.end());
  }
  batch.captions = Tensor::from_vector<int64_t>(flat, {4, L});

  double loss = 1e9;
  int steps = 0;
  decoder.train();
  for (; steps < 600 && loss >= 0.05; ++steps) {
    optimizer.zero_grad();
    DecoderOutput out = decoder.forward(features, batch, 1.0, g);
    LossParts parts = caption_loss(out, 0.0);
    loss = parts.total.item();
    parts.total.backward();
    optimizer.step();
  }
  EXPECT_LT(loss, 0.05) << "after " << steps << " steps";
  decoder.eval();
  const std::vector<DecodedCaption> decoded = greedy_decode(decoder, features, 10);
  for (size_t i = 0; i < words.size(); ++i) {
    EXPECT_EQ(decoded[i].tokens, words[i]) << "caption " << i;
    EXPECT_TRUE(decoded[i].finished);
  }
}

}  // namespace
}  // namespace caption::nn
