// JPEG decoding through libjpeg-turbo (see codecs.h for the contract).
//
// libjpeg reports errors through a callback that must not return; the C++ way out would
// be an exception thrown through C frames, which is undefined, so the callback longjmps
// back into the one function of each phase that called setjmp. Those functions hold no
// object with a destructor (longjmp would skip it): the decoder's state lives in the
// Session below, whose destructor releases libjpeg's memory on every path.
#include <csetjmp>
#include <cstdio>  // jpeglib.h needs FILE
#include <cstring>
#include <string>
#include <vector>

#include <jerror.h>
#include <jpeglib.h>

#include "data/image/codecs.h"
#include "engine/error.h"

namespace caption::data::detail {

namespace {

// Progressive files may hold any number of scans, each a pass over the whole image; a
// hostile one can make decoding take minutes with a few kilobytes. Real encoders write
// ten or so (libjpeg-turbo's own tools refuse more than 500).
constexpr int kMaxScans = 500;

struct ErrorManager {
  jpeg_error_mgr mgr;  // first member: libjpeg sees a jpeg_error_mgr*
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX + 64];
};

[[noreturn]] void on_error(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<ErrorManager*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, err->message);
  std::longjmp(err->jump, 1);
}

// Warnings (level -1) are corrupt-data notices that libjpeg recovers from, as PIL does
// (it shows none of them), except one: data that ends before the image does, which PIL
// refuses as "image file is truncated".
void on_message(j_common_ptr cinfo, int level) {
  if (level == -1 && cinfo->err->msg_code == JWRN_JPEG_EOF) on_error(cinfo);
}

void on_progress(j_common_ptr cinfo) {
  auto* d = reinterpret_cast<j_decompress_ptr>(cinfo);
  if (d->input_scan_number > kMaxScans) {
    auto* err = reinterpret_cast<ErrorManager*>(cinfo->err);
    std::snprintf(err->message, sizeof err->message, "more than %d progressive scans", kMaxScans);
    std::longjmp(err->jump, 1);
  }
}

class Session {
 public:
  explicit Session(std::span<const std::uint8_t> bytes) {
    cinfo_.err = jpeg_std_error(&err_.mgr);
    err_.mgr.error_exit = on_error;
    err_.mgr.emit_message = on_message;
    err_.message[0] = '\0';
    progress_.progress_monitor = on_progress;
    bytes_ = bytes;
  }
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;
  ~Session() {
    if (created_) jpeg_destroy_decompress(&cinfo_);
  }

  // Reads the headers and chooses the output colour space. False on error (message()).
  bool read_header() {
    if (setjmp(err_.jump)) return false;
    created_ = true;  // before: a failed create leaves cinfo_.mem null, which destroy checks
    jpeg_create_decompress(&cinfo_);
    cinfo_.progress = &progress_;
    jpeg_mem_src(&cinfo_, bytes_.data(), static_cast<unsigned long>(bytes_.size()));
    jpeg_read_header(&cinfo_, TRUE);
    cmyk_ = cinfo_.jpeg_color_space == JCS_CMYK || cinfo_.jpeg_color_space == JCS_YCCK;
    cinfo_.out_color_space = cmyk_ ? JCS_CMYK : JCS_RGB;
    return true;
  }

  // Decodes into rgb (width * height * 3 bytes); row holds one CMYK row (width * 4).
  bool decode(std::uint8_t* rgb, std::uint8_t* row) {
    if (setjmp(err_.jump)) return false;
    jpeg_start_decompress(&cinfo_);
    const size_t w = cinfo_.output_width;
    while (cinfo_.output_scanline < cinfo_.output_height) {
      std::uint8_t* out = rgb + static_cast<size_t>(cinfo_.output_scanline) * w * 3;
      JSAMPROW target = cmyk_ ? row : out;
      jpeg_read_scanlines(&cinfo_, &target, 1);
      if (cmyk_) cmyk_to_rgb(row, out, w);
    }
    jpeg_finish_decompress(&cinfo_);
    return true;
  }

  int width() const { return static_cast<int>(cinfo_.image_width); }
  int height() const { return static_cast<int>(cinfo_.image_height); }
  bool cmyk() const { return cmyk_; }
  const char* message() const { return err_.message; }

 private:
  // PIL reads four-channel JPEGs as inverted CMYK ("CMYK;I", Adobe's convention) and
  // converts to RGB with r = (255 - k) - c * (255 - k) / 255, rounded as its MULDIV255.
  static void cmyk_to_rgb(const std::uint8_t* in, std::uint8_t* out, size_t w) {
    for (size_t x = 0; x < w; ++x, in += 4, out += 3) {
      const int nk = in[3];  // 255 - k, with k = 255 - stored
      for (int c = 0; c < 3; ++c) {
        const int cyan = 255 - in[c];
        const int t = cyan * nk + 128;
        const int v = nk - ((t + (t >> 8)) >> 8);
        out[c] = static_cast<std::uint8_t>(v < 0 ? 0 : v);
      }
    }
  }

  jpeg_decompress_struct cinfo_{};
  ErrorManager err_{};
  jpeg_progress_mgr progress_{};
  std::span<const std::uint8_t> bytes_;
  bool created_ = false;
  bool cmyk_ = false;
};

}  // namespace

RgbImage decode_jpeg(std::span<const std::uint8_t> bytes, std::string_view name,
                     const DecodeLimits& limits) {
  Session session(bytes);
  if (!session.read_header())
    throw Error(str(name, ": not a decodable image (corrupt JPEG: ", session.message(), ")"));
  const std::int64_t w = session.width(), h = session.height();
  check_dimensions(name, w, h, limits);
  RgbImage image(static_cast<int>(w), static_cast<int>(h));
  std::vector<std::uint8_t> row(session.cmyk() ? static_cast<size_t>(w) * 4 : 0);
  if (!session.decode(image.pixels.data(), row.data()))
    throw Error(str(name, ": not a decodable image (truncated or corrupt JPEG: ",
                    session.message(), ")"));
  return image;
}

}  // namespace caption::data::detail
