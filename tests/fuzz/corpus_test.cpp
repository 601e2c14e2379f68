// Replays tests/fuzz/corpus/<target>/* through the fuzz targets (targets.h) in the
// ordinary suite: every input must load or be refused with a caption::Error naming the
// input; files named ok-* must load and files named bad-* must be refused. The inputs
// that fuzzing campaigns found (find-*) stay here as regression cases.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "tests/fuzz/targets.h"

namespace {

namespace fs = std::filesystem;

std::vector<std::uint8_t> read_all(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

class FuzzCorpus : public ::testing::TestWithParam<caption::fuzz::Target> {};

TEST_P(FuzzCorpus, EveryInputLoadsOrIsRefusedByName) {
  const auto& target = GetParam();
  const fs::path dir = fs::path(CAPTION_SOURCE_DIR) / "tests/fuzz/corpus" / target.name;
  ASSERT_TRUE(fs::is_directory(dir)) << dir;
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir))
    if (entry.is_regular_file()) files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  size_t ok = 0, bad = 0;
  for (const auto& file : files) {
    const std::string name = file.filename().string();
    SCOPED_TRACE(file.string());
    const auto bytes = read_all(file);
    caption::fuzz::Outcome outcome;
    try {
      outcome = target.fn(bytes);
    } catch (const std::exception& e) {
      ADD_FAILURE() << "escaped as another exception: " << e.what();
      continue;
    }
    if (!outcome.loaded) {
      EXPECT_NE(outcome.error.find(target.input_name), std::string::npos)
          << "the message does not name the input: " << outcome.error;
    }
    if (name.starts_with("ok-")) {
      EXPECT_TRUE(outcome.loaded) << outcome.error;
      ++ok;
    } else if (name.starts_with("bad-")) {
      EXPECT_FALSE(outcome.loaded);
      ++bad;
    }
  }
  // Each target keeps at least one input it must accept and one it must refuse.
  if (target.has_valid_seed) {
    EXPECT_GE(ok, 1u);
  }
  EXPECT_GE(bad, 1u);
}

INSTANTIATE_TEST_SUITE_P(Targets, FuzzCorpus, ::testing::ValuesIn(caption::fuzz::kTargets),
                         [](const auto& param_info) { return std::string(param_info.param.name); });

}  // namespace
