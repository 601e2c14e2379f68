// Whole-file reading and atomic writing, shared by the image writer, the synthetic data
// generator and anything else in data/ that produces files.
//
// Atomic writes go to a temporary file in the same directory (same filesystem, so the
// rename cannot turn into a copy), are flushed and closed, and are then renamed over
// the target: a reader sees either the old file or the complete new one, and an
// interrupted run leaves at most a "*.tmp-*" file, never a truncated target.
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <string_view>
#include <vector>

namespace caption::data {

// Whole file into memory. Throws caption::Error naming the path when the file is
// missing, is not a regular file, cannot be read, or is larger than max_bytes.
std::vector<std::uint8_t> read_file_bytes(const std::filesystem::path& path,
                                          std::uintmax_t max_bytes = 512ull << 20);

// Writes bytes to path atomically (temp file + rename). The parent directory must
// exist. Throws caption::Error naming the path on failure (the temp file is removed).
void write_file_atomic(const std::filesystem::path& path, std::span<const std::uint8_t> bytes);
void write_file_atomic(const std::filesystem::path& path, std::string_view text);

}  // namespace caption::data
