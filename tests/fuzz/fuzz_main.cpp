// One libFuzzer program per target of targets.h (CMake defines CAPTION_FUZZ_TARGET to the
// target's function). A refusal by caption::Error is an ordinary outcome; anything
// else leaves the function and libFuzzer reports it with the input that caused it.
#include <cstddef>
#include <cstdint>

#include "tests/fuzz/targets.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  (void)caption::fuzz::CAPTION_FUZZ_TARGET(std::span<const std::uint8_t>(data, size));
  return 0;
}
