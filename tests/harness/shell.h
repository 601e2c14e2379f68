// Running a program from a test as a user would, through the shell: its exit status,
// standard output and standard error (each written to a file in `dir`, then read back).
#pragma once

#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace caption::testing {

struct CommandResult {
  int exit_code = -1;  // -1: killed by a signal
  std::string out, err;
};

inline std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

inline std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// One word for sh: single quotes, with embedded ones closed, escaped and reopened.
inline std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) {
    if (c == '\'')
      q.append("'\\''");
    else
      q.push_back(c);
  }
  q.push_back('\'');
  return q;
}

// `command` is shell text (quote its words with shell_quote); its output goes to
// dir/stdout.txt and dir/stderr.txt.
inline CommandResult run_shell(const std::string& command, const std::filesystem::path& dir) {
  const std::filesystem::path out = dir / "stdout.txt", err = dir / "stderr.txt";
  std::string cmd = "(" + command + ")";
  cmd.append(" >").append(shell_quote(out.string())).append(" 2>").append(shell_quote(err.string()));
  const int status = std::system(cmd.c_str());
  CommandResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = read_text(out);
  r.err = read_text(err);
  return r;
}

// The words quoted and joined: argv as one shell command.
inline std::string shell_words(const std::vector<std::string>& words) {
  std::string cmd;
  for (const std::string& w : words) cmd.append(cmd.empty() ? "" : " ").append(shell_quote(w));
  return cmd;
}

}  // namespace caption::testing
