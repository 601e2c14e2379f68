// PIL-compatible bilinear resampling (see resize.h). The coefficient computation follows
// Pillow 9's precompute_coeffs / normalize_coeffs_8bpc line by line, because the last
// bit of the result depends on the exact order of the double arithmetic and on where
// the filter window is rounded; the convolution loops are written for the 3-channel
// interleaved layout and keep int32 accumulators as PIL does.
#include "data/image/resize.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "engine/error.h"

namespace caption::data {

namespace {

constexpr int kPrecisionBits = 32 - 8 - 2;

double triangle_filter(double x) {
  if (x < 0.0) x = -x;
  if (x < 1.0) return 1.0 - x;
  return 0.0;
}

// For each output position: the first input index, the number of taps, and `ksize`
// fixed-point weights (unused taps are zero).
struct Coefficients {
  int ksize = 0;
  std::vector<int> first;
  std::vector<int> count;
  std::vector<std::int32_t> weights;
};

Coefficients precompute(int in_size, int out_size) {
  constexpr double kSupport = 1.0;  // bilinear
  const double scale = static_cast<double>(static_cast<float>(in_size)) / out_size;
  const double filterscale = std::max(scale, 1.0);
  const double support = kSupport * filterscale;
  Coefficients c;
  c.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  c.first.resize(out_size);
  c.count.resize(out_size);
  c.weights.assign(static_cast<size_t>(out_size) * c.ksize, 0);
  std::vector<double> k(c.ksize);
  for (int xx = 0; xx < out_size; ++xx) {
    const double center = (xx + 0.5) * scale;
    const double ss = 1.0 / filterscale;
    int xmin = static_cast<int>(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = static_cast<int>(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double ww = 0.0;
    for (int x = 0; x < xmax; ++x) {
      const double w = triangle_filter((x + xmin - center + 0.5) * ss);
      k[x] = w;
      ww += w;
    }
    for (int x = 0; x < xmax; ++x) {
      if (ww != 0.0) k[x] /= ww;
    }
    for (int x = 0; x < xmax; ++x) {
      const double v = k[x] * (1 << kPrecisionBits);
      c.weights[static_cast<size_t>(xx) * c.ksize + x] =
          static_cast<std::int32_t>(v < 0 ? -0.5 + v : 0.5 + v);
    }
    c.first[xx] = xmin;
    c.count[xx] = xmax;
  }
  return c;
}

inline std::uint8_t clip8(std::int32_t v) {
  if (v >= (1 << kPrecisionBits << 8)) return 255;
  if (v <= 0) return 0;
  return static_cast<std::uint8_t>(v >> kPrecisionBits);
}

// Rows [row_begin, row_end) of `in`, resampled horizontally to out_width.
RgbImage horizontal(const RgbImage& in, int out_width, int row_begin, int row_end) {
  const Coefficients c = precompute(in.width, out_width);
  RgbImage out(out_width, row_end - row_begin);
  constexpr std::int32_t kHalf = 1 << (kPrecisionBits - 1);
  for (int y = row_begin; y < row_end; ++y) {
    const std::uint8_t* src = &in.pixels[static_cast<size_t>(y) * in.width * 3];
    std::uint8_t* dst = &out.pixels[static_cast<size_t>(y - row_begin) * out_width * 3];
    for (int xx = 0; xx < out_width; ++xx) {
      const std::int32_t* k = &c.weights[static_cast<size_t>(xx) * c.ksize];
      const std::uint8_t* s = src + static_cast<size_t>(c.first[xx]) * 3;
      std::int32_t r = kHalf, g = kHalf, b = kHalf;
      for (int x = 0; x < c.count[xx]; ++x) {
        r += s[3 * x + 0] * k[x];
        g += s[3 * x + 1] * k[x];
        b += s[3 * x + 2] * k[x];
      }
      dst[3 * xx + 0] = clip8(r);
      dst[3 * xx + 1] = clip8(g);
      dst[3 * xx + 2] = clip8(b);
    }
  }
  return out;
}

// `in` holds input rows starting at row `row_offset` of the full image.
RgbImage vertical(const RgbImage& in, const Coefficients& c, int row_offset, int out_height) {
  RgbImage out(in.width, out_height);
  const size_t row = static_cast<size_t>(in.width) * 3;
  constexpr std::int32_t kHalf = 1 << (kPrecisionBits - 1);
  std::vector<std::int32_t> acc(row);
  for (int yy = 0; yy < out_height; ++yy) {
    const std::int32_t* k = &c.weights[static_cast<size_t>(yy) * c.ksize];
    std::fill(acc.begin(), acc.end(), kHalf);
    for (int y = 0; y < c.count[yy]; ++y) {
      const std::uint8_t* src = &in.pixels[(c.first[yy] + y - row_offset) * row];
      const std::int32_t w = k[y];
      for (size_t i = 0; i < row; ++i) acc[i] += src[i] * w;
    }
    std::uint8_t* dst = &out.pixels[yy * row];
    for (size_t i = 0; i < row; ++i) dst[i] = clip8(acc[i]);
  }
  return out;
}

}  // namespace

RgbImage resize_bilinear(const RgbImage& image, int width, int height) {
  CAPTION_CHECK(width > 0 && height > 0, "resize: target size ", width, "x", height,
                " must be positive");
  CAPTION_CHECK(!image.empty() && image.pixels.size() == static_cast<size_t>(image.width) *
                                                              image.height * 3,
                "resize: source image is empty or inconsistent (", image.width, "x",
                image.height, ", ", image.pixels.size(), " bytes)");
  const bool need_horizontal = width != image.width;
  const bool need_vertical = height != image.height;
  if (!need_horizontal && !need_vertical) return image;
  if (!need_vertical) return horizontal(image, width, 0, image.height);

  const Coefficients vc = precompute(image.height, height);
  if (!need_horizontal) return vertical(image, vc, 0, height);
  // Only the input rows the vertical pass reads go through the horizontal pass.
  const int first_row = vc.first[0];
  const int last_row = vc.first[height - 1] + vc.count[height - 1];
  const RgbImage band = horizontal(image, width, first_row, last_row);
  return vertical(band, vc, first_row, height);
}

}  // namespace caption::data
