// Attention maps in the style of the "Show, Attend and Tell" figures: one PNG per image,
// a grid of panels (the image, then one panel per word) with each word's S x S attention
// weights upsampled bilinearly to the panel and laid over the image, the word written in
// a strip under its panel.
//
// Choices:
// - The image is resized to a square panel (as the model saw it: aspect ratio not kept),
//   so the attention grid lines up with the picture.
// - Each word's weights are divided by their maximum before drawing: with P = 196 cells a
//   map's weights are small, and it is where the word looks, relative to the rest of the
//   image, that the figure shows. Darken (the paper's look) scales each pixel by
//   floor + (1 - floor) * weight; Heat blends a blue-to-red colour map at alpha 0.5.
// - Labels use a 5x7 bitmap font of our own (font in attention_map.cpp), scaled by an
//   integer factor; upper case is drawn with the lower-case glyphs, and characters
//   outside the font as a hollow box. Labels too wide for a panel are cut with "..".
// - Everything is integer or fixed-order float arithmetic: the same input gives the same
//   bytes. Files are written atomically (data::write_png).
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "data/image/image.h"
#include "pipeline/captioner.h"

namespace caption::pipeline {

enum class OverlayStyle { Darken, Heat };

struct AttentionMapOptions {
  int panel_size = 224;         // pixels per square panel
  int panels_per_row = 5;
  OverlayStyle style = OverlayStyle::Darken;
  float darken_floor = 0.2f;    // Darken: brightness where a word's attention is zero
};

// Where things go in the rendered figure (exposed for tests and callers that crop).
struct AttentionMapLayout {
  int panel_size = 0;
  int label_height = 0;  // strip under each panel
  int gap = 0;           // between panels and around the figure
  int columns = 0, rows = 0;
  int width = 0, height = 0;
  int panel_x(int index) const { return gap + (index % columns) * (panel_size + gap); }
  int panel_y(int index) const { return gap + (index / columns) * (panel_size + label_height + gap); }
};

// Layout of a figure with `panels` panels (the image panel counted).
AttentionMapLayout attention_map_layout(int panels, const AttentionMapOptions& options = {});

// The figure for one caption: words[i] with attention[i] ([grid_size^2], row-major).
data::RgbImage render_attention_map(const data::RgbImage& image, const std::vector<std::string>& words,
                                    const std::vector<std::vector<float>>& attention, int grid_size,
                                    const AttentionMapOptions& options = {});
data::RgbImage render_attention_map(const data::RgbImage& image, const CaptionResult& result,
                                    const AttentionMapOptions& options = {});

// render_attention_map, written atomically as a PNG.
void write_attention_map(const std::filesystem::path& path, const data::RgbImage& image,
                         const CaptionResult& result, const AttentionMapOptions& options = {});

// Draws `text` with the built-in font, top-left at (x, y), each font pixel `scale` x
// `scale`, clipped to the image. Returns the width drawn. Exposed for tests.
int draw_text(data::RgbImage& canvas, const std::string& text, int x, int y, int scale,
              const std::array<std::uint8_t, 3>& colour);
// Width in pixels of `text` at `scale`.
int text_width(const std::string& text, int scale);

}  // namespace caption::pipeline
