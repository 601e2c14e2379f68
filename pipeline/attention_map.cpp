// Attention-map figures (see attention_map.h), and the small bitmap font for labels.
//
// The font: 5 columns by 9 rows per glyph, rows 0-6 above the baseline (capitals and
// digits use all seven, the lower case x-height is rows 2-6) and rows 7-8 for
// descenders. Glyphs are written as pictures ('#' = ink) so that they can be checked
// by eye; the advance is 6 columns (one blank column between letters).
#include "pipeline/attention_map.h"

#include <algorithm>
#include <cctype>
#include <cmath>

#include "data/image/png_writer.h"
#include "data/image/resize.h"
#include "engine/error.h"

namespace caption::pipeline {

namespace {

constexpr int kGlyphWidth = 5, kGlyphHeight = 9, kAdvance = 6;

struct Glyph {
  char ch;
  const char* rows[kGlyphHeight];
};

// clang-format off
constexpr Glyph kFont[] = {
  {'a', {".....", ".....", ".###.", "....#", ".####", "#...#", ".####", ".....", "....."}},
  {'b', {"#....", "#....", "####.", "#...#", "#...#", "#...#", "####.", ".....", "....."}},
  {'c', {".....", ".....", ".###.", "#....", "#....", "#....", ".###.", ".....", "....."}},
  {'d', {"....#", "....#", ".####", "#...#", "#...#", "#...#", ".####", ".....", "....."}},
  {'e', {".....", ".....", ".###.", "#...#", "#####", "#....", ".###.", ".....", "....."}},
  {'f', {"..##.", ".#...", "####.", ".#...", ".#...", ".#...", ".#...", ".....", "....."}},
  {'g', {".....", ".....", ".####", "#...#", "#...#", "#...#", ".####", "....#", ".###."}},
  {'h', {"#....", "#....", "####.", "#...#", "#...#", "#...#", "#...#", ".....", "....."}},
  {'i', {"..#..", ".....", ".##..", "..#..", "..#..", "..#..", ".###.", ".....", "....."}},
  {'j', {"...#.", ".....", "..##.", "...#.", "...#.", "...#.", "...#.", "#..#.", ".##.."}},
  {'k', {"#....", "#....", "#..#.", "#.#..", "##...", "#.#..", "#..#.", ".....", "....."}},
  {'l', {".##..", "..#..", "..#..", "..#..", "..#..", "..#..", ".###.", ".....", "....."}},
  {'m', {".....", ".....", "##.#.", "#.#.#", "#.#.#", "#.#.#", "#.#.#", ".....", "....."}},
  {'n', {".....", ".....", "####.", "#...#", "#...#", "#...#", "#...#", ".....", "....."}},
  {'o', {".....", ".....", ".###.", "#...#", "#...#", "#...#", ".###.", ".....", "....."}},
  {'p', {".....", ".....", "####.", "#...#", "#...#", "#...#", "####.", "#....", "#...."}},
  {'q', {".....", ".....", ".####", "#...#", "#...#", "#...#", ".####", "....#", "....#"}},
  {'r', {".....", ".....", "#.##.", "##..#", "#....", "#....", "#....", ".....", "....."}},
  {'s', {".....", ".....", ".####", "#....", ".###.", "....#", "####.", ".....", "....."}},
  {'t', {".#...", ".#...", "####.", ".#...", ".#...", ".#..#", "..##.", ".....", "....."}},
  {'u', {".....", ".....", "#...#", "#...#", "#...#", "#..##", ".##.#", ".....", "....."}},
  {'v', {".....", ".....", "#...#", "#...#", "#...#", ".#.#.", "..#..", ".....", "....."}},
  {'w', {".....", ".....", "#...#", "#...#", "#.#.#", "#.#.#", ".#.#.", ".....", "....."}},
  {'x', {".....", ".....", "#...#", ".#.#.", "..#..", ".#.#.", "#...#", ".....", "....."}},
  {'y', {".....", ".....", "#...#", "#...#", "#...#", "#...#", ".####", "....#", ".###."}},
  {'z', {".....", ".....", "#####", "...#.", "..#..", ".#...", "#####", ".....", "....."}},
  {'0', {".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###.", ".....", "....."}},
  {'1', {"..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###.", ".....", "....."}},
  {'2', {".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####", ".....", "....."}},
  {'3', {"#####", "...#.", "..#..", "...#.", "....#", "#...#", ".###.", ".....", "....."}},
  {'4', {"...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#.", ".....", "....."}},
  {'5', {"#####", "#....", "####.", "....#", "....#", "#...#", ".###.", ".....", "....."}},
  {'6', {"..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###.", ".....", "....."}},
  {'7', {"#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#...", ".....", "....."}},
  {'8', {".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###.", ".....", "....."}},
  {'9', {".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##..", ".....", "....."}},
  {' ', {".....", ".....", ".....", ".....", ".....", ".....", ".....", ".....", "....."}},
  {'-', {".....", ".....", ".....", ".....", ".###.", ".....", ".....", ".....", "....."}},
  {'_', {".....", ".....", ".....", ".....", ".....", ".....", ".....", "#####", "....."}},
  {'.', {".....", ".....", ".....", ".....", ".....", ".##..", ".##..", ".....", "....."}},
  {',', {".....", ".....", ".....", ".....", ".....", ".##..", "..#..", ".#...", "....."}},
  {':', {".....", ".##..", ".##..", ".....", ".##..", ".##..", ".....", ".....", "....."}},
  {'\'', {"..#..", "..#..", ".#...", ".....", ".....", ".....", ".....", ".....", "....."}},
  {'"', {".#.#.", ".#.#.", ".....", ".....", ".....", ".....", ".....", ".....", "....."}},
  {'!', {"..#..", "..#..", "..#..", "..#..", "..#..", ".....", "..#..", ".....", "....."}},
  {'?', {".###.", "#...#", "....#", "...#.", "..#..", ".....", "..#..", ".....", "....."}},
  {'<', {"....#", "...#.", "..#..", ".#...", "..#..", "...#.", "....#", ".....", "....."}},
  {'>', {"#....", ".#...", "..#..", "...#.", "..#..", ".#...", "#....", ".....", "....."}},
  {'/', {"....#", "....#", "...#.", "..#..", ".#...", "#....", "#....", ".....", "....."}},
  {'(', {"...#.", "..#..", ".#...", ".#...", ".#...", "..#..", "...#.", ".....", "....."}},
  {')', {".#...", "..#..", "...#.", "...#.", "...#.", "..#..", ".#...", ".....", "....."}},
  {'&', {".##..", "#..#.", "#.#..", ".#...", "#.#.#", "#..#.", ".##.#", ".....", "....."}},
  {'+', {".....", ".....", "..#..", "..#..", "#####", "..#..", "..#..", ".....", "....."}},
};
// Drawn for any character the font lacks (non-ASCII bytes included).
constexpr Glyph kMissing = {'\0', {"#####", "#...#", "#...#", "#...#", "#...#", "#...#", "#####", ".....", "....."}};
// clang-format on

const Glyph& glyph_for(char c) {
  const char lower = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (const Glyph& g : kFont)
    if (g.ch == lower) return g;
  return kMissing;
}

void fill_rect(data::RgbImage& img, int x0, int y0, int w, int h, const std::array<std::uint8_t, 3>& colour) {
  for (int y = std::max(0, y0); y < std::min(img.height, y0 + h); ++y)
    for (int x = std::max(0, x0); x < std::min(img.width, x0 + w); ++x)
      for (int c = 0; c < 3; ++c) img.at(x, y, c) = colour[c];
}

std::uint8_t to_byte(float v) {
  return static_cast<std::uint8_t>(std::clamp(std::lround(v), 0L, 255L));
}

// A word's weights, divided by their maximum (non-finite or negative weights count as
// zero; an all-zero map stays zero), upsampled bilinearly to size x size with pixel
// centres aligned (like align_corners=False) and edges clamped.
std::vector<float> upsample_normalised(const std::vector<float>& weights, int S, int size) {
  std::vector<float> w(weights.size());
  float max = 0;
  for (size_t i = 0; i < weights.size(); ++i) {
    w[i] = std::isfinite(weights[i]) && weights[i] > 0 ? weights[i] : 0.0f;
    max = std::max(max, w[i]);
  }
  if (max > 0)
    for (float& v : w) v /= max;
  // Per output coordinate: the two source cells and the weight of the second.
  struct Tap {
    int i0, i1;
    float f;
  };
  std::vector<Tap> taps(static_cast<size_t>(size));
  for (int o = 0; o < size; ++o) {
    const float g = std::clamp((static_cast<float>(o) + 0.5f) * static_cast<float>(S) / static_cast<float>(size) - 0.5f,
                               0.0f, static_cast<float>(S - 1));
    const int i0 = static_cast<int>(g);
    taps[o] = {i0, std::min(i0 + 1, S - 1), g - static_cast<float>(i0)};
  }
  std::vector<float> out(static_cast<size_t>(size) * size);
  for (int y = 0; y < size; ++y) {
    const Tap ty = taps[y];
    for (int x = 0; x < size; ++x) {
      const Tap tx = taps[x];
      const float top = w[ty.i0 * S + tx.i0] * (1 - tx.f) + w[ty.i0 * S + tx.i1] * tx.f;
      const float bottom = w[ty.i1 * S + tx.i0] * (1 - tx.f) + w[ty.i1 * S + tx.i1] * tx.f;
      out[static_cast<size_t>(y) * size + x] = top * (1 - ty.f) + bottom * ty.f;
    }
  }
  return out;
}

// Blue (0) through cyan, yellow to red (1), as in the "jet" colour map.
std::array<float, 3> heat_colour(float a) {
  auto ramp = [](float v) { return std::clamp(1.5f - std::fabs(v), 0.0f, 1.0f) * 255.0f; };
  return {ramp(4 * a - 3), ramp(4 * a - 2), ramp(4 * a - 1)};
}

void draw_panel(data::RgbImage& canvas, const data::RgbImage& panel, const std::vector<float>* alpha, int x0,
                int y0, const AttentionMapOptions& options) {
  for (int y = 0; y < panel.height; ++y)
    for (int x = 0; x < panel.width; ++x) {
      const float a = alpha ? (*alpha)[static_cast<size_t>(y) * panel.width + x] : 1.0f;
      for (int c = 0; c < 3; ++c) {
        const float p = panel.at(x, y, c);
        float v = p;
        if (alpha && options.style == OverlayStyle::Darken) {
          v = p * (options.darken_floor + (1 - options.darken_floor) * a);
        } else if (alpha) {
          v = 0.5f * p + 0.5f * heat_colour(a)[c];
        }
        canvas.at(x0 + x, y0 + y, c) = to_byte(v);
      }
    }
}

void draw_label(data::RgbImage& canvas, const std::string& word, int x0, int y0, int width, int height,
                int scale) {
  std::string text = word;
  const int fits = std::max(0, width / (kAdvance * scale));
  if (static_cast<int>(text.size()) > fits) text = fits >= 3 ? text.substr(0, fits - 2) + ".." : text.substr(0, fits);
  const int w = text_width(text, scale);
  const int x = x0 + (width - w) / 2;
  const int y = y0 + (height - kGlyphHeight * scale) / 2;
  draw_text(canvas, text, x, y, scale, {0, 0, 0});
}

}  // namespace

int text_width(const std::string& text, int scale) {
  if (text.empty()) return 0;
  return (static_cast<int>(text.size()) * kAdvance - (kAdvance - kGlyphWidth)) * scale;
}

int draw_text(data::RgbImage& canvas, const std::string& text, int x, int y, int scale,
              const std::array<std::uint8_t, 3>& colour) {
  CAPTION_CHECK(scale >= 1, "draw_text: scale must be at least 1, got ", scale);
  for (size_t i = 0; i < text.size(); ++i) {
    const Glyph& g = glyph_for(text[i]);
    const int gx = x + static_cast<int>(i) * kAdvance * scale;
    for (int r = 0; r < kGlyphHeight; ++r)
      for (int col = 0; col < kGlyphWidth; ++col)
        if (g.rows[r][col] == '#') fill_rect(canvas, gx + col * scale, y + r * scale, scale, scale, colour);
  }
  return text_width(text, scale);
}

AttentionMapLayout attention_map_layout(int panels, const AttentionMapOptions& options) {
  CAPTION_CHECK(panels >= 1, "attention map: needs at least one panel, got ", panels);
  CAPTION_CHECK(options.panel_size >= 16 && options.panel_size <= 4096,
                "attention map: panel size must be in [16, 4096], got ", options.panel_size);
  CAPTION_CHECK(options.panels_per_row >= 1, "attention map: panels per row must be at least 1, got ",
                options.panels_per_row);
  AttentionMapLayout l;
  l.panel_size = options.panel_size;
  // Labels grow with the panel: 9-row glyphs at scale 2 for the paper's 224-pixel panels.
  const int scale = std::max(1, options.panel_size / 112);
  l.label_height = (kGlyphHeight + 4) * scale;
  l.gap = std::max(2, options.panel_size / 32);
  l.columns = std::min(panels, options.panels_per_row);
  l.rows = (panels + l.columns - 1) / l.columns;
  l.width = l.gap + l.columns * (l.panel_size + l.gap);
  l.height = l.gap + l.rows * (l.panel_size + l.label_height + l.gap);
  return l;
}

data::RgbImage render_attention_map(const data::RgbImage& image, const std::vector<std::string>& words,
                                    const std::vector<std::vector<float>>& attention, int grid_size,
                                    const AttentionMapOptions& options) {
  CAPTION_CHECK(!image.empty(), "attention map: the image is empty");
  CAPTION_CHECK(grid_size >= 1, "attention map: grid size must be positive, got ", grid_size);
  CAPTION_CHECK(words.size() == attention.size(), "attention map: ", words.size(), " words but ",
                attention.size(), " attention maps");
  const size_t P = static_cast<size_t>(grid_size) * grid_size;
  for (size_t i = 0; i < attention.size(); ++i)
    CAPTION_CHECK(attention[i].size() == P, "attention map: map of word ", i, " ('", words[i], "') holds ",
                  attention[i].size(), " weights, expected ", P, " (", grid_size, "x", grid_size, ")");
  CAPTION_CHECK(options.darken_floor >= 0 && options.darken_floor <= 1,
                "attention map: darken floor must be in [0, 1], got ", options.darken_floor);

  const AttentionMapLayout l = attention_map_layout(static_cast<int>(words.size()) + 1, options);
  const int scale = std::max(1, options.panel_size / 112);
  data::RgbImage canvas(l.width, l.height);
  std::fill(canvas.pixels.begin(), canvas.pixels.end(), std::uint8_t{255});
  const data::RgbImage panel = data::resize_bilinear(image, l.panel_size, l.panel_size);

  draw_panel(canvas, panel, nullptr, l.panel_x(0), l.panel_y(0), options);
  for (size_t i = 0; i < words.size(); ++i) {
    const int index = static_cast<int>(i) + 1;
    const std::vector<float> alpha = upsample_normalised(attention[i], grid_size, l.panel_size);
    draw_panel(canvas, panel, &alpha, l.panel_x(index), l.panel_y(index), options);
    draw_label(canvas, words[i], l.panel_x(index), l.panel_y(index) + l.panel_size, l.panel_size,
               l.label_height, scale);
  }
  return canvas;
}

data::RgbImage render_attention_map(const data::RgbImage& image, const CaptionResult& result,
                                    const AttentionMapOptions& options) {
  return render_attention_map(image, result.words, result.attention, result.grid_size, options);
}

void write_attention_map(const std::filesystem::path& path, const data::RgbImage& image,
                         const CaptionResult& result, const AttentionMapOptions& options) {
  data::write_png(render_attention_map(image, result, options), path);
}

}  // namespace caption::pipeline
