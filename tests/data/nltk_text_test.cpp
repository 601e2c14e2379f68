// Cross-check with NLTK itself: runs tests/data/nltk_text_reference.py with the
// reference Python (CAPTION_REFERENCE_PYTHON: Debian's, with NLTK 3.8), which prints
// NLTK's lemma for some 26k (word, part of speech) queries and its Porter stem for some 11k words, and
// compares every one with ours. Skips, with the reason, when that interpreter, NLTK or
// the WordNet database is missing; any other failure of the script fails the test.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <sys/wait.h>

#include <gtest/gtest.h>

#include "data/text/porter.h"
#include "data/text/wordnet.h"
#include "tests/harness/scratch.h"

namespace caption::text {
namespace {

namespace fs = std::filesystem;

constexpr const char* kPython = CAPTION_REFERENCE_PYTHON;

struct ScriptResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

ScriptResult run_reference() {
  fs::path tmp = caption::testing::scratch_dir("nltk_text");
  fs::path err_file = tmp / "stderr.txt";
  fs::path script = fs::path(CAPTION_SOURCE_DIR) / "tests/data/nltk_text_reference.py";
  std::string cmd = std::string(kPython) + " '" + script.string() + "' '" +
                    default_wordnet_dir().string() + "' 2>'" + err_file.string() + "'";
  ScriptResult r;
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return r;
  char buf[1 << 16];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  int status = pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::ifstream e(err_file);
  std::stringstream ss;
  ss << e.rdbuf();
  r.err = ss.str();
  return r;
}

std::vector<std::string> split_tabs(const std::string& line) {
  std::vector<std::string> f;
  size_t start = 0;
  for (;;) {
    size_t t = line.find('\t', start);
    f.push_back(line.substr(start, t - start));
    if (t == std::string::npos) break;
    start = t + 1;
  }
  return f;
}

TEST(NltkCrossCheck, LemmasAndStemsMatchNltkExactly) {
  if (!fs::exists(kPython)) GTEST_SKIP() << kPython << " not found (the reference Python, with NLTK)";
  if (!fs::exists(default_wordnet_dir() / "index.noun"))
    GTEST_SKIP() << "WordNet database not found at " << default_wordnet_dir();
  ScriptResult r = run_reference();
  if (r.exit_code == 3) GTEST_SKIP() << r.out << r.err;
  ASSERT_EQ(r.exit_code, 0) << "nltk_text_reference.py failed:\n" << r.out.substr(0, 2000)
                            << r.err;

  WordNetLemmatizer wn;
  size_t lemmas = 0, stems = 0, mismatches = 0;
  std::istringstream in(r.out);
  std::string line;
  size_t line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    auto f = split_tabs(line);
    std::string ours, theirs, query;
    if (f.size() == 4 && f[0] == "L") {
      ++lemmas;
      ours = wn.lemmatize(f[2], parse_pos(f[1], "reference"));
      theirs = f[3];
      query = "lemmatize('" + f[2] + "', '" + f[1] + "')";
    } else if (f.size() == 3 && f[0] == "S") {
      ++stems;
      ours = porter_stem(f[1]);
      theirs = f[2];
      query = "stem('" + f[1] + "')";
    } else {
      ADD_FAILURE() << "unexpected reference line " << line_no << ": " << line;
      continue;
    }
    if (ours != theirs && ++mismatches <= 30)
      ADD_FAILURE() << query << ": NLTK '" << theirs << "', ours '" << ours << "'";
  }
  EXPECT_EQ(mismatches, 0u);
  // The script's lists are several hundred words per part of speech at least.
  EXPECT_GT(lemmas, 2000u);
  EXPECT_GT(stems, 1000u);
  std::printf("compared %zu lemmas and %zu stems with NLTK, %zu differ\n", lemmas, stems,
              mismatches);
}

}  // namespace
}  // namespace caption::text
