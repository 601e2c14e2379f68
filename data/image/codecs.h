// The library's own decoders of the two formats real datasets use, behind decode_image
// (image.h): JPEG through libjpeg-turbo and PNG through libpng, the libraries PIL itself
// decodes with, so that a JPEG gives the same pixels here as in a PyTorch pipeline
// (torchvision's loader: PIL.Image.open(...).convert("RGB")), bit for bit. Both are
// hardened against hostile files (continuously fuzzed upstream); tests/fuzz fuzzes the
// way we drive them.
//
// Each throws caption::Error "<name>: <problem>" and checks the dimensions against the
// limits before allocating the pixels.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

#include "data/image/image.h"

namespace caption::data::detail {

// Refuses (caption::Error naming the input) a zero size or one beyond the limits.
void check_dimensions(std::string_view name, std::int64_t width, std::int64_t height,
                      const DecodeLimits& limits);

// Colour handling, as PIL's convert("RGB") of what PIL decodes: greyscale repeated into
// three channels; CMYK and YCCK (Adobe's inverted CMYK, as PIL assumes for every
// four-channel JPEG) converted as PIL converts CMYK; libjpeg's defaults otherwise
// (accurate integer IDCT, "fancy" chroma upsampling), which are PIL's.
RgbImage decode_jpeg(std::span<const std::uint8_t> bytes, std::string_view name,
                     const DecodeLimits& limits);

// Palettes and bit depths below 8 expanded, 16-bit samples reduced to their high byte
// (PIL's "RGB;16B"), alpha and transparency dropped (not composited, as convert("RGB")
// does), gamma and colour profiles ignored (as PIL does).
RgbImage decode_png(std::span<const std::uint8_t> bytes, std::string_view name,
                    const DecodeLimits& limits);

}  // namespace caption::data::detail
