// The training recipe end to end on a tiny synthetic set: fit writes its checkpoints,
// logs and plots; an interrupted run resumed from its state continues exactly as if it
// had never stopped; evaluation and prediction files agree; the LR range test runs;
// bad options are refused with clear messages.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <stdexcept>
#include <sstream>

#include "engine/tensor_io.h"
#include "pipeline/captioner.h"
#include "pipeline/report.h"
#include "pipeline/session.h"
#include "pipeline/trainer.h"
#include "tests/pipeline/tiny_set.h"

namespace caption::pipeline {
namespace {

namespace fs = std::filesystem;

using testing::tiny_options;
using testing::tiny_set;

TEST(Trainer, FitWritesCheckpointsLogsAndPlots) {
  TrainOptions o = tiny_options("trainer_fit");
  o.epochs = 2;
  std::ostringstream log;
  Trainer t(o, log);
  const auto history = t.fit();
  ASSERT_EQ(history.size(), 2u);
  for (const char* f : {"vocab.json", "last.safetensors", "last.state.safetensors", "best.safetensors",
                        "metrics.jsonl", "loss.svg", "metrics.svg", "lr.svg"})
    EXPECT_TRUE(fs::exists(fs::path(o.output) / f)) << f;
  EXPECT_EQ(MetricsLog::read((fs::path(o.output) / "metrics.jsonl").string()).size(), 2u);
  EXPECT_LT(history[1].train_loss, history[0].train_loss);
  EXPECT_NE(log.str().find("val loss (teacher-forced)"), std::string::npos);
  EXPECT_NE(log.str().find("BLEU-4"), std::string::npos);
  // The checkpoint captions an image through the inference API.
  Captioner c((fs::path(o.output) / "best.safetensors").string());
  const auto r = c.caption((tiny_set() / "Flicker8k_Dataset" / "synth_000000.png").string(), c.default_options());
  EXPECT_EQ(r.words.size(), r.attention.size());
}

// --amp: the same run with bfloat16 products learns as the float32 one does (losses
// within a few percent) and says so in its log.
TEST(Trainer, MixedPrecisionTrainsLikeFloat32) {
  TrainOptions o = tiny_options("trainer_fp32");
  o.epochs = 2;
  std::ostringstream log32, log16;
  const auto h32 = Trainer(o, log32).fit();
  o = tiny_options("trainer_amp");
  o.epochs = 2;
  o.amp = true;
  const auto h16 = Trainer(o, log16).fit();
  EXPECT_NE(log16.str().find("bfloat16 products in training steps (--amp)"), std::string::npos)
      << log16.str().substr(0, 400);
  ASSERT_EQ(h16.size(), 2u);
  ASSERT_EQ(h32.size(), 2u);
  EXPECT_LT(h16[1].train_loss, h16[0].train_loss);
  for (size_t e = 0; e < 2; ++e) {
    EXPECT_NE(h16[e].train_loss, h32[e].train_loss);  // the products did change
    EXPECT_NEAR(h16[e].train_loss, h32[e].train_loss, 0.03 * h32[e].train_loss) << "epoch " << e + 1;
  }
}

TEST(Trainer, ResumeContinuesExactlyAsAnUninterruptedRun) {
  std::ostringstream log;
  TrainOptions straight = tiny_options("trainer_straight");
  Trainer a(straight, log);
  a.fit();
  const std::vector<double> all = a.batch_losses();

  TrainOptions first = tiny_options("trainer_interrupted");
  first.stop_after = 1;
  std::vector<double> resumed;
  {
    Trainer b(first, log);
    b.fit();
    resumed = b.batch_losses();
  }
  TrainOptions second = first;
  second.stop_after = 0;
  second.resume = true;
  Trainer c(second, log);
  const auto history = c.fit();
  resumed.insert(resumed.end(), c.batch_losses().begin(), c.batch_losses().end());
  ASSERT_EQ(history.size(), 3u);
  ASSERT_EQ(resumed.size(), all.size());
  for (size_t i = 0; i < all.size(); ++i) EXPECT_EQ(resumed[i], all[i]) << "batch " << i;
}

// A damaged trainer state (hand-edited, or written by another version) is refused by
// name: the state file and what is wrong in it, never a crash or a foreign exception.
TEST(Trainer, ResumeRefusesADamagedStateByName) {
  std::ostringstream log;
  TrainOptions first = tiny_options("trainer_damaged");
  first.stop_after = 1;
  Trainer(first, log).fit();
  const std::string state = (fs::path(first.output) / "last.state.safetensors").string();
  const LoadedTensors good = load_tensors(state);
  TrainOptions again = first;
  again.stop_after = 0;
  again.resume = true;
  auto expect_refused = [&](const std::map<std::string, Tensor>& tensors,
                            const std::map<std::string, std::string>& meta, const std::string& needle) {
    save_tensors(state, NamedTensors(tensors.begin(), tensors.end()), meta);
    try {
      Trainer t(again, log);
      ADD_FAILURE() << "accepted; expected an error containing " << needle;
    } catch (const Error& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("last.state.safetensors"), std::string::npos) << what;
      EXPECT_NE(what.find(needle), std::string::npos) << what;
    }
  };
  auto meta = good.metadata;
  meta["history"] = R"([{"epoch": 1,)";
  expect_refused(good.tensors, meta, "malformed trainer state");
  meta = good.metadata;
  meta.erase("scheduler");
  expect_refused(good.tensors, meta, "no 'scheduler'");
  auto tensors = good.tensors;
  tensors.at("trainer.epoch") = Tensor::zeros({0}, DType::I64);
  expect_refused(tensors, good.metadata, "'trainer.epoch' holds 0 values");
  // The intact state still resumes.
  save_tensors(state, NamedTensors(good.tensors.begin(), good.tensors.end()), good.metadata);
  EXPECT_EQ(Trainer(again, log).fit().size(), 3u);
}

TEST(Trainer, EvaluationAndPredictionFilesAgree) {
  TrainOptions o = tiny_options("trainer_eval");
  o.epochs = 1;
  std::ostringstream log;
  Trainer t(o, log);
  t.fit();
  nn::Checkpoint ck = nn::load_checkpoint((fs::path(o.output) / "last.safetensors").string());
  const data::CaptionDataset dataset = load_dataset(o.data);
  text::Normalizer normalizer(text_options_of(ck.config, "checkpoint"));
  const text::Vocabulary vocab = text::Vocabulary::from_tokens(ck.vocab, "checkpoint");
  data::LoaderOptions lo;
  lo.splits = {data::Split::Test};
  lo.items = data::EpochItems::OneCaptionPerImage;
  lo.shuffle = data::Shuffle::No;
  data::DataLoader loader(dataset, normalizer, vocab, image_transform(ck.config), lo);
  nn::DecodeOptions d;
  d.beam = 2;
  d.max_len = 12;
  const FreeRunningResult r = evaluate_free_running(*ck.model, loader, vocab, d, Device::cpu());
  EXPECT_EQ(r.images, 6u);
  // The captions scored are those `caption` prints: the Captioner, given the six images in
  // the loader's order (one batch, composed alike), gives the same words. (Both fold the
  // encoder's batch norms once, nn/folded_resnet.h; folding where cheaper changes only last
  // bits, which these words do not show: the features' equality is FoldedResNet's test.)
  {
    const Captioner captioner((fs::path(o.output) / "last.safetensors").string());
    std::map<std::string, std::string> path_of;
    for (const data::CaptionSample* sample : dataset.of_split(data::Split::Test))
      path_of[sample->image_id] = sample->image_path.string();
    std::vector<std::string> paths;
    for (const Prediction& p : r.predictions) paths.push_back(path_of.at(p.image_id));
    const std::vector<CaptionResult> printed = captioner.caption(paths, d);
    ASSERT_EQ(printed.size(), r.predictions.size());
    size_t words = 0;
    for (size_t i = 0; i < printed.size(); ++i) {
      EXPECT_EQ(printed[i].words, r.predictions[i].words) << r.predictions[i].image_id;
      words += printed[i].words.size();
    }
    EXPECT_GT(words, 0u);
  }
  const std::string path = (fs::path(o.output) / "predictions.jsonl").string();
  write_predictions(path, r.predictions);
  const auto scores = score_predictions(read_predictions(path), dataset, data::Split::Test, normalizer, path);
  for (int n = 0; n < 4; ++n) EXPECT_DOUBLE_EQ(scores.bleu[n], r.scores.bleu[n]);
  EXPECT_DOUBLE_EQ(scores.cider_d, r.scores.cider_d);
  // A prediction file missing images is refused.
  auto partial = r.predictions;
  partial.pop_back();
  write_predictions(path, partial);
  EXPECT_THROW(score_predictions(read_predictions(path), dataset, data::Split::Test, normalizer, path), Error);
}

TEST(Trainer, LrFindSuggestsARate) {
  TrainOptions o = tiny_options("trainer_lr_find");
  std::ostringstream log;
  Trainer t(o, log);
  const LrFindResult r = t.lr_find(1e-5, 1.0, 12);
  EXPECT_GT(r.suggestion, 0);
  EXPECT_LE(r.lrs.size(), 12u);
  EXPECT_TRUE(fs::exists(r.plot));
  EXPECT_TRUE(fs::exists(t.gradient_flow_plot()));
}

TEST(Trainer, BadOptionsAreRefusedByName) {
  std::ostringstream log;
  auto expect_error = [&](TrainOptions o, const std::string& needle) {
    try {
      Trainer t(o, log);
      ADD_FAILURE() << "accepted; expected an error containing " << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  TrainOptions o = tiny_options("trainer_bad");
  o.teacher_forcing = 1.5;
  expect_error(o, "--teacher-forcing");
  o = tiny_options("trainer_bad");
  o.data.root = "/does/not/exist";
  expect_error(o, "/does/not/exist");
  o = tiny_options("trainer_bad");
  o.resume = true;
  expect_error(o, "nothing to resume");
  o = tiny_options("trainer_bad");
  o.model.encoder = "vgg16";
  expect_error(o, "encoder 'vgg16'");
  o = tiny_options("trainer_bad");
  o.device = "gpu";
  expect_error(o, "device 'gpu'");
}

}  // namespace
}  // namespace caption::pipeline
