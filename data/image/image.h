// Decoded images and the decoder. An RgbImage is 8-bit RGB, interleaved (HWC), rows top
// to bottom: the one pixel format the rest of the pipeline sees, whatever the file held
// (grey is expanded to three channels, alpha is dropped, as PIL's convert("RGB") does).
//
// Four formats are accepted (JPEG, PNG, BMP, GIF first frame), recognised by their magic
// bytes. JPEG and PNG decode through libjpeg-turbo and libpng, as PIL does, so the pixels
// are PIL's (data/image/codecs.h); BMP and GIF through stb_image. Dimensions are read
// before any pixel is decoded and capped, so a small file that claims a huge image (a
// decompression bomb) is refused without allocating. stb silently zero-fills truncated
// BMPs, so BMPs get a size check of their own.
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace caption::data {

// 8-bit RGB, HWC, row-major. pixels.size() == width * height * 3.
struct RgbImage {
  int width = 0;
  int height = 0;
  std::vector<std::uint8_t> pixels;

  RgbImage() = default;
  RgbImage(int w, int h) : width(w), height(h), pixels(static_cast<size_t>(w) * h * 3, 0) {}

  std::uint8_t& at(int x, int y, int c) {
    return pixels[(static_cast<size_t>(y) * width + x) * 3 + c];
  }
  std::uint8_t at(int x, int y, int c) const {
    return pixels[(static_cast<size_t>(y) * width + x) * 3 + c];
  }
  bool empty() const { return width == 0 || height == 0; }
};

enum class ImageFormat { Unknown, Jpeg, Png, Bmp, Gif };

std::string_view format_name(ImageFormat format);

// Recognises the four accepted formats by their magic bytes.
ImageFormat sniff_image_format(std::span<const std::uint8_t> bytes);

// Limits against hostile or broken files. The defaults admit any real photograph.
struct DecodeLimits {
  std::int64_t max_pixels = 64'000'000;            // width * height
  int max_side = 32768;                            // either dimension
  std::uintmax_t max_file_bytes = 512ull << 20;    // refused before reading
};

// Decodes an in-memory file. `name` names the input in error messages (a path, or
// something like "<buffer>"). Throws caption::Error: "<name>: <problem>".
RgbImage decode_image(std::span<const std::uint8_t> bytes, std::string_view name,
                      const DecodeLimits& limits = {});

// Reads and decodes a file.
RgbImage load_image(const std::filesystem::path& path, const DecodeLimits& limits = {});

}  // namespace caption::data
