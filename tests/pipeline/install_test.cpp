// libcaption as a native program links it: `cmake --install` of this build into a fresh
// prefix, then examples/embed built against the installed tree (the CMake package, and
// pkg-config's caption.pc), run on a checkpoint, its output compared with the Captioner of
// this process. Also: the installed programs, configs and weight converter run from a
// moved prefix, and every installed header compiles in one translation unit with nothing
// but the installed include folder.
//
// tests/CMakeLists.txt passes the build's facts (binary dir, CMake, compiler, generator,
// install folders, prefix path, pkg-config) as CAPTION_INSTALL_* definitions.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "data/image/file_io.h"
#include "pipeline/captioner.h"
#include "tests/harness/scratch.h"
#include "tests/harness/shell.h"
#include "tests/pipeline/tiny_checkpoint.h"

namespace caption::pipeline {
namespace {

namespace fs = std::filesystem;
using testing::CommandResult;
using testing::run_shell;
using testing::shell_quote;
using testing::shell_words;

// The build's CMAKE_PREFIX_PATH (entries joined with '|').
std::vector<std::string> build_prefix_path() {
  std::vector<std::string> entries;
  std::istringstream in(CAPTION_INSTALL_PREFIX_PATH);
  for (std::string entry; std::getline(in, entry, '|');)
    if (!entry.empty()) entries.push_back(entry);
  return entries;
}

// Installs this build into dir/prefix and returns the prefix.
fs::path install_into(const fs::path& dir) {
  const fs::path prefix = dir / "prefix";
  const CommandResult r = run_shell(
      shell_words({CAPTION_INSTALL_CMAKE, "--install", CAPTION_INSTALL_BINARY_DIR, "--prefix", prefix.string()}), dir);
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  return prefix;
}

// The RUNPATH (or RPATH) entries of an ELF file, through readelf.
std::vector<std::string> runpath_of(const fs::path& file, const fs::path& dir) {
  const CommandResult r = run_shell("readelf -d " + shell_quote(file.string()), dir);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  std::vector<std::string> entries;
  for (const std::string& line : testing::lines_of(r.out)) {
    if (line.find("(RUNPATH)") == std::string::npos && line.find("(RPATH)") == std::string::npos) continue;
    const size_t open = line.find('['), close = line.rfind(']');
    if (open == std::string::npos || close == std::string::npos || close < open) continue;
    std::istringstream in(line.substr(open + 1, close - open - 1));
    for (std::string entry; std::getline(in, entry, ':');) entries.push_back(entry);
  }
  return entries;
}

bool names_the_build_folder(const std::vector<std::string>& runpath) {
  const fs::path build = fs::path(CAPTION_INSTALL_BINARY_DIR).lexically_normal();
  for (const std::string& entry : runpath) {
    const fs::path p = fs::path(entry).lexically_normal();
    if (p == build || p == build / "" || p.parent_path() == build) return true;
  }
  return false;
}

struct Fixture {
  fs::path checkpoint;
  std::vector<std::string> images;  // readable, then one missing and one corrupt
};

Fixture write_inputs(const fs::path& dir) {
  Fixture f;
  f.checkpoint = testing::write_tiny_checkpoint(dir);
  f.images.push_back(testing::write_test_picture(dir, "first.png", 40, 30, 0));
  f.images.push_back(testing::write_test_picture(dir, "second.png", 64, 48, 3));
  f.images.push_back((dir / "missing.png").string());
  const std::string corrupt = (dir / "corrupt.jpg").string();
  data::write_file_atomic(corrupt, std::string_view("\xff\xd8\xff\xe0 not a whole jpeg"));
  f.images.push_back(corrupt);
  return f;
}

// What examples/embed/caption_files prints for the readable images, computed here.
std::string expected_listing(const Fixture& f, int beam) {
  const Captioner captioner(f.checkpoint.string());
  nn::DecodeOptions options = captioner.default_options();
  options.beam = beam;
  std::ostringstream out;
  for (size_t i = 0; i < 2; ++i) {
    const CaptionResult r = captioner.caption(f.images[i], options);
    out << r.image_path << '\t' << r.text << '\t' << r.score << '\n';
    for (size_t w = 0; w < r.words.size(); ++w) {
      size_t best = 0;
      for (size_t p = 1; p < r.attention[w].size(); ++p)
        if (r.attention[w][p] > r.attention[w][best]) best = p;
      out << "  " << r.words[w] << '\t' << r.log_probs[w] << "\tcell " << best / r.grid_size << ','
          << best % r.grid_size << '\n';
    }
  }
  return out.str();
}

// Runs a built caption_files on the fixture and checks its output, errors and status.
void expect_example_output(const std::string& command_prefix, const fs::path& program, const Fixture& f,
                           const fs::path& dir) {
  std::vector<std::string> words = {program.string(), f.checkpoint.string(), "--beam", "2"};
  words.insert(words.end(), f.images.begin(), f.images.end());
  const CommandResult r = run_shell(command_prefix + shell_words(words), dir);
  EXPECT_EQ(r.exit_code, 1) << "an unreadable image makes the status 1\n" << r.err;
  EXPECT_EQ(r.out, expected_listing(f, 2)) << r.err;
  EXPECT_NE(r.err.find(f.images[2]), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(f.images[3]), std::string::npos) << r.err;

  const CommandResult bad = run_shell(
      command_prefix + shell_words({program.string(), (dir / "nothing.safetensors").string(), f.images[0]}), dir);
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("nothing.safetensors"), std::string::npos) << bad.err;
  EXPECT_TRUE(bad.out.empty()) << bad.out;
}

TEST(Install, TheInstalledTreeHoldsWhatItShould) {
  const fs::path dir = testing::scratch_dir("pipeline_install");
  const fs::path prefix = install_into(dir);
  const fs::path lib = prefix / CAPTION_INSTALL_LIBDIR;
  const fs::path include = prefix / CAPTION_INSTALL_INCLUDEDIR / "caption";
  for (const fs::path& p :
       {lib / "libcaption.so", lib / ("libcaption.so." CAPTION_INSTALL_SOVERSION), lib / "cmake/caption/captionConfig.cmake",
        lib / "cmake/caption/captionConfigVersion.cmake", lib / "cmake/caption/captionTargets.cmake",
        lib / "pkgconfig/caption.pc", include / "pipeline/captioner.h", include / "engine/tensor.h",
        include / "nn/caption_model.h", include / "data/image/image.h", include / "kernels/cpu/blas.h",
        prefix / CAPTION_INSTALL_BINDIR / "caption", prefix / CAPTION_INSTALL_BINDIR / "caption-train",
        prefix / CAPTION_INSTALL_DATADIR / "caption/configs/synthetic.toml",
        prefix / CAPTION_INSTALL_DATADIR / "caption/configs/flickr8k_resnet50.toml",
        prefix / CAPTION_INSTALL_DATADIR / "caption/weights-tools/convert_torchvision.py"})
    EXPECT_TRUE(fs::exists(p)) << p << " was not installed";
  // Installed files do not reach back into the build folder for libraries.
  for (const fs::path& p : {lib / "libcaption.so", prefix / CAPTION_INSTALL_BINDIR / "caption",
                            prefix / CAPTION_INSTALL_BINDIR / "caption-train"})
    EXPECT_FALSE(names_the_build_folder(runpath_of(p, dir))) << p << ": " << ::testing::PrintToString(runpath_of(p, dir));
  const std::vector<std::string> program_runpath = runpath_of(prefix / CAPTION_INSTALL_BINDIR / "caption", dir);
  ASSERT_FALSE(program_runpath.empty());
  EXPECT_EQ(program_runpath.front().rfind("$ORIGIN/", 0), 0u) << ::testing::PrintToString(program_runpath);
  // The CUDA backend's headers include the toolkit's: they stay out, and nothing else is
  // installed beside the headers.
  EXPECT_FALSE(fs::exists(include / "engine/cuda")) << "CUDA backend headers installed";
  EXPECT_FALSE(fs::exists(include / "kernels/cuda")) << "CUDA backend headers installed";
  for (const auto& entry : fs::recursive_directory_iterator(include)) {
    if (entry.is_regular_file()) {
      EXPECT_EQ(entry.path().extension(), ".h") << entry.path();
    }
  }
}

TEST(Install, ACMakeProgramBuildsAgainstThePackageAndCaptions) {
  const fs::path dir = testing::scratch_dir("pipeline_install");
  const fs::path prefix = install_into(dir);
  std::string prefix_path = prefix.string();
  for (const std::string& entry : build_prefix_path()) prefix_path.append(";").append(entry);
  const fs::path build = dir / "build-embed";
  const CommandResult configure = run_shell(
      shell_words({CAPTION_INSTALL_CMAKE, "-S", std::string(CAPTION_SOURCE_DIR) + "/examples/embed", "-B",
                   build.string(), "-G", CAPTION_INSTALL_GENERATOR, "-DCMAKE_BUILD_TYPE=Release",
                   "-DCMAKE_CXX_COMPILER=" CAPTION_INSTALL_CXX_COMPILER, "-DCMAKE_PREFIX_PATH=" + prefix_path}),
      dir);
  ASSERT_EQ(configure.exit_code, 0) << configure.out << configure.err;
  EXPECT_NE(configure.out.find("caption " CAPTION_INSTALL_VERSION), std::string::npos) << configure.out;
  const CommandResult compile = run_shell(shell_words({CAPTION_INSTALL_CMAKE, "--build", build.string()}), dir);
  ASSERT_EQ(compile.exit_code, 0) << compile.out << compile.err;

  // The program finds the installed libcaption on its own (CMake's RUNPATH), not this build's.
  const fs::path program = build / "caption_files";
  const std::vector<std::string> runpath = runpath_of(program, dir);
  EXPECT_NE(std::find(runpath.begin(), runpath.end(), (prefix / CAPTION_INSTALL_LIBDIR).string()), runpath.end())
      << ::testing::PrintToString(runpath);
  EXPECT_FALSE(names_the_build_folder(runpath)) << ::testing::PrintToString(runpath);
  expect_example_output("", program, write_inputs(dir), dir);
}

// The prefix moved after installing: the programs find their library through $ORIGIN,
// and CMake's package finds itself from where it lies.
TEST(Install, TheProgramsRunFromAMovedPrefix) {
  const fs::path dir = testing::scratch_dir("pipeline_install");
  const fs::path moved = dir / "moved";
  fs::rename(install_into(dir), moved);
  const Fixture f = write_inputs(dir);
  const fs::path caption = moved / CAPTION_INSTALL_BINDIR / "caption";
  const CommandResult version = run_shell(shell_words({caption.string(), "--version"}), dir);
  EXPECT_EQ(version.exit_code, 0) << version.err;
  EXPECT_EQ(version.out, "caption " CAPTION_INSTALL_VERSION "\n");
  const CommandResult r =
      run_shell(shell_words({caption.string(), "--checkpoint", f.checkpoint.string(), f.images[0]}), dir);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const Captioner captioner(f.checkpoint.string());
  EXPECT_EQ(r.out, captioner.caption(f.images[0]).text + "\n");

  const fs::path train = moved / CAPTION_INSTALL_BINDIR / "caption-train";
  const CommandResult help = run_shell(shell_words({train.string(), "--help"}), dir);
  EXPECT_EQ(help.exit_code, 0) << help.err;
  EXPECT_NE(help.out.find("fit"), std::string::npos) << help.out;

  const fs::path config = moved / CAPTION_INSTALL_LIBDIR / "cmake/caption/captionConfig.cmake";
  const std::string text = testing::read_text(config);
  EXPECT_EQ(text.find(CAPTION_INSTALL_BINARY_DIR), std::string::npos) << "the package names the build folder";
  EXPECT_EQ(text.find((dir / "prefix").string()), std::string::npos) << "the package names the install prefix";
}

// What a user of the installed programs starts from: the configurations (read by the
// installed caption-train) and the weight converter (run from where it was installed,
// finding its sibling modules), which makes a ResNet-18 file without any download.
TEST(Install, TheConfigsAndTheWeightConverterWorkFromThePrefix) {
  const fs::path dir = testing::scratch_dir("pipeline_install");
  const fs::path moved = dir / "moved";
  fs::rename(install_into(dir), moved);
  const fs::path share = moved / CAPTION_INSTALL_DATADIR / "caption";
  const fs::path train = moved / CAPTION_INSTALL_BINDIR / "caption-train";
  const CommandResult fit =
      run_shell(shell_words({train.string(), "fit", "--config", (share / "configs/synthetic.toml").string(), "--data",
                             (dir / "no-such-data").string(), "--output", (dir / "run").string()}),
                dir);
  EXPECT_EQ(fit.exit_code, 1) << fit.err;
  EXPECT_NE(fit.err.find("no-such-data"), std::string::npos) << "the config was refused before the data:\n" << fit.err;

  const std::string python = CAPTION_REFERENCE_PYTHON;
  if (run_shell(shell_quote(python) + " -c 'import torch, torchvision'", dir).exit_code != 0)
    GTEST_SKIP() << python << " lacks torch or torchvision: the converter cannot run";
  const fs::path out = dir / "resnet18.safetensors";
  const CommandResult convert =
      run_shell(shell_words({python, (share / "weights-tools/convert_torchvision.py").string(), "--depth", "18",
                             "--random-init", "1", out.string()}),
                dir);
  EXPECT_EQ(convert.exit_code, 0) << convert.out << convert.err;
  EXPECT_GT(fs::exists(out) ? fs::file_size(out) : 0, uintmax_t{40} << 20) << "ResNet-18's 11.7M parameters";
}

#ifdef CAPTION_INSTALL_PKG_CONFIG
// pkg-config's view of the same tree (moved, too): the flags compile every installed
// header on its own footing and build the example program.
TEST(Install, PkgConfigFlagsBuildTheExampleAndEveryHeader) {
  const fs::path dir = testing::scratch_dir("pipeline_install");
  const fs::path moved = dir / "moved";
  fs::rename(install_into(dir), moved);
  const std::string env = "PKG_CONFIG_PATH=" + shell_quote((moved / CAPTION_INSTALL_LIBDIR / "pkgconfig").string()) + " ";
  const CommandResult flags =
      run_shell(env + shell_words({CAPTION_INSTALL_PKG_CONFIG, "--cflags", "--libs", "caption"}), dir);
  ASSERT_EQ(flags.exit_code, 0) << flags.err;
  std::string pc_flags = flags.out;
  while (!pc_flags.empty() && (pc_flags.back() == '\n' || pc_flags.back() == ' ')) pc_flags.pop_back();
  // The include and library folders, found from the .pc file's place.
  std::vector<fs::path> include_dirs, library_dirs;
  std::istringstream words(pc_flags);
  for (std::string w; words >> w;) {
    if (w.rfind("-I", 0) == 0) include_dirs.push_back(fs::weakly_canonical(w.substr(2)));
    if (w.rfind("-L", 0) == 0) library_dirs.push_back(fs::weakly_canonical(w.substr(2)));
  }
  EXPECT_EQ(include_dirs, std::vector<fs::path>{fs::weakly_canonical(moved / CAPTION_INSTALL_INCLUDEDIR / "caption")})
      << pc_flags;
  EXPECT_EQ(library_dirs, std::vector<fs::path>{fs::weakly_canonical(moved / CAPTION_INSTALL_LIBDIR)}) << pc_flags;

  // Every installed header, included together, with nothing but the installed folder and
  // the flags, warnings as errors: a header that needs one that was left out (or a
  // third-party header the package does not promise), or that warns in a program built
  // with -Wall -Wextra -Wpedantic, fails here.
  const fs::path include = moved / CAPTION_INSTALL_INCLUDEDIR / "caption";
  std::string all;
  int headers = 0;
  for (const auto& entry : fs::recursive_directory_iterator(include))
    if (entry.is_regular_file()) {
      all.append("#include \"").append(fs::relative(entry.path(), include).string()).append("\"\n");
      ++headers;
    }
  EXPECT_GT(headers, 80);
  data::write_file_atomic((dir / "all_headers.cpp").string(), all + "int main() { return 0; }\n");
  const CommandResult headers_compile =
      run_shell(std::string(CAPTION_INSTALL_CXX_COMPILER) + " -fsyntax-only -Wall -Wextra -Wpedantic -Werror " + pc_flags + " " +
                    shell_quote((dir / "all_headers.cpp").string()),
                dir);
  EXPECT_EQ(headers_compile.exit_code, 0) << headers_compile.err;

  const fs::path program = dir / "caption_files_pc";
  const CommandResult compile = run_shell(
      std::string(CAPTION_INSTALL_CXX_COMPILER) + " -O2 " +
          shell_quote(std::string(CAPTION_SOURCE_DIR) + "/examples/embed/caption_files.cpp") + " -o " +
          shell_quote(program.string()) + " " + pc_flags,
      dir);
  ASSERT_EQ(compile.exit_code, 0) << compile.err;
  expect_example_output("LD_LIBRARY_PATH=" + shell_quote((moved / CAPTION_INSTALL_LIBDIR).string()) + " ", program,
                        write_inputs(dir), dir);
}
#endif

}  // namespace
}  // namespace caption::pipeline
