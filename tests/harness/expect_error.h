// Checking that bad input is refused with a message that names the problem.
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "engine/error.h"

namespace caption::testing {

// The message of the caption::Error that f throws ("" if it throws none).
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// Expects f to throw caption::Error whose message contains `fragment`.
template <typename F>
void expect_error(F&& f, const std::string& fragment) {
  const std::string message = error_of(f);
  if (message.empty()) {
    ADD_FAILURE() << "expected an error containing '" << fragment << "'";
    return;
  }
  EXPECT_NE(message.find(fragment), std::string::npos)
      << "message '" << message << "' lacks '" << fragment << "'";
}

}  // namespace caption::testing

// Expects `statement` to throw caption::Error with `text` in its message.
#define EXPECT_ERROR_WITH(statement, text)                                                  \
  do {                                                                                      \
    const std::string caption_message_ = ::caption::testing::error_of([&] { statement; }); \
    EXPECT_FALSE(caption_message_.empty()) << #statement " did not throw caption::Error";  \
    EXPECT_NE(caption_message_.find(text), std::string::npos)                              \
        << "message: " << caption_message_;                                                 \
  } while (0)
