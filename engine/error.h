// Errors of the engine: one exception type with a message that names the input and the
// problem, and the check macros that build it. Checks never print-and-continue: a
// failed check throws. Destructors must not throw: they call log_error instead.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace caption {

// The one exception type of the library. what() is a complete sentence for a user:
// "<what input>: <what is wrong>" (and, for internal checks, the source location).
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

// Concatenates any streamable values into a string: str("shape ", 3, "x", 4).
template <typename... Args>
std::string str(Args&&... args) {
  std::ostringstream os;
  (os << ... << std::forward<Args>(args));
  return os.str();
}

// Logs an error without throwing (for destructors and cleanup paths).
void log_error(const std::string& message) noexcept;
void log_warning(const std::string& message) noexcept;
void log_info(const std::string& message) noexcept;

}  // namespace caption

// CAPTION_CHECK(cond, parts...): throws caption::Error with the message parts when cond
// is false. Use for bad input at the library's edges (the message names the input).
#define CAPTION_CHECK(cond, ...)                                  \
  do {                                                            \
    if (!(cond)) throw ::caption::Error(::caption::str(__VA_ARGS__)); \
  } while (0)

// CAPTION_ASSERT(cond, parts...): an internal invariant; the message carries the
// failing condition and the source location, since it reports a bug of ours.
#define CAPTION_ASSERT(cond, ...)                                                     \
  do {                                                                                \
    if (!(cond))                                                                      \
      throw ::caption::Error(::caption::str("internal error: ", #cond, " failed at ", \
                                            __FILE__, ":", __LINE__,                  \
                                            ": " __VA_OPT__(, ) __VA_ARGS__));        \
  } while (0)
