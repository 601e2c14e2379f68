// ParameterStore and the optimisers: views share the blocks, autograd accumulates into
// the gradient block, SGD/Adam/AdamW follow PyTorch step for step (expected values from
// torch.optim in torch 1.13, float64, with the same parameter groups; the first steps
// were checked by hand from the update rules: plain SGD p - lr g, Adam's first step
// p - lr sign(g + wd p), AdamW's p (1 - lr wd) - lr sign(g)), clipping as
// torch.nn.utils.clip_grad_norm_, frozen parameters stay untouched, and exported state
// resumes identically.
#include "nn/optim.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <memory>

#include "nn/parameters.h"
#include "tests/harness/expect_error.h"
#include "tests/harness/harness.h"

namespace caption::nn {
namespace {

using caption::testing::allclose;
using caption::testing::equal;
using caption::testing::Tolerance;

Tensor t(std::vector<float> v, Shape s) { return Tensor::from_vector(v, s); }

using caption::testing::expect_error;

// Two parameters in two groups: encoder.w [2, 3] (lr 0.05) and decoder.b [3] (lr 0.1).
struct Fixture {
  ParameterStore store;
  Fixture() {
    store.add("encoder.w", {2, 3});
    store.add("decoder.b", {3});
    store.finalize();
    store.get("encoder.w").copy_(t({0.5f, -0.3f, 0.8f, -1.2f, 0.1f, 0.4f}, {2, 3}));
    store.get("decoder.b").copy_(t({0.2f, -0.7f, 0.05f}, {3}));
  }
  // The gradients torch was given at step s (1-based), written into the gradient block.
  void set_grads(int s) {
    const std::vector<std::vector<float>> g = {
        {0.05f, -0.15f, 0.35f, 0.15f, -0.05f, -0.25f, 0.25f, 0.05f, -0.15f},
        {0.4f, 0.2f, 0.0f, -0.2f, 0.3f, 0.1f, -0.1f, 0.4f, 0.2f},
        {0.05f, -0.15f, 0.35f, 0.15f, -0.05f, 0.45f, 0.25f, 0.05f, -0.15f}};
    store.grads().copy_(t(g[s - 1], {9}));
  }
};

std::vector<ParamGroup> groups() { return {{"encoder.", 0.05}, {"decoder.", 0.1}}; }

using Expected = std::vector<std::vector<float>>;  // the 9 values after each of 3 steps

void expect_steps(Fixture& f, Optimizer& opt, const Expected& expected, const char* what) {
  for (int s = 1; s <= 3; ++s) {
    f.set_grads(s);
    opt.step();
    EXPECT_TRUE(allclose(f.store.values(), t(expected[s - 1], {9}), Tolerance{2e-6, 1e-5},
                         str(what, " after step ", s)));
  }
}

TEST(Optimizers, SgdMomentumDampeningWeightDecay) {
  Fixture f;
  SgdConfig c;
  c.momentum = 0.9;
  c.dampening = 0.1;
  c.weight_decay = 0.01;
  SGD opt(f.store, c, groups());
  expect_steps(
      f, opt,
      {{0.49725f, -0.29235f, 0.7821f, -1.2069f, 0.10245f, 0.4123f, 0.1748f, -0.7043f, 0.06495f},
       {0.476551238f, -0.294333442f, 0.765638055f, -1.20356689f, 0.0911088975f, 0.418684465f,
        0.16096268f, -0.74353613f, 0.060346545f},
       {0.455457903f, -0.289236091f, 0.734727767f, -1.2067755f, 0.0831109062f, 0.403992075f,
        0.125864226f, -0.782679464f, 0.0696491236f}},
      "SGD momentum");
}

TEST(Optimizers, SgdNesterov) {
  Fixture f;
  SgdConfig c;
  c.momentum = 0.9;
  c.weight_decay = 0.01;
  c.nesterov = Nesterov::Yes;
  SGD opt(f.store, c, groups());
  expect_steps(f, opt,
               {{0.494775f, -0.285465f, 0.76599f, -1.21311f, 0.104655f, 0.42337f, 0.15212f,
                 -0.70817f, 0.078405f},
                {0.454077464f, -0.297997308f, 0.75076331f, -1.19854655f, 0.0780400778f,
                 0.423430799f, 0.150418972f, -0.786307477f, 0.0523655305f},
                {0.430490956f, -0.285871747f, 0.703440758f, -1.20809672f, 0.0723096044f,
                 0.385023774f, 0.0922391588f, -0.829274575f, 0.0754010779f}},
               "SGD Nesterov");
}

TEST(Optimizers, SgdPlain) {
  Fixture f;
  SGD opt(f.store, SgdConfig{}, groups());
  expect_steps(f, opt,
               {{0.4975f, -0.2925f, 0.7825f, -1.2075f, 0.1025f, 0.4125f, 0.175f, -0.705f, 0.065f},
                {0.4775f, -0.3025f, 0.7825f, -1.1975f, 0.0875f, 0.4075f, 0.185f, -0.745f, 0.045f},
                {0.475f, -0.295f, 0.765f, -1.205f, 0.09f, 0.385f, 0.16f, -0.75f, 0.06f}},
               "SGD");
}

const Expected kAdam = {{0.450000005f, -0.250000003f, 0.750000001f, -1.24999998f, 0.149999988f,
                         0.449999998f, 0.100000004f, -0.60000005f, 0.149999993f},
                        {0.406355533f, -0.251927179f, 0.710599693f, -1.21602845f, 0.117307624f,
                         0.456417244f, 0.0599781484f, -0.670352691f, 0.125748905f},
                        {0.367037272f, -0.234860329f, 0.666503309f, -1.19263725f, 0.0960418856f,
                         0.430283929f, -0.00575655431f, -0.721474739f, 0.139114784f}};
const Expected kAdamW = {{0.44750001f, -0.248500003f, 0.746000001f, -1.244f, 0.14949999f,
                          0.447999998f, 0.098000004f, -0.79299998f, 0.149499993f},
                         {0.404189223f, -0.256933023f, 0.70876709f, -1.22810448f, 0.117556558f,
                          0.463040289f, 0.062459421f, -0.867216553f, 0.128653954f},
                         {0.366726604f, -0.245619004f, 0.664323108f, -1.23199331f, 0.0983580186f,
                          0.440163429f, -0.00122204394f, -0.929427734f, 0.147426122f}};

TEST(Optimizers, AdamL2WeightDecay) {
  Fixture f;
  AdamConfig c;
  c.weight_decay = 0.1;
  Adam opt(f.store, c, groups());
  expect_steps(f, opt, kAdam, "Adam");
}

TEST(Optimizers, AdamWDecoupledWeightDecayDiffersFromAdam) {
  Fixture f;
  AdamWConfig c;
  c.weight_decay = 0.1;
  AdamW opt(f.store, c, groups());
  expect_steps(f, opt, kAdamW, "AdamW");
  EXPECT_FALSE(allclose(f.store.values(), t(kAdam[2], {9}), Tolerance{1e-4, 0}, "AdamW vs Adam"));
}

TEST(Optimizers, AdamWDefaultsAreTorchs) {
  AdamWConfig c;
  EXPECT_DOUBLE_EQ(c.weight_decay, 0.01);
  EXPECT_DOUBLE_EQ(c.lr, 1e-3);
  EXPECT_DOUBLE_EQ(AdamConfig{}.weight_decay, 0.0);
}

TEST(Optimizers, GroupsAndLearningRates) {
  Fixture f;
  SGD opt(f.store, SgdConfig{}, {{"", 0.5}, {"encoder.", 0.05}});  // longest prefix wins
  EXPECT_EQ(opt.group_of("encoder.w"), 1u);
  EXPECT_EQ(opt.group_of("decoder.b"), 0u);
  opt.set_lr(0, 1.0);
  f.set_grads(1);
  opt.step();
  // decoder.b -= 1.0 * g; encoder.w -= 0.05 * g.
  EXPECT_TRUE(
      allclose(f.store.get("decoder.b"), t({-0.05f, -0.75f, 0.2f}, {3}), {1e-6, 1e-5}, "b"));
  EXPECT_NEAR(f.store.get("encoder.w").to_vector<double>()[0], 0.5 - 0.05 * 0.05, 1e-7);
  EXPECT_DOUBLE_EQ(opt.lr(0), 1.0);
  EXPECT_DOUBLE_EQ(opt.lr(1), 0.05);
  SGD default_group(f.store, SgdConfig{});
  EXPECT_EQ(default_group.num_groups(), 1u);
  EXPECT_DOUBLE_EQ(default_group.lr(0), 0.01);
  expect_error(
      [&] {
        SGD bad(f.store, SgdConfig{}, {{"encoder.", 0.1}});
      },
      "SGD: parameter 'decoder.b' matches no parameter group prefix");
  expect_error(
      [&] {
        SGD bad(f.store, SgdConfig{}, {{"", 0.1}, {"decodr.", 0.1}});
      },
      "SGD: parameter group 1 (prefix 'decodr.') has no parameters");
  expect_error([&] { opt.set_lr(2, 0.1); }, "SGD: no parameter group 2 (2 groups)");
}

// ---- clipping ----

TEST(ClipGradNorm, ScalesLikeTorch) {
  Fixture f;
  f.set_grads(1);
  const double total = clip_grad_norm(f.store, 0.5);
  EXPECT_NEAR(total, 0.567890835, 1e-7);
  EXPECT_TRUE(allclose(f.store.grads(),
                       t({0.0440224678f, -0.132067403f, 0.308157275f, 0.132067403f, -0.0440224678f,
                          -0.220112339f, 0.220112339f, 0.0440224678f, -0.132067403f},
                         {9}),
                       {1e-7, 1e-5}, "clipped grads"));
}

TEST(ClipGradNorm, LeavesSmallNormsAlone) {
  Fixture f;
  f.set_grads(1);
  const Tensor before = f.store.grads().clone();
  EXPECT_NEAR(clip_grad_norm(f.store, 10.0), 0.567890835, 1e-7);
  EXPECT_TRUE(equal(f.store.grads(), before, "grads"));
}

TEST(ClipGradNorm, IgnoresFrozenParameters) {
  Fixture f;
  f.set_grads(1);
  f.store.freeze("encoder.");
  // Only decoder.b's gradient {0.25, 0.05, -0.15} counts: norm sqrt(0.0875).
  EXPECT_NEAR(clip_grad_norm(f.store, 0.1), std::sqrt(0.0875), 1e-7);
  EXPECT_NEAR(f.store.grad("encoder.w").to_vector<double>()[0], 0.05, 1e-7);  // untouched
}

// ---- the parameter store ----

TEST(ParameterStore, ViewsShareTheBlocks) {
  ParameterStore store;
  store.add("a", {2, 3});
  store.add("b", {});  // a scalar
  store.add("c", {4});
  store.finalize();
  EXPECT_EQ(store.numel(), 11);
  const Tensor& c = store.get("c");
  EXPECT_EQ(c.shape(), (Shape{4}));
  EXPECT_TRUE(c.is_leaf());
  EXPECT_TRUE(c.requires_grad());
  EXPECT_EQ(c.storage(), store.values().storage());
  EXPECT_EQ(c.offset(), 7);
  EXPECT_EQ(c.grad().storage(), store.grads().storage());
  EXPECT_EQ(c.grad().offset(), 7);
  // Writing through the block shows in the view and the other way round.
  store.values().copy_(t({0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, {11}));
  EXPECT_TRUE(equal(c, t({7, 8, 9, 10}, {4}), "c"));
  EXPECT_DOUBLE_EQ(store.get("b").item(), 6.0);
  store.get("a").fill_(-1.0);
  EXPECT_DOUBLE_EQ(store.values().to_vector<double>()[5], -1.0);
  // Registration order.
  std::vector<std::string> names;
  for (const auto& [name, tensor] : store.named_parameters()) names.push_back(name);
  EXPECT_EQ(names, (std::vector<std::string>{"a", "b", "c"}));
}

TEST(ParameterStore, AutogradAccumulatesIntoTheGradientBlock) {
  ParameterStore store;
  store.add("w", {3});
  store.add("v", {2});
  store.finalize();
  store.get("w").copy_(t({1, 2, 3}, {3}));
  store.get("v").copy_(t({4, 5}, {2}));
  auto loss = [&] {
    // sum(w * [1, 2, 3]) + sum(v * v)
    return add(sum(mul(store.get("w"), t({1, 2, 3}, {3}))),
               sum(mul(store.get("v"), store.get("v"))));
  };
  loss().backward();
  EXPECT_TRUE(equal(store.grads(), t({1, 2, 3, 8, 10}, {5}), "grads after one backward"));
  loss().backward();  // accumulates
  EXPECT_TRUE(equal(store.grads(), t({2, 4, 6, 16, 20}, {5}), "grads after two"));
  store.zero_grad();
  EXPECT_TRUE(equal(store.grads(), Tensor::zeros({5}), "grads after zero_grad"));
  loss().backward();
  EXPECT_TRUE(equal(store.grads(), t({1, 2, 3, 8, 10}, {5}), "grads after zero_grad + backward"));
}

TEST(ParameterStore, AdoptsModuleSlotsAndRebindsThem) {
  Tensor weight = t({1, 2, 3, 4}, {2, 2});
  weight.set_requires_grad(true);
  Tensor frozen = t({9}, {1});  // requires_grad off: adopted as frozen
  ParameterStore store;
  store.add("layer.weight", weight);
  store.add("layer.frozen", frozen);
  store.finalize();
  EXPECT_TRUE(weight.same(store.get("layer.weight")));
  EXPECT_EQ(weight.storage(), store.values().storage());
  EXPECT_TRUE(equal(store.values(), t({1, 2, 3, 4, 9}, {5}), "values"));
  EXPECT_TRUE(store.trainable("layer.weight"));
  EXPECT_FALSE(store.trainable("layer.frozen"));
}

TEST(ParameterStore, HealsADroppedGradient) {
  ParameterStore store;
  store.add("w", {2});
  store.finalize();
  const Tensor w = store.get("w");
  w.zero_grad();                           // as Module::set_frozen does: the .grad view is dropped
  sum(mul(w, t({3, 4}, {2}))).backward();  // lands in a fresh tensor
  store.sync_grads();
  EXPECT_TRUE(equal(store.grads(), t({3, 4}, {2}), "grads copied back into the block"));
  EXPECT_EQ(w.grad().storage(), store.grads().storage());
}

TEST(ParameterStore, RefusesMisuse) {
  ParameterStore store;
  store.add("encoder.w", {2});
  expect_error([&] { store.add("encoder.w", {3}); }, "parameter 'encoder.w' added twice");
  expect_error([&] { store.get("encoder.w"); }, "ParameterStore: get() before finalize()");
  expect_error([&] { store.zero_grad(); }, "zero_grad() before finalize()");
  Tensor d = Tensor::zeros({2}, DType::F64);
  expect_error([&] { store.add("x", d); },
               "parameter 'x' is float64[2] on cpu but the store holds F32");
  store.finalize();
  expect_error([&] { store.add("late", {1}); }, "cannot add parameter 'late' after finalize()");
  expect_error([&] { store.get("encoder.v"); },
               "ParameterStore: unknown parameter 'encoder.v' (1 parameters; similar: encoder.w)");
  expect_error([&] { store.freeze("decoder."); },
               "no parameter name starts with 'decoder.' (freeze)");
  expect_error(
      [] {
        ParameterStore s;
        SGD o(s, SgdConfig{});
      },
      "SGD: the parameter store must be finalised first");
}

TEST(Optimizers, FrozenParametersAreUntouched) {
  Fixture f;
  EXPECT_EQ(f.store.freeze("encoder."), 1);
  AdamW opt(f.store, AdamWConfig{}, groups());
  const Tensor enc_before = f.store.get("encoder.w").clone();
  f.set_grads(1);
  opt.step();
  EXPECT_TRUE(equal(f.store.get("encoder.w"), enc_before, "frozen encoder.w"));
  EXPECT_EQ(opt.step_count("encoder.w"), 0);
  EXPECT_EQ(opt.step_count("decoder.b"), 1);
  // Unfrozen later, it starts its own bias corrections at step 1 (as torch does): its
  // first move is lr * sign(g) after decay, like the first AdamW step of the fixture.
  f.store.unfreeze("encoder.");
  f.set_grads(1);
  opt.step();
  EXPECT_EQ(opt.step_count("encoder.w"), 1);
  EXPECT_EQ(opt.step_count("decoder.b"), 2);
  const std::vector<double> w = f.store.get("encoder.w").to_vector<double>();
  EXPECT_NEAR(w[0], 0.5 * (1 - 0.05 * 0.01) - 0.05, 1e-6);
}

// ---- state export/import ----

// Three steps straight through equal two steps, an export, a fresh optimiser and store
// importing the state and values, and the third step: bit for bit.
template <typename Make>
void check_resume(Make make) {
  Fixture a;
  std::unique_ptr<Optimizer> opt_a = make(a.store);
  for (int s = 1; s <= 3; ++s) {
    a.set_grads(s);
    opt_a->step();
  }
  Fixture b;
  std::unique_ptr<Optimizer> opt_b = make(b.store);
  for (int s = 1; s <= 2; ++s) {
    b.set_grads(s);
    opt_b->step();
  }
  opt_b->set_lr(1, 0.07);  // a changed learning rate travels with the state
  const NamedTensors state = opt_b->export_state();
  // Copies, as a checkpoint file would hold.
  NamedTensors saved;
  for (const auto& [name, tensor] : state) saved.emplace_back(name, tensor.clone());
  const Tensor values = b.store.values().clone();

  Fixture c;
  c.store.values().copy_(values);
  std::unique_ptr<Optimizer> opt_c = make(c.store);
  opt_c->import_state(saved);
  EXPECT_DOUBLE_EQ(opt_c->lr(1), 0.07);
  opt_c->set_lr(1, 0.1);
  EXPECT_EQ(opt_c->step_count("decoder.b"), 2);
  c.set_grads(3);
  opt_c->step();
  EXPECT_TRUE(equal(c.store.values(), a.store.values(), "resumed values"));
  const NamedTensors sa = opt_a->export_state(), sc = opt_c->export_state();
  ASSERT_EQ(sa.size(), sc.size());
  for (size_t i = 0; i < sa.size(); ++i) {
    EXPECT_EQ(sa[i].first, sc[i].first);
    EXPECT_TRUE(equal(sc[i].second, sa[i].second, sa[i].first));
  }
}

TEST(OptimizerState, AdamWResumesExactly) {
  check_resume([](ParameterStore& s) -> std::unique_ptr<Optimizer> {
    return std::make_unique<AdamW>(s, AdamWConfig{}, groups());
  });
}

TEST(OptimizerState, SgdMomentumResumesExactly) {
  check_resume([](ParameterStore& s) -> std::unique_ptr<Optimizer> {
    SgdConfig c;
    c.momentum = 0.9;
    c.nesterov = Nesterov::Yes;
    return std::make_unique<SGD>(s, c, groups());
  });
}

TEST(OptimizerState, NamesAndRefusals) {
  Fixture f;
  Adam opt(f.store, AdamConfig{}, groups());
  const NamedTensors state = opt.export_state();
  std::vector<std::string> names;
  for (const auto& [name, tensor] : state) names.push_back(name);
  EXPECT_EQ(names,
            (std::vector<std::string>{"encoder.w.step", "encoder.w.exp_avg", "encoder.w.exp_avg_sq",
                                      "decoder.b.step", "decoder.b.exp_avg", "decoder.b.exp_avg_sq",
                                      "group.0.lr", "group.1.lr"}));
  EXPECT_EQ(state[1].second.shape(), (Shape{2, 3}));
  EXPECT_EQ(state[0].second.dtype(), DType::I64);

  NamedTensors missing(state.begin(), state.end() - 1);
  expect_error([&] { opt.import_state(missing); }, "Adam state: tensor 'group.1.lr' is missing");
  NamedTensors extra = state;
  extra.emplace_back("decoder.b.momentum_buffer", Tensor::zeros({3}));
  expect_error([&] { opt.import_state(extra); },
               "Adam state: unexpected tensor 'decoder.b.momentum_buffer'");
  NamedTensors wrong = state;
  wrong[2].second = Tensor::zeros({3, 2});
  expect_error(
      [&] { opt.import_state(wrong); },
      "Adam state: 'encoder.w.exp_avg_sq' is float32[3, 2] on cpu, expected float32[2, 3]");
  NamedTensors negative = state;
  negative[0].second = Tensor::full({}, -1.0, DType::I64);
  expect_error([&] { opt.import_state(negative); }, "'encoder.w.step' has an invalid value -1");
}

}  // namespace
}  // namespace caption::nn
