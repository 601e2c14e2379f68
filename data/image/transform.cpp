// Normalisation to CHW float and its inverse (see transform.h). The forward map divides
// by 255 first and then applies (v - mean) / std, as torchvision's ToTensor + Normalize
// do, so that features match a PyTorch reference to float rounding.
#include "data/image/transform.h"

#include <algorithm>
#include <cmath>

#include "data/image/resize.h"
#include "engine/error.h"

namespace caption::data {

namespace {

void check_norm(const Normalization& norm) {
  for (int c = 0; c < 3; ++c)
    CAPTION_CHECK(norm.std[c] > 0.0f && std::isfinite(norm.std[c]) && std::isfinite(norm.mean[c]),
                  "image normalisation: channel ", c, " has mean ", norm.mean[c], " and std ",
                  norm.std[c], " (std must be positive and both finite)");
}

}  // namespace

ChwImage normalize_to_chw(const RgbImage& image, const Normalization& norm) {
  check_norm(norm);
  CAPTION_CHECK(image.pixels.size() == static_cast<size_t>(image.width) * image.height * 3,
                "normalize_to_chw: image is inconsistent (", image.width, "x", image.height,
                ", ", image.pixels.size(), " bytes)");
  ChwImage out;
  out.height = image.height;
  out.width = image.width;
  const size_t plane = static_cast<size_t>(image.width) * image.height;
  out.data.resize(plane * 3);
  for (int c = 0; c < 3; ++c) {
    // A lookup table per channel: 256 values, identical to computing each pixel.
    std::array<float, 256> lut;
    for (int v = 0; v < 256; ++v)
      lut[v] = (static_cast<float>(v) / 255.0f - norm.mean[c]) / norm.std[c];
    float* dst = out.data.data() + c * plane;
    const std::uint8_t* src = image.pixels.data() + c;
    for (size_t i = 0; i < plane; ++i) dst[i] = lut[src[3 * i]];
  }
  return out;
}

RgbImage denormalize_from_chw(const ChwImage& chw, const Normalization& norm) {
  check_norm(norm);
  CAPTION_CHECK(chw.channels == 3 && chw.height > 0 && chw.width > 0 &&
                    chw.data.size() == static_cast<size_t>(chw.width) * chw.height * 3,
                "denormalize_from_chw: expected a 3-channel image, got ", chw.channels, "x",
                chw.height, "x", chw.width, " with ", chw.data.size(), " values");
  RgbImage out(chw.width, chw.height);
  const size_t plane = static_cast<size_t>(chw.width) * chw.height;
  for (int c = 0; c < 3; ++c) {
    const float* src = chw.data.data() + c * plane;
    for (size_t i = 0; i < plane; ++i) {
      float v = (src[i] * norm.std[c] + norm.mean[c]) * 255.0f;
      if (!(v >= 0.0f)) v = 0.0f;  // also maps NaN to 0
      v = std::min(v, 255.0f);
      out.pixels[3 * i + c] = static_cast<std::uint8_t>(std::lround(v));
    }
  }
  return out;
}

ChwImage preprocess(const RgbImage& image, const ImageTransform& transform) {
  CAPTION_CHECK(transform.image_size > 0, "image transform: image_size ",
                transform.image_size, " must be positive");
  return normalize_to_chw(resize_bilinear(image, transform.image_size, transform.image_size),
                          transform.normalization);
}

ChwImage load_and_preprocess(const std::filesystem::path& path, const ImageTransform& transform) {
  return preprocess(load_image(path, transform.limits), transform);
}

}  // namespace caption::data
