// PNG output for images the project produces (synthetic data, attention overlays).
// Encoding uses stb_image_write, whose deflate is deterministic: the same pixels give
// the same bytes on every platform, which the synthetic data set relies on.
#pragma once

#include <cstdint>
#include <filesystem>
#include <vector>

#include "data/image/image.h"

namespace caption::data {

// The PNG file's bytes. Throws caption::Error for an empty or inconsistent image.
std::vector<std::uint8_t> encode_png(const RgbImage& image);

// encode_png, written atomically (temp file + rename, see file_io.h).
void write_png(const RgbImage& image, const std::filesystem::path& path);

}  // namespace caption::data
