// Learning-rate schedules and early stopping against PyTorch 1.13's values
// (torch.optim.lr_scheduler.OneCycleLR and ReduceLROnPlateau, computed once and pasted
// here), the SVG charts and the LR range test logic.
#include <gtest/gtest.h>

#include <cmath>

#include "pipeline/report.h"
#include "pipeline/schedule.h"

namespace caption::pipeline {
namespace {

TEST(OneCycle, MatchesPyTorchPerBatchWithTwoGroups) {
  // OneCycleLR(max_lr=[0.01, 0.1], total_steps=20, pct_start=0.3, cos, div_factor=25,
  // final_div_factor=1e4): lr read before each of the 20 steps.
  const std::vector<double> group0{
      0.0003999999999999993, 0.0013167184270002508, 0.003716718427000252, 0.006683281572999748,
      0.009083281572999747,  0.01,                  0.009874640062350875, 0.009504846320134737,
      0.0089091617757105,    0.008117456539497631,  0.007169430017913008, 0.0061126202193628925,
      0.00500002,            0.003887419780637108,  0.0028306099820869924, 0.00188258346050237,
      0.0010908782242895004, 0.0004951936798652628, 0.00012539993764912555, 4e-08};
  OneCycleOptions o;
  o.max_lr = {0.01, 0.1};
  o.initial_lr = {0.01 / 25, 0.1 / 25};
  o.final_lr = {0.01 / 25 / 1e4, 0.1 / 25 / 1e4};
  o.pct_start = 0.3;
  o.total_steps = 20;
  OneCycle s(o);
  for (int i = 0; i < 20; ++i) {
    EXPECT_NEAR(s.lr(0), group0[i], 1e-15 + 1e-12 * group0[i]) << "step " << i;
    EXPECT_NEAR(s.lr(1), 10 * group0[i], 1e-14 + 1e-12 * group0[i]) << "step " << i;
    s.on_batch_end();
  }
  // Resuming from the exported state continues the same curve.
  OneCycle t(o);
  t.import_state(nlohmann::json{{"step", 7}});
  EXPECT_NEAR(t.lr(0), group0[7], 1e-15);
}

TEST(ReduceOnPlateau, MatchesPyTorchWithThresholdAndCooldown) {
  // ReduceLROnPlateau(mode='min', factor=0.5, patience=1, threshold=0.1, cooldown=1)
  PlateauOptions o;
  o.direction = Direction::Minimize;
  o.factor = 0.5;
  o.patience = 1;
  o.threshold = 0.1;
  o.cooldown = 1;
  ReduceOnPlateau s({1.0}, o);
  const std::vector<double> values{10, 9.5, 9.4, 9.3, 5, 5, 5, 5, 5, 1};
  const std::vector<double> expected{1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.25};
  for (size_t i = 0; i < values.size(); ++i) {
    s.on_epoch_end(values[i]);
    EXPECT_DOUBLE_EQ(s.lr(0), expected[i]) << "epoch " << i;
  }
  ReduceOnPlateau r({1.0}, o);
  r.import_state(s.export_state());
  EXPECT_DOUBLE_EQ(r.lr(0), 0.25);
}

TEST(EarlyStopping, ComparesWithTheBestInEitherDirection) {
  EarlyStopping lower(2, Direction::Minimize);
  EXPECT_TRUE(lower.update(3.0));
  EXPECT_FALSE(lower.update(3.5));   // worse than the best (not just the previous)
  EXPECT_TRUE(lower.update(2.9));    // new best resets the count
  EXPECT_FALSE(lower.update(3.0));
  EXPECT_FALSE(lower.should_stop());
  EXPECT_FALSE(lower.update(2.95));  // better than the previous epoch, not than the best
  EXPECT_TRUE(lower.should_stop());
  EarlyStopping higher(1, Direction::Maximize);
  EXPECT_TRUE(higher.update(0.2));
  EXPECT_TRUE(higher.update(0.3));
  EXPECT_FALSE(higher.update(0.25));
  EXPECT_TRUE(higher.should_stop());
  EarlyStopping restored(1, Direction::Maximize);
  restored.import_state(higher.export_state());
  EXPECT_TRUE(restored.should_stop());
}

TEST(LrFinder, ExponentialRatesSmoothingDivergenceAndSuggestion) {
  LrFinderOptions o;
  o.start = 1e-5;
  o.end = 1.0;
  o.steps = 11;
  LrFinder f(o);
  EXPECT_DOUBLE_EQ(f.next_lr(), 1e-5);
  // A U-shaped loss: minimum at 1e-2, divergence afterwards.
  const std::vector<double> losses{5, 4.8, 4.5, 3.0, 2.0, 1.0, 2.5, 40, 900, 1e5, 1e6};
  size_t used = 0;
  for (double l : losses) {
    ++used;
    if (!f.record(l)) break;
  }
  EXPECT_LT(used, losses.size());  // stopped on divergence
  EXPECT_NEAR(f.history()[1].lr, 1e-5 * std::pow(1e5, 0.1), 1e-15);  // 10 ratios over 11 steps
  // First smoothed value is the loss itself (bias correction).
  EXPECT_DOUBLE_EQ(f.history()[0].smoothed_loss, 5.0);
  const auto& h = f.history();
  size_t best = 0;
  for (size_t i = 1; i < h.size(); ++i)
    if (h[i].smoothed_loss < h[best].smoothed_loss) best = i;
  EXPECT_DOUBLE_EQ(f.suggestion(), h[best].lr / 10);
}

TEST(Charts, SvgIsWellFormedAndSkipsNonFiniteValues) {
  LineChart c("Loss <per epoch>", "epoch", "loss");
  c.add({"train", {1, 2, 3}, {2.0, NAN, 1.0}});
  c.add({"empty", {}, {}});
  const std::string svg = c.svg();
  EXPECT_NE(svg.find("Loss &lt;per epoch&gt;"), std::string::npos);
  EXPECT_NE(svg.find(">train<"), std::string::npos);
  EXPECT_EQ(svg.find("nan"), std::string::npos);
  int open = 0;
  for (size_t i = 0; i + 1 < svg.size(); ++i) {
    if (svg[i] == '<' && svg[i + 1] != '/') ++open;
    if (svg[i] == '<' && svg[i + 1] == '/') --open;
    if (svg[i] == '/' && svg[i + 1] == '>') --open;
  }
  EXPECT_EQ(open, 0) << "unbalanced tags";
}

TEST(Progress, FormatsRateAndEta) {
  double now = 100;
  std::ostringstream out;
  Progress p(out, false, 2, [&] { return now; });
  p.start_epoch(1, 3, 10);
  now = 110;
  p.update(2, 1.5, 4e-4, 64);
  EXPECT_EQ(p.line(), "epoch 1/3  step 2/10  loss 1.5000  lr 4.00e-04  6 img/s  ETA 0:00:40");
  EXPECT_NE(out.str().find("step 2/10"), std::string::npos);
  EXPECT_EQ(format_duration(3723), "1:02:03");
}

}  // namespace
}  // namespace caption::pipeline
