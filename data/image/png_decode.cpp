// PNG decoding through libpng (see codecs.h for the contract). Errors longjmp out of
// libpng, as with libjpeg (jpeg_decode.cpp): the functions that call setjmp hold only
// plain values, the decoder's state lives in a Session whose destructor frees it.
#include <png.h>

#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <vector>

#include "data/image/codecs.h"
#include "engine/error.h"

namespace caption::data::detail {

namespace {

struct Source {
  std::span<const std::uint8_t> bytes;
  size_t at = 0;
  char message[256] = {};
};

[[noreturn]] void on_error(png_structp png, png_const_charp text) {
  auto* src = static_cast<Source*>(png_get_error_ptr(png));
  std::snprintf(src->message, sizeof src->message, "%s", text ? text : "unknown error");
  png_longjmp(png, 1);
}

// Warnings (an unknown or damaged ancillary chunk, a bad colour profile) do not stop PIL
// either.
void on_warning(png_structp, png_const_charp) {}

void on_read(png_structp png, png_bytep out, png_size_t n) {
  auto* src = static_cast<Source*>(png_get_io_ptr(png));
  if (src->bytes.size() - src->at < n) png_error(png, "file ends early");
  std::memcpy(out, src->bytes.data() + src->at, n);
  src->at += n;
}

class Session {
 public:
  explicit Session(std::span<const std::uint8_t> bytes) { src_.bytes = bytes; }
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;
  ~Session() {
    if (png_) png_destroy_read_struct(&png_, info_ ? &info_ : nullptr, nullptr);
  }

  // Reads the header chunks and sets the transformations to 8-bit RGB.
  bool read_header(int max_side) {
    png_ = png_create_read_struct(PNG_LIBPNG_VER_STRING, &src_, on_error, on_warning);
    if (!png_) {
      std::snprintf(src_.message, sizeof src_.message, "out of memory");
      return false;
    }
    if (setjmp(png_jmpbuf(png_))) return false;
    info_ = png_create_info_struct(png_);
    if (!info_) png_error(png_, "out of memory");
    png_set_read_fn(png_, &src_, on_read);
    // libpng refuses larger images itself, before allocating anything for them.
    png_set_user_limits(png_, static_cast<png_uint_32>(max_side), static_cast<png_uint_32>(max_side));
    png_read_info(png_, info_);
    width_ = png_get_image_width(png_, info_);
    height_ = png_get_image_height(png_, info_);
    const int color = png_get_color_type(png_, info_);
    png_set_expand(png_);  // palette -> RGB, grey below 8 bits -> 8, tRNS -> alpha
    png_set_strip_16(png_);
    png_set_strip_alpha(png_);
    if (color == PNG_COLOR_TYPE_GRAY || color == PNG_COLOR_TYPE_GRAY_ALPHA) png_set_gray_to_rgb(png_);
    png_set_interlace_handling(png_);
    png_read_update_info(png_, info_);
    if (png_get_rowbytes(png_, info_) != static_cast<size_t>(width_) * 3)
      png_error(png_, "unexpected row layout after conversion to RGB");
    return true;
  }

  // Decodes into the rows (height of them, width * 3 bytes each).
  bool decode(png_bytepp rows) {
    if (setjmp(png_jmpbuf(png_))) return false;
    png_read_image(png_, rows);
    return true;
  }

  png_uint_32 width() const { return width_; }
  png_uint_32 height() const { return height_; }
  const char* message() const { return src_.message; }

 private:
  Source src_;
  png_structp png_ = nullptr;
  png_infop info_ = nullptr;
  png_uint_32 width_ = 0, height_ = 0;
};

}  // namespace

RgbImage decode_png(std::span<const std::uint8_t> bytes, std::string_view name,
                    const DecodeLimits& limits) {
  Session session(bytes);
  if (!session.read_header(limits.max_side))
    throw Error(str(name, ": not a decodable image (corrupt PNG: ", session.message(), ")"));
  const std::int64_t w = session.width(), h = session.height();
  check_dimensions(name, w, h, limits);
  RgbImage image(static_cast<int>(w), static_cast<int>(h));
  std::vector<png_bytep> rows(static_cast<size_t>(h));
  for (size_t y = 0; y < rows.size(); ++y) rows[y] = image.pixels.data() + y * static_cast<size_t>(w) * 3;
  if (!session.decode(rows.data()))
    throw Error(str(name, ": not a decodable image (truncated or corrupt PNG: ", session.message(), ")"));
  return image;
}

}  // namespace caption::data::detail
