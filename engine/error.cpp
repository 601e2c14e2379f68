// Logging for paths that must not throw. Writes to stderr, one line per message.
#include "engine/error.h"

#include <cstdio>

namespace caption {

void log_error(const std::string& message) noexcept {
  std::fprintf(stderr, "caption: error: %s\n", message.c_str());
}
void log_warning(const std::string& message) noexcept {
  std::fprintf(stderr, "caption: warning: %s\n", message.c_str());
}
void log_info(const std::string& message) noexcept {
  std::fprintf(stderr, "caption: %s\n", message.c_str());
}

}  // namespace caption
