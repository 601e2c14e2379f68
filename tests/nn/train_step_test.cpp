// The pieces of the recordable training step (nn/train_graph.h), on the CPU: the padded
// loss against the packed one, the optimiser's two-half step against step(), clipping
// on the device against clip_grad_norm, and TrainStep's eager steps. The recording
// itself is tested on a device in cuda_train_graph_test.cpp.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>

#include "nn/caption_model.h"
#include "nn/optim.h"
#include "nn/parameters.h"
#include "nn/train_graph.h"
#include "tests/harness/expect_error.h"
#include "tests/nn/small_decoder.h"

namespace caption::nn {
namespace {

// ||got - ref|| / max(||ref||, 1e-2): relative, except for gradients that are zero but
// for rounding (the attention score's bias: a softmax ignores a shift of all scores).
double rel_error(const Tensor& got, const Tensor& ref) {
  const std::vector<double> g = got.to(DType::F64).contiguous().to_vector<double>();
  const std::vector<double> r = ref.to(DType::F64).contiguous().to_vector<double>();
  EXPECT_EQ(g.size(), r.size());
  double diff = 0, norm = 0;
  for (size_t i = 0; i < g.size() && i < r.size(); ++i) {
    diff += (g[i] - r[i]) * (g[i] - r[i]);
    norm += r[i] * r[i];
  }
  return std::sqrt(diff) / std::max(std::sqrt(norm), 1e-2);
}

using testing::small_decoder_config;
ModelConfig decoder_config(double dropout) { return small_decoder_config(dropout); }
CaptionBatch caption_batch() { return testing::three_captions(); }

struct Grads {
  Tensor loss, ce, att, features;
  std::vector<Tensor> params;
};

Grads grads_of(AttentionDecoder& d, const Tensor& features_in, const std::function<LossParts(const Tensor&)>& loss_of) {
  for (auto& p : d.named_parameters()) p.tensor->set_grad(Tensor());
  const Tensor features = features_in.detach().clone().set_requires_grad(true);
  const LossParts loss = loss_of(features);
  loss.total.backward();
  Grads g{loss.total, loss.cross_entropy, loss.attention, features.grad(), {}};
  for (auto& p : d.named_parameters()) g.params.push_back(p.tensor->grad().clone());
  return g;
}

// The padded loss is the packed loss: same value and gradients (every parameter and the
// features), on the full grid and on the distinct cells, with steps padded past the
// batch's own. Float sums in other orders: relative 1e-6 on values, 1e-5 on gradients.
TEST(PaddedLoss, EqualsThePackedLossAndGradients) {
  Generator init(3);
  AttentionDecoder d(decoder_config(0.0), init);
  d.train();
  const CaptionBatch batch = caption_batch();
  for (int64_t positions : {4, 1}) {  // S = 2: the 2x2 grid, or its 1x1 distinct cell
    SCOPED_TRACE(positions);
    Generator g(9);
    const Tensor features = rand_normal({3, positions, 512}, 0, 1, g);
    const Grads packed = grads_of(d, features, [&](const Tensor& f) {
      Generator gen(1);
      return caption_loss(d.forward(f, batch, 1.0, gen), 1.0);
    });
    for (int64_t steps : {6, 9}) {
      SCOPED_TRACE(steps);
      const PaddedBatch pb = PaddedBatch::of(batch, steps, Device::cpu());
      const Grads padded = grads_of(d, features, [&](const Tensor& f) {
        Generator gen(1);
        return d.padded_loss(f, pb, 1.0, gen);
      });
      EXPECT_LT(rel_error(padded.loss, packed.loss), 1e-6);
      EXPECT_LT(rel_error(padded.ce, packed.ce), 1e-6);
      EXPECT_LT(rel_error(padded.att, packed.att), 1e-6);
      EXPECT_LT(rel_error(padded.features, packed.features), 1e-5);
      ASSERT_EQ(padded.params.size(), packed.params.size());
      for (size_t i = 0; i < packed.params.size(); ++i)
        EXPECT_LT(rel_error(padded.params[i], packed.params[i]), 1e-5) << d.named_parameters()[i].name;
    }
  }
}

TEST(PaddedLoss, BatchLayoutAndRefusals) {
  const PaddedBatch pb = PaddedBatch::of(caption_batch(), 7, Device::cpu());
  EXPECT_EQ(pb.words.shape(), (Shape{7, 3}));
  // Step 4: rows 0 and 1 still decode (lengths 7 and 5 give 6 and 4 steps), row 2 ended.
  EXPECT_EQ(pb.words.select(0, 3).to_vector<int64_t>(), (std::vector<int64_t>{7, 11, 0}));
  EXPECT_EQ(pb.targets.narrow(0, 9, 3).to_vector<int64_t>(), (std::vector<int64_t>{8, 2, 0}));
  EXPECT_EQ(pb.active.reshape({21}).narrow(0, 9, 3).to_vector<float>(), (std::vector<float>{1, 1, 0}));
  EXPECT_FLOAT_EQ(pb.inv_words.item(), 1.0f / 13.0f);  // 6 + 4 + 3 scored words
  EXPECT_ERROR_WITH(PaddedBatch::of(caption_batch(), 5, Device::cpu()), "need 6 steps, more than 5");
  CaptionBatch unsorted = caption_batch();
  std::swap(unsorted.lengths[0], unsorted.lengths[2]);
  EXPECT_ERROR_WITH(PaddedBatch::of(unsorted, 7, Device::cpu()), "longest first");
}

// The packed pass checks its targets on the host (the loss then reads none back).
TEST(PackedLoss, RefusesWordsOutsideTheVocabulary) {
  Generator init(3);
  AttentionDecoder d(decoder_config(0.0), init);
  CaptionBatch bad = caption_batch();
  bad.captions = bad.captions.clone();
  bad.captions.select(0, 2).narrow(0, 3, 1).fill_(20);  // the <eos> of caption 2
  Generator g(1);
  EXPECT_ERROR_WITH(d.forward(rand_normal({3, 4, 512}, 0, 1, g), bad, 1.0, g),
                    "token 20 of caption 2 is outside the vocabulary of 13 words");
  // Input words too (the first word, and padding the full teacher-forced pass reads), with
  // and without teacher forcing: checked on the host, not by the embedding on the device.
  for (double tf : {1.0, 0.5}) {
    CaptionBatch first = caption_batch();
    first.captions = first.captions.clone();
    first.captions.select(0, 1).narrow(0, 0, 1).fill_(-1);
    EXPECT_ERROR_WITH(d.forward(rand_normal({3, 4, 512}, 0, 1, g), first, tf, g),
                      "token -1 of caption 1 is outside the vocabulary of 13 words");
    CaptionBatch pad = caption_batch();
    pad.captions = pad.captions.clone();
    const int64_t last = pad.lengths[0] - 2;  // read as an input word by every caption's row
    ASSERT_GE(last, pad.lengths[2]) << "caption 2 has no padding there";
    pad.captions.select(0, 2).narrow(0, last, 1).fill_(99);
    EXPECT_ERROR_WITH(d.forward(rand_normal({3, 4, 512}, 0, 1, g), pad, tf, g),
                      "token 99 of caption 2 is outside the vocabulary of 13 words");
  }
}

// Two stores with the same parameters and gradients: step() on one, the two halves on
// the other, over steps with a learning-rate change and a frozen parameter in between.
TEST(DeviceStep, TwoHalvesEqualStepBitForBit) {
  for (int kind = 0; kind < 3; ++kind) {
    SCOPED_TRACE(kind);
    ParameterStore a, b;
    for (ParameterStore* s : {&a, &b}) {
      s->add("encoder.w", {5, 3});
      s->add("decoder.w", {7});
      s->add("decoder.v", {2, 2});
      s->finalize();
    }
    Generator g(4);
    const Tensor init = rand_uniform({a.numel()}, -1, 1, g);
    a.values().copy_(init);
    b.values().copy_(init);
    std::vector<ParamGroup> groups{{"encoder.", 0.01}, {"decoder.", 0.03}};
    std::unique_ptr<Optimizer> oa, ob;
    if (kind == 0) {
      oa = std::make_unique<AdamW>(a, AdamWConfig{}, groups);
      ob = std::make_unique<AdamW>(b, AdamWConfig{}, groups);
    } else if (kind == 1) {
      AdamConfig c;
      c.weight_decay = 0.1;
      oa = std::make_unique<Adam>(a, c, groups);
      ob = std::make_unique<Adam>(b, c, groups);
    } else {
      SgdConfig c;
      c.momentum = 0.9;
      c.weight_decay = 0.01;
      oa = std::make_unique<SGD>(a, c, groups);
      ob = std::make_unique<SGD>(b, c, groups);
    }
    for (int step = 1; step <= 5; ++step) {
      const Tensor grad = rand_uniform({a.numel()}, -1, 1, g);
      a.grads().copy_(grad);
      b.grads().copy_(grad);
      if (step == 3) {
        oa->set_lr(1, 0.002);
        ob->set_lr(1, 0.002);
      }
      if (step == 4) {  // the frozen parameter splits the decoder's run
        a.freeze("decoder.w");
        b.freeze("decoder.w");
      }
      oa->step();
      ob->stage_device_step(Device::cpu());
      ob->device_step();
      EXPECT_EQ(b.values().to_vector<float>(), a.values().to_vector<float>()) << "step " << step;
    }
    EXPECT_EQ(ob->step_count("decoder.v"), 5);
    EXPECT_EQ(ob->step_count("decoder.w"), 3);
    EXPECT_EQ(ob->staged_runs().size(), 2u);
  }
}

TEST(DeviceStep, ClippingOnTheDeviceIsClipGradNorm) {
  for (double max_norm : {0.5, 1e3}) {
    ParameterStore a, b;
    for (ParameterStore* s : {&a, &b}) {
      s->add("x", {11});
      s->add("y", {4}, Trainable::No);
      s->add("z", {6});
      s->finalize();
    }
    Generator g(6);
    const Tensor grad = rand_uniform({a.numel()}, -1, 1, g);
    a.grads().copy_(grad);
    b.grads().copy_(grad);
    const double norm = clip_grad_norm(a, max_norm);
    const std::vector<double> c = clip_grad_norm_on_device(b, max_norm).to_vector<double>();
    EXPECT_DOUBLE_EQ(c[0], norm);
    EXPECT_EQ(c[1] < 1.0, max_norm < norm);
    EXPECT_EQ(b.grads().to_vector<float>(), a.grads().to_vector<float>());
  }
}

// On the CPU a TrainStep steps eagerly: padded loss, backward, clipping, update.
TEST(TrainStep, EagerStepsOnTheCpuTrain) {
  Generator init(5);
  AttentionDecoder d(decoder_config(0.3), init);
  d.train();
  ParameterStore store;
  for (auto& p : d.named_parameters()) store.add(p.name, *p.tensor);
  store.finalize();
  AdamWConfig config;
  config.lr = 0.01;
  AdamW opt(store, config);
  Generator gen(8);
  TrainStepOptions o;
  o.grad_clip = 5.0;
  TrainStep step(d, opt, gen, o);
  EXPECT_EQ(step.padded_steps(6), 8);
  Generator g(2);
  const Tensor features = rand_normal({3, 4, 512}, 0, 1, g);
  double first = 0, last = 0;
  for (int i = 0; i < 30; ++i) {
    const TrainStepResult r = step.step(features, caption_batch());
    last = r.loss.total.item();
    if (i == 0) first = last;
    EXPECT_TRUE(std::isfinite(r.grad_norm.item()));
  }
  EXPECT_LT(last, 0.5 * first) << "one batch, 30 steps: the loss must fall";
  EXPECT_EQ(step.stats().eager_steps, 30);
  EXPECT_EQ(step.stats().captures, 0);
  EXPECT_EQ(opt.step_count("fc.weight"), 30);
  EXPECT_ERROR_WITH(step.step(features.narrow(0, 0, 2), caption_batch()), "for 3 captions");
  CaptionBatch bad = caption_batch();
  bad.captions = bad.captions.clone();
  bad.captions.select(0, 1).narrow(0, 4, 1).fill_(13);  // the last token of caption 1
  EXPECT_ERROR_WITH(step.step(features, bad), "token 13 of caption 1 is outside the vocabulary of 13");
  // Features that require gradients (a fine-tuned encoder's output) receive them.
  Tensor needs_grad = features.clone();
  needs_grad.set_requires_grad(true);
  step.step(needs_grad, caption_batch());
  ASSERT_TRUE(needs_grad.grad().defined());
  EXPECT_GT(sum(mul(needs_grad.grad(), needs_grad.grad())).item(), 0.0);
}

}  // namespace
}  // namespace caption::nn
