// caption-train as a user runs it: help, the synthetic set, and bad options, configs and
// paths refused with a message that names them (exit 2 for usage errors, 1 otherwise).
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace {

namespace fs = std::filesystem;

struct AppResult {
  int exit_code = -1;
  std::string out, err;
};

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// One folder per test: CTest runs the tests of this program in parallel processes.
fs::path dir() {
  const fs::path p = fs::path(CAPTION_TEST_TMP) / "caption_train_app" /
                     ::testing::UnitTest::GetInstance()->current_test_info()->name();
  fs::create_directories(p);
  return p;
}

AppResult run(const std::string& args) {
  const fs::path bin = fs::weakly_canonical(fs::path(CAPTION_TEST_TMP) / ".." / ".." / "bin" / "caption-train");
  EXPECT_TRUE(fs::exists(bin)) << "caption-train is not built: " << bin;
  // Built with append: GCC 12 warns falsely (-Wrestrict) on "literal" + std::string.
  std::string cmd;
  cmd.append("'").append(bin.string()).append("' ").append(args);
  cmd.append(" >'").append((dir() / "out").string()).append("' 2>'").append((dir() / "err").string()).append("'");
  const int status = std::system(cmd.c_str());
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, slurp(dir() / "out"), slurp(dir() / "err")};
}

void write(const fs::path& p, const std::string& text) {
  std::ofstream out(p);
  out << text;
}

TEST(CaptionTrainApp, HelpAndUsageErrors) {
  AppResult r = run("--help");
  EXPECT_EQ(r.exit_code, 0);
  for (const char* sub : {"synth", "fit", "lr-find", "overfit", "grad-flow", "evaluate"})
    EXPECT_NE(r.out.find(sub), std::string::npos) << sub;
  r = run("fit --help");
  EXPECT_EQ(r.exit_code, 0);
  for (const char* opt : {"--teacher-forcing", "--scheduler", "--early-stopping", "--no-lowercase", "--resume"})
    EXPECT_NE(r.out.find(opt), std::string::npos) << opt;
  EXPECT_EQ(run("").exit_code, 2);                                  // no subcommand
  EXPECT_EQ(run("fit --scheduler sometimes").exit_code, 2);         // not a choice
  EXPECT_EQ(run("fit --epochs many").exit_code, 2);                 // not a number
  EXPECT_EQ(run("fly").exit_code, 2);                               // unknown subcommand
}

TEST(CaptionTrainApp, BadConfigsAndPathsAreNamed) {
  write(dir() / "bad.toml", "epochs = 3\nwarp-speed = 9\n");
  AppResult r = run("fit --config '" + (dir() / "bad.toml").string() + "' --data /nowhere");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("bad.toml: unknown option 'warp-speed'"), std::string::npos) << r.err;
  write(dir() / "flag.toml", "lemmatize = 3\n");
  r = run("fit --config '" + (dir() / "flag.toml").string() + "' --data /nowhere");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("'lemmatize' is on/off"), std::string::npos) << r.err;
  r = run("fit --config /nowhere/missing.toml --data /nowhere");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("missing.toml"), std::string::npos) << r.err;
  r = run("fit --data /nowhere/flickr --output '" + (dir() / "run").string() + "'");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("/nowhere/flickr"), std::string::npos) << r.err;
  r = run("fit --data /nowhere --teacher-forcing 1.5");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--teacher-forcing"), std::string::npos) << r.err;
  r = run("fit --data /nowhere --step-bucket 0");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--step-bucket must be between 1 and 64, got 0"), std::string::npos) << r.err;
  r = run("fit --data /nowhere --fine-tune from:9");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("from:9"), std::string::npos) << r.err;
  r = run("evaluate --checkpoint /nowhere/model.safetensors --data /nowhere");
  EXPECT_EQ(r.exit_code, 1);
}

TEST(CaptionTrainApp, SynthWritesTheFlickrLayoutAndRefusesToOverwrite) {
  const fs::path out = dir() / "synthetic";
  fs::remove_all(out);
  AppResult r = run("synth --out '" + out.string() + "' --train 4 --val 2 --test 2 --image-size 32");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(fs::exists(out / "Flickr8k.token.txt"));
  EXPECT_TRUE(fs::exists(out / "Flickr_8k.testImages.txt"));
  r = run("synth --out '" + out.string() + "' --train 4 --val 2 --test 2");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find(out.string()), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("--overwrite"), std::string::npos) << r.err;
}

}  // namespace
