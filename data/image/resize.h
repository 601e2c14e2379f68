// Resizing that reproduces PIL's Image.resize(size, Image.BILINEAR) on 8-bit RGB images
// to within rounding of the last bit (the reference the training images were made with).
//
// PIL's algorithm (libImaging/Resample.c) is a separable convolution, not a 2x2 lookup:
// the triangle filter's support (1.0) is widened by the downscale factor, so that
// downscaling averages every input pixel under the output pixel (antialiasing) while
// upscaling is plain bilinear interpolation. Coefficients are computed in double,
// normalised to sum 1, converted to fixed point with 22 fractional bits, and each pass
// rounds and clips to 8 bits. The horizontal pass runs first; a pass is skipped when its
// dimension is unchanged. Aspect ratio is not kept and nothing is cropped.
#pragma once

#include "data/image/image.h"

namespace caption::data {

// Resizes to width x height (both > 0). Returns a copy when the size is unchanged.
RgbImage resize_bilinear(const RgbImage& image, int width, int height);

}  // namespace caption::data
