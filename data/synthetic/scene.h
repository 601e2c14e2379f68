// Scenes of the synthetic captioning set: 1 to 3 flat-coloured shapes on a lightly
// textured background. A scene is laid out from its own random stream (prng.h) so that
// its relations are never ambiguous: two objects are placed with one axis clearly
// dominant (|dx| >= 2|dy| or the reverse), three objects are well apart horizontally
// (their captions list them left to right), and a lone object sits near the middle of
// one cell of a 3x3 grid (its captions may name the region). Objects never overlap.
//
// All geometry and rendering is integer arithmetic, so the pixels are bit-identical on
// every platform; edges are antialiased by 4x4 supersampling.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>
#include <vector>

#include "data/image/image.h"
#include "data/synthetic/prng.h"

namespace caption::data {

enum class Shape { Circle, Square, Triangle };
enum class Colour { Red, Green, Blue, Yellow, Purple, Orange };
enum class ObjectSize { Small, Large };

inline constexpr std::array<Shape, 3> kAllShapes{Shape::Circle, Shape::Square, Shape::Triangle};
inline constexpr std::array<Colour, 6> kAllColours{Colour::Red,    Colour::Green,  Colour::Blue,
                                                  Colour::Yellow, Colour::Purple, Colour::Orange};

std::string_view shape_name(Shape shape);      // "circle", ...
std::string_view colour_name(Colour colour);   // "red", ...
std::string_view size_name(ObjectSize size);   // "small", "large"
std::array<std::uint8_t, 3> colour_rgb(Colour colour);

struct SceneObject {
  Shape shape = Shape::Circle;
  Colour colour = Colour::Red;
  ObjectSize size = ObjectSize::Small;
  int cx = 0;      // centre pixel; the pixel (cx, cy) is always fully inside the shape
  int cy = 0;
  int radius = 0;  // half-extent in pixels (circle radius; square and triangle similar)
};

struct Scene {
  int image_size = 0;
  std::vector<SceneObject> objects;  // at most one of each (colour, shape) pair
};

// Lays out a scene for an image_size x image_size image (image_size >= 32).
Scene layout_scene(int image_size, Prng& rng);

// Draws the scene; `rng` supplies the background's tone, gradient and noise.
RgbImage render_scene(const Scene& scene, Prng& rng);

}  // namespace caption::data
