// Image decoding (see image.h for the contract): JPEG and PNG, the formats of real
// datasets, through libjpeg-turbo and libpng (codecs.h: PIL's own decoders, so pixels
// match a PyTorch pipeline's exactly, and hardened against hostile files); BMP and GIF
// through stb_image. This file holds the one copy of stb_image's implementation in the
// library; it is compiled with STB_IMAGE_STATIC so that none of stb's symbols leak out
// of libcaption (a program may link its own stb), and with only those two formats.
// stb 2.27's JPEG decoder, used before, wrote past a Huffman table on a crafted file
// (found by tests/fuzz in its first minute).
//
// Order of checks for an input: size > 0, magic bytes name an accepted format, the
// dimensions the header states against the caps, a format-specific completeness check
// (BMP pixel array present, GIF first frame terminated, JPEG scan followed by its end
// marker), then the format's decoder (which checks the caps again on what it reads).
#include "data/image/image.h"

#include <climits>

#include "data/image/codecs.h"
#include "data/image/file_io.h"
#include "engine/error.h"

#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_STATIC
#define STBI_ONLY_BMP
#define STBI_ONLY_GIF
#define STBI_NO_STDIO
#define STBI_NO_LINEAR
#define STBI_NO_HDR
#define STBI_MAX_DIMENSIONS (1 << 20)
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#endif
#include "stb_image.h"
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

namespace caption::data {

std::string_view format_name(ImageFormat format) {
  switch (format) {
    case ImageFormat::Jpeg: return "JPEG";
    case ImageFormat::Png: return "PNG";
    case ImageFormat::Bmp: return "BMP";
    case ImageFormat::Gif: return "GIF";
    case ImageFormat::Unknown: break;
  }
  return "unknown";
}

ImageFormat sniff_image_format(std::span<const std::uint8_t> b) {
  auto starts = [&](std::initializer_list<std::uint8_t> magic) {
    if (b.size() < magic.size()) return false;
    size_t i = 0;
    for (std::uint8_t m : magic)
      if (b[i++] != m) return false;
    return true;
  };
  if (starts({0xFF, 0xD8, 0xFF})) return ImageFormat::Jpeg;
  if (starts({0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A})) return ImageFormat::Png;
  if (starts({'G', 'I', 'F', '8'})) return ImageFormat::Gif;
  // "BM" alone is too weak a signature; the DIB header size must also be a known one.
  if (starts({'B', 'M'}) && b.size() >= 18) {
    const std::uint32_t dib = b[14] | (b[15] << 8) | (b[16] << 16) | (std::uint32_t(b[17]) << 24);
    if (dib == 12 || dib == 40 || dib == 56 || dib == 108 || dib == 124) return ImageFormat::Bmp;
  }
  return ImageFormat::Unknown;
}

namespace {

std::uint32_t le16(std::span<const std::uint8_t> b, size_t at) {
  return b[at] | (std::uint32_t(b[at + 1]) << 8);
}
std::uint32_t le32(std::span<const std::uint8_t> b, size_t at) {
  return le16(b, at) | (le16(b, at + 2) << 16);
}

// stb reads past the end of a BMP as zeros and reports success, so check that the
// uncompressed pixel array is all there. Returns an empty string when it is.
std::string bmp_truncation(std::span<const std::uint8_t> b) {
  if (b.size() < 30) return "header cut short";
  const std::uint32_t offset = le32(b, 10);
  const std::uint32_t dib = le32(b, 14);
  std::int64_t width = 0, height = 0;
  std::uint32_t bpp = 0, compression = 0;
  if (dib == 12) {
    width = le16(b, 18);
    height = le16(b, 20);
    bpp = le16(b, 24);
  } else {
    if (b.size() < 34) return "header cut short";
    width = static_cast<std::int32_t>(le32(b, 18));
    height = static_cast<std::int32_t>(le32(b, 22));
    bpp = le16(b, 28);
    compression = le32(b, 30);
  }
  const bool uncompressed = compression == 0 || compression == 3 || compression == 6;
  if (!uncompressed || width <= 0 || bpp == 0) return {};  // stb decides
  if (height < 0) height = -height;
  const std::int64_t stride = ((width * bpp + 31) / 32) * 4;
  const std::int64_t needed = static_cast<std::int64_t>(offset) + stride * height;
  if (static_cast<std::int64_t>(b.size()) < needed)
    return str("truncated BMP (", b.size(), " bytes, the pixel array needs ", needed, ")");
  return {};
}

// stb returns a partial first frame when a GIF's LZW data stops early, so walk the block
// structure up to the end of the first image's data sub-blocks.
std::string gif_truncation(std::span<const std::uint8_t> b) {
  const std::string cut = "truncated GIF (the first frame's data ends early)";
  size_t p = 13;
  if (b.size() < p) return cut;
  if (b[10] & 0x80) p += 3u * (1u << ((b[10] & 7) + 1));  // global colour table
  auto skip_sub_blocks = [&]() {
    while (p < b.size()) {
      const std::uint8_t len = b[p++];
      if (len == 0) return true;
      p += len;
    }
    return false;
  };
  while (p < b.size()) {
    const std::uint8_t tag = b[p++];
    if (tag == 0x21) {  // extension: label, then sub-blocks
      if (++p > b.size() || !skip_sub_blocks()) return cut;
    } else if (tag == 0x2C) {  // image descriptor
      if (p + 9 > b.size()) return cut;
      const std::uint8_t flags = b[p + 8];
      p += 9;
      if (flags & 0x80) p += 3u * (1u << ((flags & 7) + 1));  // local colour table
      if (++p > b.size()) return cut;                          // LZW minimum code size
      return skip_sub_blocks() ? std::string() : cut;
    } else if (tag == 0x3B) {
      return "GIF holds no image";
    } else {
      return str("corrupt GIF (unknown block 0x", std::hex, int(tag), ")");
    }
  }
  return cut;
}

// A complete JPEG has an end-of-image marker after its last start-of-scan marker.
// Entropy-coded data escapes 0xFF bytes, so these two markers cannot appear inside it.
std::string jpeg_truncation(std::span<const std::uint8_t> b) {
  size_t last_sos = 0, last_eoi = 0;
  for (size_t i = 0; i + 1 < b.size(); ++i) {
    if (b[i] != 0xFF) continue;
    if (b[i + 1] == 0xDA) last_sos = i;
    else if (b[i + 1] == 0xD9) last_eoi = i;
  }
  if (last_sos == 0) return "truncated or corrupt JPEG (no image data)";
  if (last_eoi < last_sos) return "truncated JPEG (no end-of-image marker after the image data)";
  return {};
}

std::uint32_t be16(std::span<const std::uint8_t> b, size_t at) {
  return (std::uint32_t(b[at]) << 8) | b[at + 1];
}

// Dimensions as the file's header states them, read here rather than with stbi_info
// because stb refuses very large images with a generic "unknown image type" (it tries
// every format and keeps the last reason), and the user should hear "too large".
// Returns false when the header is too short or, for JPEG, no frame header is found.
bool header_dimensions(std::span<const std::uint8_t> b, ImageFormat format, std::int64_t& w,
                       std::int64_t& h) {
  switch (format) {
    case ImageFormat::Png:
      if (b.size() < 24) return false;
      w = (std::int64_t(be16(b, 16)) << 16) | be16(b, 18);
      h = (std::int64_t(be16(b, 20)) << 16) | be16(b, 22);
      return true;
    case ImageFormat::Gif:
      if (b.size() < 10) return false;
      w = le16(b, 6);
      h = le16(b, 8);
      return true;
    case ImageFormat::Bmp:
      if (b.size() < 26) return false;
      if (le32(b, 14) == 12) {
        w = le16(b, 18);
        h = le16(b, 20);
      } else {
        w = static_cast<std::int32_t>(le32(b, 18));
        h = static_cast<std::int32_t>(le32(b, 22));
        if (h < 0) h = -h;  // top-down BMP
      }
      return true;
    case ImageFormat::Jpeg: {
      size_t p = 2;
      while (p + 4 <= b.size()) {
        if (b[p] != 0xFF) return false;
        const std::uint8_t m = b[p + 1];
        if (m == 0xFF) { ++p; continue; }  // fill byte
        const bool sof = m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC;
        if (sof) {
          if (p + 9 > b.size()) return false;
          h = be16(b, p + 5);
          w = be16(b, p + 7);
          return true;
        }
        p += 2 + be16(b, p + 2);
      }
      return false;
    }
    case ImageFormat::Unknown: break;
  }
  return false;
}

}  // namespace

void detail::check_dimensions(std::string_view name, std::int64_t width, std::int64_t height,
                              const DecodeLimits& limits) {
  CAPTION_CHECK(width > 0 && height > 0, name, ": image has zero size (", width, "x", height, ")");
  CAPTION_CHECK(width <= limits.max_side && height <= limits.max_side &&
                    width * height <= limits.max_pixels,
                name, ": image dimensions ", width, "x", height, " exceed the limit (",
                limits.max_side, " per side, ", limits.max_pixels, " pixels); refusing to decode");
}

RgbImage decode_image(std::span<const std::uint8_t> bytes, std::string_view name,
                      const DecodeLimits& limits) {
  CAPTION_CHECK(!bytes.empty(), name, ": empty file, not an image");
  CAPTION_CHECK(bytes.size() <= static_cast<size_t>(INT_MAX) && bytes.size() <= limits.max_file_bytes,
                name, ": file too large (", bytes.size(), " bytes)");
  const ImageFormat format = sniff_image_format(bytes);
  CAPTION_CHECK(format != ImageFormat::Unknown, name,
                ": not a decodable image (not a JPEG, PNG, BMP or GIF file)");

  std::int64_t hw = 0, hh = 0;
  if (header_dimensions(bytes, format, hw, hh)) {
    detail::check_dimensions(name, hw, hh, limits);
  }

  std::string truncation;
  if (format == ImageFormat::Bmp) truncation = bmp_truncation(bytes);
  if (format == ImageFormat::Gif) truncation = gif_truncation(bytes);
  if (format == ImageFormat::Jpeg) truncation = jpeg_truncation(bytes);
  CAPTION_CHECK(truncation.empty(), name, ": ", truncation);

  if (format == ImageFormat::Jpeg) return detail::decode_jpeg(bytes, name, limits);
  if (format == ImageFormat::Png) return detail::decode_png(bytes, name, limits);

  const int len = static_cast<int>(bytes.size());
  int w = 0, h = 0, comp = 0;
  if (!stbi_info_from_memory(bytes.data(), len, &w, &h, &comp)) {
    const char* why = stbi_failure_reason();
    throw Error(str(name, ": not a decodable image (corrupt ", format_name(format),
                    " header; stb: ", why ? why : "unknown", ")"));
  }
  detail::check_dimensions(name, w, h, limits);

  int dw = 0, dh = 0, dc = 0;
  stbi_uc* data = stbi_load_from_memory(bytes.data(), len, &dw, &dh, &dc, 3);
  if (data == nullptr) {
    const char* why = stbi_failure_reason();
    throw Error(str(name, ": not a decodable image (truncated or corrupt ",
                    format_name(format), "; stb: ", why ? why : "unknown", ")"));
  }
  RgbImage image;
  image.width = dw;
  image.height = dh;
  image.pixels.assign(data, data + static_cast<size_t>(dw) * dh * 3);
  stbi_image_free(data);
  CAPTION_ASSERT(dw == w && dh == h, "stb decoded ", dw, "x", dh, " after reporting ", w, "x", h);
  return image;
}

RgbImage load_image(const std::filesystem::path& path, const DecodeLimits& limits) {
  const std::vector<std::uint8_t> bytes = read_file_bytes(path, limits.max_file_bytes);
  return decode_image(bytes, path.string(), limits);
}

}  // namespace caption::data
