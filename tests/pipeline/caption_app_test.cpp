// The `caption` program, run as a user would: help, usage errors (exit 2), plain and
// JSON output (checked against the Captioner library), attention-map files, and images
// or checkpoints that cannot be read (exit 1, the culprit named on stderr).
//
// The binary is the build's bin/caption (CAPTION_TEST_TMP is <build>/tests/tmp), or
// $CAPTION_APP when set. The build must make it before this test runs; a missing
// binary fails the test rather than skipping it.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "data/image/file_io.h"
#include "data/image/image.h"
#include "engine/autocast.h"
#include "pipeline/captioner.h"
#include "tests/harness/harness.h"
#include "tests/harness/shell.h"
#include "tests/pipeline/tiny_checkpoint.h"

namespace caption::pipeline {
namespace {

namespace fs = std::filesystem;

using AppRun = testing::CommandResult;
using testing::lines_of;

class CaptionAppTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new fs::path(testing::fresh_test_dir("pipeline_caption_app"));
    checkpoint_ = new std::string(testing::write_tiny_checkpoint(*dir_));
    fs::create_directories(*dir_ / "other");
    images_ = new std::vector<std::string>{
        testing::write_test_picture(*dir_, "first.png", 40, 30, 0),
        testing::write_test_picture(*dir_, "second.png", 64, 48, 3),
        testing::write_test_picture(*dir_ / "other", "first.png", 33, 31, 1),  // same stem
    };
  }
  static void TearDownTestSuite() {
    std::error_code ec;
    fs::remove_all(*dir_, ec);
    delete images_;
    delete checkpoint_;
    delete dir_;
  }

  static fs::path binary() {
    if (const char* env = std::getenv("CAPTION_APP")) return env;
    return fs::weakly_canonical(fs::path(CAPTION_TEST_TMP) / ".." / ".." / "bin" / "caption");
  }

  static AppRun run(const std::vector<std::string>& args) {
    const fs::path bin = binary();
    EXPECT_TRUE(fs::exists(bin)) << "the caption program is not built: " << bin
                                 << " (build the caption app before this test, or set CAPTION_APP)";
    std::vector<std::string> words = {bin.string()};
    words.insert(words.end(), args.begin(), args.end());
    return testing::run_shell(testing::shell_words(words), *dir_);
  }

  static fs::path* dir_;
  static std::string* checkpoint_;
  static std::vector<std::string>* images_;
};

fs::path* CaptionAppTest::dir_ = nullptr;
std::string* CaptionAppTest::checkpoint_ = nullptr;
std::vector<std::string>* CaptionAppTest::images_ = nullptr;

TEST_F(CaptionAppTest, HelpListsEveryOption) {
  const AppRun r = run({"--help"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  for (const char* option : {"--checkpoint", "--beam", "--length-penalty", "--max-len", "--json", "--attention-map",
                             "--device", "--amp", "--batch-size", "--read-threads", "IMAGE"})
    EXPECT_NE(r.out.find(option), std::string::npos) << option << " missing from:\n" << r.out;
}

TEST_F(CaptionAppTest, UsageErrorsExitWithTwo) {
  const AppRun no_image = run({"--checkpoint", *checkpoint_});
  EXPECT_EQ(no_image.exit_code, 2);
  EXPECT_NE(no_image.err.find("IMAGE"), std::string::npos) << no_image.err;
  EXPECT_EQ(run({"--checkpoint", *checkpoint_, "--beam", "0", (*images_)[0]}).exit_code, 2);
  EXPECT_EQ(run({"--checkpoint", *checkpoint_, "--beam", "two", (*images_)[0]}).exit_code, 2);
  EXPECT_EQ(run({"--checkpoint", *checkpoint_, "--batch-size", "0", (*images_)[0]}).exit_code, 2);
  EXPECT_EQ(run({"--checkpoint", *checkpoint_, "--read-threads", "-1", (*images_)[0]}).exit_code, 2);
  EXPECT_EQ(run({"--checkpoint", *checkpoint_, "--device", "gpu", (*images_)[0]}).exit_code, 2);
  EXPECT_EQ(run({"--checkpoint", *checkpoint_, "--no-such-option", (*images_)[0]}).exit_code, 2);
  EXPECT_EQ(run({(*images_)[0]}).exit_code, 2);  // no checkpoint
}

TEST_F(CaptionAppTest, PrintsTheLibraryCaptions) {
  const Captioner captioner(*checkpoint_);
  nn::DecodeOptions options = captioner.default_options();
  options.beam = 2;
  const AppRun one = run({"--checkpoint", *checkpoint_, "--beam", "2", "--device", "cpu", (*images_)[0]});
  ASSERT_EQ(one.exit_code, 0) << one.err;
  EXPECT_EQ(one.out, captioner.caption((*images_)[0], options).text + "\n");

  const AppRun several = run({"--checkpoint", *checkpoint_, "--beam", "2", "--batch-size", "2", (*images_)[0],
                              (*images_)[1], (*images_)[2]});
  ASSERT_EQ(several.exit_code, 0) << several.err;
  const std::vector<std::string> lines = lines_of(several.out);
  ASSERT_EQ(lines.size(), 3u) << several.out;
  for (size_t i = 0; i < 3; ++i)
    EXPECT_EQ(lines[i], (*images_)[i] + "\t" + captioner.caption((*images_)[i], options).text);
  // Reading ahead on threads, or not at all, prints the same lines.
  for (const char* threads : {"0", "3"}) {
    const AppRun r = run({"--checkpoint", *checkpoint_, "--beam", "2", "--batch-size", "2", "--read-threads",
                          threads, (*images_)[0], (*images_)[1], (*images_)[2]});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, several.out) << "--read-threads " << threads;
  }
}

TEST_F(CaptionAppTest, JsonLinesHoldTheWholeResult) {
  const Captioner captioner(*checkpoint_);
  const AppRun r = run({"--checkpoint", *checkpoint_, "--json", "--max-len", "4", (*images_)[0], (*images_)[1]});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::vector<std::string> lines = lines_of(r.out);
  ASSERT_EQ(lines.size(), 2u) << r.out;
  nn::DecodeOptions options = captioner.default_options();
  options.max_len = 4;
  for (size_t i = 0; i < lines.size(); ++i) {
    const nlohmann::json j = nlohmann::json::parse(lines[i]);
    for (const char* key : {"path", "caption", "words", "log_probs", "attention", "score", "finished"})
      EXPECT_TRUE(j.contains(key)) << key << " missing from " << lines[i];
    const CaptionResult expected = captioner.caption((*images_)[i], options);
    EXPECT_EQ(j.at("path").get<std::string>(), (*images_)[i]);
    EXPECT_EQ(j.at("caption").get<std::string>(), expected.text);
    EXPECT_EQ(j.at("words").get<std::vector<std::string>>(), expected.words);
    // The app captions the two images as one batch, the library each alone: the same
    // words, and numbers equal up to the last bits (a batch's products may run in other
    // BLAS kernels than one row's).
    EXPECT_TRUE(testing::near(j.at("log_probs").get<std::vector<float>>(), expected.log_probs, 1e-5,
                              "log_probs"));
    EXPECT_TRUE(testing::near(j.at("attention").get<std::vector<std::vector<float>>>(),
                              expected.attention, 1e-6, "attention"));
    EXPECT_LE(expected.words.size(), 4u);
    for (const auto& a : j.at("attention")) EXPECT_EQ(a.size(), 4u);
    EXPECT_NEAR(j.at("score").get<double>(), expected.score, 1e-5);
    EXPECT_FALSE(j.contains("attention_map"));
  }
}

// --amp runs the model under autocast: the library's autocast caption, which differs
// from the float32 one in the last digits of its log-probabilities.
TEST_F(CaptionAppTest, AmpCaptionsUnderAutocast) {
  const Captioner captioner(*checkpoint_);
  nn::DecodeOptions options = captioner.default_options();
  options.max_len = 4;
  const CaptionResult plain = captioner.caption((*images_)[0], options);
  CaptionResult amp;
  {
    AutocastGuard autocast;
    amp = captioner.caption((*images_)[0], options);
  }
  EXPECT_FALSE(testing::near(amp.log_probs, plain.log_probs, 1e-6, "amp against float32"));
  const AppRun r = run({"--checkpoint", *checkpoint_, "--amp", "--json", "--max-len", "4", (*images_)[0]});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j.at("words").get<std::vector<std::string>>(), amp.words);
  EXPECT_TRUE(testing::near(j.at("log_probs").get<std::vector<float>>(), amp.log_probs, 1e-6, "log_probs"));
}

// '-' reads one encoded image from standard input (`curl -s URL | caption ... -`).
TEST_F(CaptionAppTest, StandardInputIsOneImage) {
  const auto run_with_input = [](std::vector<std::string> args, const std::string& input) {
    args.insert(args.begin(), binary().string());
    return testing::run_shell(testing::shell_words(args) + " < " + testing::shell_quote(input), *dir_);
  };
  const Captioner captioner(*checkpoint_);
  const CaptionResult want = captioner.caption((*images_)[1]);
  AppRun r = run_with_input({"--checkpoint", *checkpoint_, "-"}, (*images_)[1]);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, want.text + "\n");

  const fs::path maps = *dir_ / "stdin-maps";
  r = run_with_input({"--checkpoint", *checkpoint_, "--json", "--attention-map", maps.string(), "-"}, (*images_)[1]);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j.at("path"), "stdin");
  EXPECT_EQ(j.at("words").get<std::vector<std::string>>(), want.words);
  EXPECT_EQ(j.at("attention_map"), (maps / "stdin.png").string());
  EXPECT_TRUE(fs::exists(maps / "stdin.png"));

  const std::string garbage = (*dir_ / "garbage.bin").string();
  data::write_file_atomic(garbage, std::string_view("this is not an image at all"));
  r = run_with_input({"--checkpoint", *checkpoint_, "-"}, garbage);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("stdin: not a decodable image"), std::string::npos) << r.err;
  EXPECT_TRUE(r.out.empty()) << r.out;
  r = run_with_input({"--checkpoint", *checkpoint_, "-"}, "/dev/null");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("stdin: empty file"), std::string::npos) << r.err;
  r = run_with_input({"--checkpoint", *checkpoint_, "-", (*images_)[0]}, (*images_)[1]);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("must be the only image"), std::string::npos) << r.err;
}

TEST_F(CaptionAppTest, AttentionMapsAreWrittenPerImage) {
  const fs::path maps = *dir_ / "maps" / "nested";
  const AppRun r = run({"--checkpoint", *checkpoint_, "--json", "--attention-map", maps.string(), (*images_)[0],
                        (*images_)[1], (*images_)[2]});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::vector<fs::path> expected{maps / "first.png", maps / "second.png", maps / "first-2.png"};
  const std::vector<std::string> lines = lines_of(r.out);
  ASSERT_EQ(lines.size(), 3u);
  for (size_t i = 0; i < expected.size(); ++i) {
    ASSERT_TRUE(fs::exists(expected[i])) << expected[i];
    EXPECT_FALSE(data::load_image(expected[i]).empty());
    EXPECT_NE(r.err.find(expected[i].string()), std::string::npos) << r.err;
    EXPECT_EQ(nlohmann::json::parse(lines[i]).at("attention_map").get<std::string>(), expected[i].string());
  }
}

TEST_F(CaptionAppTest, UnreadableImageIsNamedAndTheOthersStillCaptioned) {
  const std::string corrupt = (*dir_ / "corrupt.jpg").string();
  data::write_file_atomic(corrupt, std::string_view("\xff\xd8\xff\xe0 truncated jpeg"));
  const AppRun r = run({"--checkpoint", *checkpoint_, "--read-threads", "2", (*images_)[0], corrupt, (*images_)[1]});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("caption: error: "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(corrupt), std::string::npos) << r.err;
  const std::vector<std::string> lines = lines_of(r.out);
  ASSERT_EQ(lines.size(), 2u) << r.out;
  EXPECT_EQ(lines[0].rfind((*images_)[0] + "\t", 0), 0u);
  EXPECT_EQ(lines[1].rfind((*images_)[1] + "\t", 0), 0u);
}

TEST_F(CaptionAppTest, MissingOrTruncatedCheckpointExitsWithOne) {
  const std::string missing = (*dir_ / "absent.safetensors").string();
  const AppRun a = run({"--checkpoint", missing, (*images_)[0]});
  EXPECT_EQ(a.exit_code, 1);
  EXPECT_NE(a.err.find("caption: error: " + missing), std::string::npos) << a.err;
  const std::vector<std::uint8_t> bytes = data::read_file_bytes(*checkpoint_);
  const std::string cut = (*dir_ / "cut.safetensors").string();
  data::write_file_atomic(cut, std::span<const std::uint8_t>(bytes.data(), bytes.size() / 3));
  const AppRun b = run({"--checkpoint", cut, (*images_)[0]});
  EXPECT_EQ(b.exit_code, 1);
  EXPECT_NE(b.err.find(cut), std::string::npos) << b.err;
  EXPECT_TRUE(b.out.empty());
}

}  // namespace
}  // namespace caption::pipeline
