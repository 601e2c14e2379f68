// PNG encoding with stb_image_write (see png_writer.h). The one copy of stb_image_write's
// implementation in the library, compiled static so that its symbols stay private.
#include "data/image/png_writer.h"

#include "data/image/file_io.h"
#include "engine/error.h"

#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STB_IMAGE_WRITE_STATIC
#define STBI_WRITE_NO_STDIO
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#endif
#include "stb_image_write.h"
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

namespace caption::data {

namespace {

// stb tries all five PNG row filters on every row and keeps the best guess; always
// using "Sub" is ~25% faster for the same size on our images (measured on the
// synthetic set). Set once, at load time, in stb's private (static) copy of the setting,
// so that no call writes it while another thread reads it.
const bool kStbConfigured = [] {
  stbi_write_force_png_filter = 1;
  return true;
}();

void append(void* context, void* data, int size) {
  auto* out = static_cast<std::vector<std::uint8_t>*>(context);
  const auto* bytes = static_cast<const std::uint8_t*>(data);
  out->insert(out->end(), bytes, bytes + size);
}

}  // namespace

std::vector<std::uint8_t> encode_png(const RgbImage& image) {
  CAPTION_CHECK(!image.empty() &&
                    image.pixels.size() == static_cast<size_t>(image.width) * image.height * 3,
                "encode_png: image is empty or inconsistent (", image.width, "x", image.height,
                ", ", image.pixels.size(), " bytes)");
  std::vector<std::uint8_t> out;
  const int ok = stbi_write_png_to_func(append, &out, image.width, image.height, 3,
                                        image.pixels.data(), image.width * 3);
  CAPTION_CHECK(ok != 0 && !out.empty(), "encode_png: stb_image_write failed for a ",
                image.width, "x", image.height, " image");
  return out;
}

void write_png(const RgbImage& image, const std::filesystem::path& path) {
  write_file_atomic(path, encode_png(image));
}

}  // namespace caption::data
