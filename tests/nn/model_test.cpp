// The captioning model on small random configurations: shapes and names of MODEL_SPEC
// section 7, packing, the loss, decoding rules of section 6, checkpoints.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>

#include <filesystem>

#include "nn/checkpoint.h"
#include "tests/harness/harness.h"
#include "tests/harness/scratch.h"

namespace caption::nn {
namespace {

ModelConfig tiny_config() {
  ModelConfig c;
  c.encoder = "resnet18";
  c.encoder_size = 2;
  c.image_size = 32;
  c.vocab_size = 11;
  c.embed_dim = 6;
  c.decoder_dim = 8;
  c.attention_dim = 5;
  c.dropout = 0.0;
  c.max_decode_len = 6;
  c.text = {{"lowercase", true}};
  return c;
}

std::string tmp(const std::string& name) {
  return (caption::testing::scratch_dir("nn_model") / name).string();
}

std::vector<std::string> tiny_vocab(int n) {
  std::vector<std::string> v{"<pad>", "<sos>", "<eos>", "<unk>"};
  for (int i = 4; i < n; ++i) v.push_back(str("w", i));
  return v;
}

TEST(CaptionModel, TensorNamesAndShapesFollowTheSpec) {
  Generator g(1);
  ModelConfig c = tiny_config();
  CaptionModel m(c, g);
  std::map<std::string, Shape> shapes;
  for (const auto& r : m.named_state()) shapes[r.name] = r.tensor->shape();
  const int64_t D = 512, V = 11, E = 6, H = 8, A = 5;
  EXPECT_EQ(shapes.at("decoder.embedding.weight"), (Shape{V, E}));
  EXPECT_EQ(shapes.at("decoder.encoder_att.weight"), (Shape{A, D}));
  EXPECT_EQ(shapes.at("decoder.decoder_att.weight"), (Shape{A, H}));
  EXPECT_EQ(shapes.at("decoder.full_att.weight"), (Shape{1, A}));
  EXPECT_EQ(shapes.at("decoder.full_att.bias"), (Shape{1}));
  EXPECT_EQ(shapes.at("decoder.init_h.weight"), (Shape{H, D}));
  EXPECT_EQ(shapes.at("decoder.init_c.bias"), (Shape{H}));
  EXPECT_EQ(shapes.at("decoder.f_beta.weight"), (Shape{D, H}));
  EXPECT_EQ(shapes.at("decoder.lstm.weight_ih"), (Shape{4 * H, E + D}));
  EXPECT_EQ(shapes.at("decoder.lstm.weight_hh"), (Shape{4 * H, H}));
  EXPECT_EQ(shapes.at("decoder.lstm.bias_ih"), (Shape{4 * H}));
  EXPECT_EQ(shapes.at("decoder.fc.weight"), (Shape{V, H}));
  EXPECT_EQ(shapes.at("encoder.conv1.weight"), (Shape{64, 3, 7, 7}));
  EXPECT_EQ(shapes.at("encoder.bn1.running_var"), (Shape{64}));
  EXPECT_EQ(shapes.at("encoder.layer2.0.downsample.0.weight"), (Shape{128, 64, 1, 1}));
  EXPECT_EQ(shapes.at("encoder.layer4.1.bn2.weight"), (Shape{512}));
  EXPECT_EQ(shapes.count("encoder.layer1.0.downsample.0.weight"), 0u);  // basic block, same shape
  // ResNet-18: 62 parameter tensors + 40 buffers in torchvision minus fc (2) = 100 - ...
  size_t encoder_tensors = 0;
  for (auto& [n, s] : shapes) encoder_tensors += n.rfind("encoder.", 0) == 0;
  EXPECT_EQ(encoder_tensors, 100u);  // torchvision resnet18 state_dict: 122 - fc (2) - num_batches_tracked (20)
}

TEST(CaptionModel, FineTuneModesFreezeTheRightParameters) {
  Generator g(1);
  ModelConfig c = tiny_config();
  c.fine_tune = FineTune::parse("from:3");
  CaptionModel m(c, g);
  for (const auto& r : m.named_parameters()) {
    const bool trains = r.name.rfind("decoder.", 0) == 0 || r.name.rfind("encoder.layer3", 0) == 0 ||
                        r.name.rfind("encoder.layer4", 0) == 0;
    EXPECT_EQ(r.tensor->requires_grad(), trains) << r.name;
  }
  EXPECT_THROW(FineTune::parse("from:1"), Error);
  EXPECT_THROW(FineTune::parse("some"), Error);
}

TEST(CaptionModel, EncoderGivesPositionMajorFeatures) {
  Generator g(2);
  CaptionModel m(tiny_config(), g);
  m.eval();
  Tensor images = rand_normal({2, 3, 32, 32}, 0, 1, g);
  Tensor f = m.encode(images);
  EXPECT_EQ(f.shape(), (Shape{2, 4, 512}));
  // Position p = row * S + col holds the pooled channel vector of that cell.
  Tensor maps = adaptive_avg_pool2d(m.encoder.forward(images), {2, 2});  // [2, 512, 2, 2]
  const std::vector<float> fv = f.to_vector<float>(), mv = maps.to_vector<float>();
  for (int b = 0; b < 2; ++b)
    for (int p = 0; p < 4; ++p)
      for (int d : {0, 17, 511})
        EXPECT_EQ(fv[(b * 4 + p) * 512 + d], mv[((b * 512 + d) * 2 + p / 2) * 2 + p % 2]);
}

TEST(CaptionModel, PackedForwardAndLoss) {
  Generator g(3);
  CaptionModel m(tiny_config(), g);
  Tensor feats = rand_normal({3, 4, 512}, 0, 1, g);
  CaptionBatch batch;
  batch.captions = Tensor::from_vector<int64_t>({1, 5, 6, 7, 2, 1, 8, 9, 2, 0, 1, 4, 2, 0, 0}, {3, 5});
  batch.lengths = {5, 4, 3};
  DecoderOutput out = m.decoder.forward(feats, batch, 1.0, g);
  EXPECT_EQ(out.batch_sizes, (std::vector<int64_t>{3, 3, 2, 1}));
  EXPECT_EQ(out.logits.shape(), (Shape{9, 11}));
  EXPECT_EQ(out.targets.to_vector<int64_t>(), (std::vector<int64_t>{5, 8, 4, 6, 9, 2, 7, 2, 2}));
  EXPECT_EQ(out.alphas.shape(), (Shape{3, 4, 4}));
  // Each active step's attention sums to 1; finished rows are zero.
  const std::vector<float> a = out.alphas.to_vector<float>();
  for (int b = 0; b < 3; ++b)
    for (int t = 0; t < 4; ++t) {
      float s = 0;
      for (int p = 0; p < 4; ++p) s += a[(b * 4 + t) * 4 + p];
      EXPECT_NEAR(s, t < batch.lengths[b] - 1 ? 1.0f : 0.0f, 1e-5) << b << "," << t;
    }
  LossParts loss = caption_loss(out, 1.0);
  EXPECT_NEAR(loss.total.item(), loss.cross_entropy.item() + loss.attention.item(), 1e-6);
  EXPECT_GT(loss.cross_entropy.item(), 0.0);
  loss.total.backward();
  EXPECT_TRUE(m.decoder.fc.weight.grad().defined());
  EXPECT_FALSE(m.encoder.conv1().weight.grad().defined());  // frozen encoder
  // Unsorted batches are refused.
  batch.lengths = {3, 4, 5};
  EXPECT_THROW(m.decoder.forward(feats, batch, 1.0, g), Error);
}

TEST(CaptionModel, ScheduledSamplingWithRatioOneEqualsTeacherForcing) {
  Generator g(4);
  CaptionModel m(tiny_config(), g);
  Tensor feats = rand_normal({2, 4, 512}, 0, 1, g);
  CaptionBatch batch;
  batch.captions = Tensor::from_vector<int64_t>({1, 5, 6, 2, 1, 7, 2, 0}, {2, 4});
  batch.lengths = {4, 3};
  Generator g1(9), g2(9);
  const Tensor a = m.decoder.forward(feats, batch, 1.0, g1).logits;
  // A ratio of zero feeds predictions back; the first step still reads <sos>.
  const Tensor b = m.decoder.forward(feats, batch, 0.0, g2).logits;
  EXPECT_TRUE(testing::allclose(b.narrow(0, 0, 2), a.narrow(0, 0, 2), {1e-6, 1e-5}, "step 1"));
}

// Scheduled sampling: from the second step on, each row's input word is, with
// probability 1 - ratio (one coin per row and step, in that order), the arg-max of its
// previous step's logits. Replaying the same coins on the host and feeding the words so
// chosen as teacher-forced captions gives the same logits.
TEST(CaptionModel, ScheduledSamplingFeedsThePreviousArgMaxWhereTheCoinSays) {
  for (double ratio : {0.0, 0.5}) {
    Generator g(4);
    CaptionModel m(tiny_config(), g);
    Tensor feats = rand_normal({3, 4, 512}, 0, 1, g);
    CaptionBatch batch;
    batch.captions = Tensor::from_vector<int64_t>({1, 5, 6, 7, 8, 2,  //
                                                   1, 7, 9, 5, 2, 0,  //
                                                   1, 6, 6, 2, 0, 0},
                                                  {3, 6});
    batch.lengths = {6, 5, 4};
    Generator run(21);
    const DecoderOutput out = m.decoder.forward(feats, batch, ratio, run);
    const int64_t V = out.logits.size(1);
    const std::vector<float> logits = out.logits.to_vector<float>();
    std::vector<int64_t> words = batch.captions.to_vector<int64_t>();
    Generator coins(21);
    int64_t offset = 0, predicted = 0;  // packed rows of the previous step; words fed
    for (size_t t = 0; t < out.batch_sizes.size(); ++t) {
      const int64_t bt = out.batch_sizes[t];
      if (t >= 1) {
        const int64_t previous = offset - out.batch_sizes[t - 1];
        for (int64_t b = 0; b < bt; ++b) {
          if (coins.uniform() < ratio) continue;
          const auto row = logits.begin() + (previous + b) * V;
          words[static_cast<size_t>(b * 6 + static_cast<int64_t>(t))] = std::max_element(row, row + V) - row;
          ++predicted;
        }
      }
      offset += bt;
    }
    EXPECT_GT(predicted, 0);
    CaptionBatch fed = batch;
    fed.captions = Tensor::from_vector<int64_t>(words, {3, 6});
    Generator unused(0);
    const Tensor expected = m.decoder.forward(feats, fed, 1.0, unused).logits;
    EXPECT_TRUE(testing::allclose(out.logits, expected, {1e-5, 1e-5}, "logits")) << "ratio " << ratio;
  }
}

// Beam search of width one is greedy decoding: the same tokens, and the same scores and
// attention up to the last bits (the batched products of greedy decoding and beam
// search's one-row products may run in different BLAS kernels, e.g. OpenBLAS's small-
// matrix kernels on AVX-512 machines, which sum in another order).
TEST(Decoding, BeamWidthOneEqualsGreedy) {
  for (uint64_t seed : {5u, 6u, 7u}) {
    Generator g(seed);
    CaptionModel m(tiny_config(), g);
    m.eval();
    Tensor feats = rand_normal({3, 4, 512}, 0, 1, g);
    auto greedy = greedy_decode(m.decoder, feats, 6);
    for (int b = 0; b < 3; ++b) {
      DecodedCaption beam = beam_search(m.decoder, feats.narrow(0, b, 1), {6, 1, 0.0});
      EXPECT_EQ(beam.tokens, greedy[b].tokens);
      EXPECT_TRUE(testing::near(beam.log_probs, greedy[b].log_probs, 1e-5, "log_probs"));
      EXPECT_EQ(beam.finished, greedy[b].finished);
      EXPECT_TRUE(testing::near(beam.attention, greedy[b].attention, 1e-6, "attention"));
    }
  }
}

TEST(Decoding, BeamReturnsBestLiveHypothesisWhenNothingFinishes) {
  Generator g(8);
  CaptionModel m(tiny_config(), g);
  m.eval();
  {
    NoGradGuard ng;
    Tensor bias = m.decoder.fc.bias;
    std::vector<float> b = bias.to_vector<float>();
    b[kEosId] = -1e4f;  // <eos> can never win
    bias.copy_(Tensor::from_vector<float>(b, bias.shape()));
  }
  Tensor feats = rand_normal({1, 4, 512}, 0, 1, g);
  DecodedCaption r = beam_search(m.decoder, feats, {5, 3, 0.0});
  EXPECT_FALSE(r.finished);
  EXPECT_EQ(r.steps, 5);
  EXPECT_LE(r.tokens.size(), 5u);
  // Its score is at least greedy's (beam search keeps the best sums).
  auto greedy = greedy_decode(m.decoder, feats, 5);
  EXPECT_GE(r.score, greedy[0].score - 1e-5);
  for (int64_t t : r.tokens) EXPECT_GE(t, kSpecialTokens);
  EXPECT_EQ(r.attention.size(), r.tokens.size());
  for (const auto& a : r.attention) EXPECT_EQ(a.size(), 4u);
}

// best_extensions against ordering every candidate, on log-probabilities drawn from a
// few values (many exact ties, within and across hypotheses) and scores that make
// candidates of different hypotheses tie too.
TEST(Decoding, BestExtensionsAreTheFirstOfAllCandidatesInOrder) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 200; ++trial) {
    const int64_t K = 1 + static_cast<int64_t>(rng() % 4), V = 1 + static_cast<int64_t>(rng() % 30);
    std::vector<double> scores(static_cast<size_t>(K));
    for (double& sc : scores) sc = -0.25 * static_cast<double>(rng() % 3);
    std::vector<float> lp(static_cast<size_t>(K * V));
    for (float& v : lp) v = -0.25f * static_cast<float>(rng() % 5);
    const int64_t take = static_cast<int64_t>(rng() % 7);
    std::vector<int64_t> all(static_cast<size_t>(K * V));
    std::iota(all.begin(), all.end(), 0);
    std::sort(all.begin(), all.end(), [&](int64_t a, int64_t b) {
      const double sa = scores[a / V] + lp[a], sb = scores[b / V] + lp[b];
      return sa != sb ? sa > sb : a < b;
    });
    all.resize(static_cast<size_t>(std::min(take, K * V)));
    ASSERT_EQ(best_extensions(scores, lp, V, take), all) << "trial " << trial;
  }
  EXPECT_THROW(best_extensions({0.0}, {1.0f, 2.0f}, 3, 1), Error);
}

TEST(Checkpoint, RoundTripIsBitExact) {
  Generator g(10);
  CaptionModel m(tiny_config(), g);
  const std::string path = tmp("model.safetensors");
  save_checkpoint(path, m, tiny_vocab(11));
  Checkpoint ck = load_checkpoint(path);
  EXPECT_EQ(ck.vocab, tiny_vocab(11));
  EXPECT_EQ(ck.config.to_json(), m.config().to_json());
  auto a = m.named_state(), b = ck.model->named_state();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].name, b[i].name);
    EXPECT_TRUE(testing::equal(*b[i].tensor, *a[i].tensor, a[i].name));
  }
}

TEST(Checkpoint, MismatchesAreRefusedByName) {
  Generator g(11);
  CaptionModel m(tiny_config(), g);
  const std::string path = tmp("bad.safetensors");
  auto expect_error = [&](const std::string& needle) {
    try {
      load_checkpoint(path);
      ADD_FAILURE() << "accepted; expected an error containing " << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("bad.safetensors"), std::string::npos) << e.what();
    }
  };
  auto write = [&](NamedTensors t, nlohmann::json config, std::vector<std::string> vocab) {
    save_tensors(path, t, {{"format", kCheckpointFormat}, {"config", config.dump()},
                           {"vocab", nlohmann::json(vocab).dump()}});
  };
  NamedTensors all;
  for (const auto& r : m.named_state()) all.emplace_back(r.name, *r.tensor);
  NamedTensors missing(all.begin() + 1, all.end());
  write(missing, m.config().to_json(), tiny_vocab(11));
  expect_error("missing tensor '" + all[0].first + "'");
  NamedTensors extra = all;
  extra.emplace_back("decoder.extra", Tensor::zeros({2}));
  write(extra, m.config().to_json(), tiny_vocab(11));
  expect_error("unexpected tensor 'decoder.extra'");
  NamedTensors wrong = all;
  for (auto& [n, t] : wrong)
    if (n == "decoder.fc.bias") t = Tensor::zeros({12});
  write(wrong, m.config().to_json(), tiny_vocab(11));
  expect_error("tensor 'decoder.fc.bias' has shape [12], the model expects [11]");
  write(all, m.config().to_json(), tiny_vocab(12));
  expect_error("vocab_size 11 but the vocabulary holds 12 tokens");
  nlohmann::json cfg = m.config().to_json();
  cfg.erase("embed_dim");
  write(all, cfg, tiny_vocab(11));
  expect_error("config misses 'embed_dim'");
  save_tensors(path, all, {{"format", "other/1"}});
  expect_error("checkpoint format 'other/1'");
}

}  // namespace
}  // namespace caption::nn
