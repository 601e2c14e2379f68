// A scratch directory private to the running test.
//
// CTest runs every GoogleTest test as its own process, several at once (the README's
// test command uses -j), so two tests of one program that write the same file name under
// a shared directory race: one truncates the file while the other reads it. Each test
// gets CAPTION_TEST_TMP/<area>/<Suite.Test>, emptied the first time this process asks
// for it, so files left by an earlier run never leak into this one either.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <set>
#include <string>

#ifndef CAPTION_TEST_TMP
#error "scratch.h needs CAPTION_TEST_TMP (defined for every test program by tests/CMakeLists.txt)"
#endif

namespace caption::testing {

inline std::filesystem::path scratch_dir(const std::string& area) {
  const ::testing::TestInfo* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string name = info == nullptr ? std::string("no_test")
                                     : std::string(info->test_suite_name()) + "." + info->name();
  for (char& c : name)
    if (c == '/') c = '_';  // parameterised suites and names carry slashes
  const std::filesystem::path dir = std::filesystem::path(CAPTION_TEST_TMP) / area / name;
  static std::set<std::string> emptied;
  if (emptied.insert(dir.string()).second) std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

}  // namespace caption::testing
