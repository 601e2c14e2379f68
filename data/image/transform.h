// From a decoded image to the encoder's input and back: resize to image_size x
// image_size (PIL bilinear, see resize.h), scale to [0, 1], normalise per channel with
// the ImageNet mean and std, and lay out as CHW float32. The inverse maps a normalised
// CHW tensor back to 8-bit RGB for drawing attention maps and saving PNGs.
//
// Plain structs, not engine tensors: the data layer does not depend on the engine.
#pragma once

#include <array>
#include <filesystem>
#include <vector>

#include "data/image/image.h"

namespace caption::data {

struct Normalization {
  std::array<float, 3> mean{0.485f, 0.456f, 0.406f};
  std::array<float, 3> std{0.229f, 0.224f, 0.225f};
};

// Float image, channels-first: data[(c * height + y) * width + x].
struct ChwImage {
  int channels = 3;
  int height = 0;
  int width = 0;
  std::vector<float> data;

  float at(int c, int y, int x) const {
    return data[(static_cast<size_t>(c) * height + y) * width + x];
  }
};

// The whole preprocessing of one image for the model.
struct ImageTransform {
  int image_size = 224;
  Normalization normalization{};
  DecodeLimits limits{};
};

// (pixel / 255 - mean[c]) / std[c], in float, CHW. Throws if a std is not positive.
ChwImage normalize_to_chw(const RgbImage& image, const Normalization& norm = {});

// The inverse: round((x * std + mean) * 255), clamped to [0, 255]. Exact inverse of
// normalize_to_chw on 8-bit input. Throws if the tensor is not 3-channel or inconsistent.
RgbImage denormalize_from_chw(const ChwImage& chw, const Normalization& norm = {});

// Resize to transform.image_size square, then normalize_to_chw.
ChwImage preprocess(const RgbImage& image, const ImageTransform& transform = {});

// load_image + preprocess.
ChwImage load_and_preprocess(const std::filesystem::path& path,
                             const ImageTransform& transform = {});

}  // namespace caption::data
